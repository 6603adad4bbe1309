"""Plain-text / Markdown tables of metrics, as the CLI and the benchmarks print them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_COLUMNS", "format_metrics_table"]

DEFAULT_COLUMNS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr")


def format_metrics_table(
    rows: Mapping[str, Mapping[str, float | str]], columns: Sequence[str] = DEFAULT_COLUMNS, digits: int = 4
) -> str:
    """A Markdown table with one row per model: ``rows = {"sasrec": {"hr@10": 0.15, …}, …}``.

    Numbers are printed with ``digits`` decimals; strings (``"0.081 ± 0.004"``) are printed as they are.
    """
    header = "| model | " + " | ".join(columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name, metrics in rows.items():
        cells = []
        for column in columns:
            value = metrics.get(column, "")
            cells.append(f"{value:.{digits}f}" if isinstance(value, float) else str(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

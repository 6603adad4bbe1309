"""The main job: item features → tokenizer (stage 1) → recommender (stage 2) → pipeline → test evaluation, with
Popularity and SASRec trained and evaluated on the same split (``contrec-hf run``; what ``make demo`` runs).

Each stage writes a marker file when it finishes; a rerun with the same output folder skips finished stages and
resumes the recommender from its last checkpoint, so an interrupted job loses at most ``save_steps`` steps.
``overwrite=True`` starts over. ``stages.json`` records how long each stage took.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .baselines import run_baseline
from .data import SequentialDataset, load_sequential_dataset
from .errors import ConfigError, ContRecError
from .evaluation import evaluate_scorer, format_metrics_table
from .features import CollaborativeConfig
from .features.store import FEATURE_KINDS
from .models.contrec.configuration_contrec import option_defaults
from .models.diffusion_head import sampling_guidance
from .saving import atomic_directory
from .utils import check_recorded, write_json

__all__ = ["MAIN_JOB_MAX_STEPS", "RECIPES", "Recipe", "contrec_metrics", "contrec_scorer", "run_main_job"]

# Stage-2 optimizer steps of the main job: 3,000 beat 2,000 on test over seeds 0-2 (docs/benchmarks.md, "Lever:
# `max_steps=3000`"); one home for the CLI, the function and the benchmarks.
MAIN_JOB_MAX_STEPS = 3000


@dataclass(frozen=True)
class Recipe:
    """How the main job trains ContRec and reads it out, as `ContRecConfig` fields (``config_overrides``), e.g.
    ``contrec-hf run --recipe paper``. The read-out (`readout`, `guidance_scale`, `num_inference_steps`) is part of
    the config, so validation during training, the final evaluation and the saved pipeline all use the recipe's.

    Attributes:
        description (`str`): one line for the report.
        config_overrides (`dict`): `ContRecConfig` fields that differ from the library's defaults.
    """

    description: str
    config_overrides: dict[str, Any] = field(default_factory=dict)


# docs/method.md, "Two recipes", lists every difference between these two.
RECIPES = {
    "contrec-hf": Recipe(
        "the library's defaults with λ_disp 1.0 and no CFG dropout (what measured best on validation): docs/method.md",
        # docs/benchmarks.md, "Lever: `dispersive_loss_weight=1.0`, `condition_dropout=0`": validation NDCG@10 up
        # on every seed on both paths. The config's defaults keep CFG trainable for other uses of the model.
        {"dispersive_loss_weight": 1.0, "condition_dropout": 0.0},
    ),
    "paper": Recipe(
        "the paper's: one <pref> diffusion target, MSE only, λ_disp 0.5, frozen-latent table, one DDPM-200 sample "
        "at guidance 3",
        {
            "history_diffusion_weight": 0.0,
            "ranking_loss_weight": 0.0,
            "dispersive_loss_weight": 0.5,
            "readout": "sample",
            "guidance_scale": 3.0,
            "num_inference_steps": 200,
            "diffusion_batch_multiplier": 4,  # the paper is silent; MAR's 4, what this recipe's published runs used
            "fast_path_probability": 0.5,  # the paper has no fast path; what this recipe's published runs used
        },
    ),
}


class _Stages:
    """Finished-stage bookkeeping in ``DIR/stages.json``."""

    def __init__(self, output: Path) -> None:
        self.path = output / "stages.json"
        self.done: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def run(self, name: str, fn, log) -> Any:
        if name in self.done:
            log(f"[{name}] already finished ({self.done[name]:.0f}s): skipped")
            return None
        log(f"[{name}] …")
        started = time.perf_counter()
        result = fn()
        self.done[name] = time.perf_counter() - started
        write_json(self.path, self.done)
        log(f"[{name}] done in {self.done[name]:.0f}s")
        return result


def contrec_scorer(pipe, full_path: bool, **read_out_kwargs):
    """ContRec as a scorer of :func:`~contrec_hf.evaluation.evaluate_scorer`: histories → ``[batch, num_items]``
    cosine scores of the preference latent (fast path: ``<pref>`` right after the history; full path: the generated
    text first). ``read_out_kwargs`` go to the pipeline's ``read_out``; by default it reads out as the recommender's
    config says (the library's: the x₀ estimate at guidance 1)."""

    @torch.no_grad()
    def scorer(batch: list[list[int]]) -> torch.Tensor:
        condition = pipe.generate_and_encode(batch)[0] if full_path else pipe.encode_histories(batch)
        latents = pipe.read_out(condition, **read_out_kwargs)
        return pipe.score_latents(latents)

    return scorer


@torch.no_grad()
def contrec_metrics(pipe, data: SequentialDataset, split: str, full_path: bool, batch_size: int = 64) -> dict:
    """ContRec through the shared evaluator (history masking, non-finite check), read out as the recommender's
    config says; a sampled read-out is seeded (0)."""
    sampled = pipe.recommender.config.readout != "x0"
    kwargs = {"generator": torch.Generator().manual_seed(0)} if sampled else {}
    scorer = contrec_scorer(pipe, full_path, **kwargs)
    histories, targets = data.split(split)
    return evaluate_scorer(scorer, histories, targets, data.num_items, batch_size=batch_size, progress=False).metrics


@torch.no_grad()
def full_path_metrics(pipe, data: SequentialDataset) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {"contrec_full": …, "contrec_fused": …}}``: the full path's latent score, and the fused score
    z-norm(latent) + λ_text · text with λ_text chosen on validation NDCG@10 (``text_weight`` records it); the full
    path runs once per user and split, with the recommender's read-out."""
    from .pipelines.tuning import TEXT_WEIGHTS, tune_text_weight

    best, validation = tune_text_weight(pipe, data, TEXT_WEIGHTS, split="validation", users=0)
    _, test = tune_text_weight(pipe, data, sorted({0.0, best}), split="test", users=0)
    return {
        split: {"contrec_full": found[0.0], "contrec_fused": {**found[best], "text_weight": best}}
        for split, found in (("validation", validation), ("test", test))
    }


def _readout_words(config) -> str:
    """The read-out of a `ContRecConfig` in words, for the report."""
    what = {"x0": "the denoiser's one-step x₀ estimate", "sample": f"one DDPM-{config.num_inference_steps} sample",
            "mean": f"the mean of 8 DDPM-{config.num_inference_steps} samples"}[config.readout]  # fmt: skip
    return f"{what} at guidance {config.guidance_scale:g}"


@torch.no_grad()
def _steps_sweep(pipe, data: SequentialDataset, users: int = 200) -> list[dict[str, float]]:
    """Validation NDCG@10 and ms/user against denoising steps for DDPM and DDIM: one sample, the paper's read-out, at
    its guidance 3, or at 1 when the recommender never trained the null condition (``condition_dropout=0``)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    guidance = sampling_guidance(pipe.recommender.config.condition_dropout)

    histories, targets = data.split("validation")
    histories, targets = histories[:users], targets[:users]
    condition = torch.cat([pipe.encode_histories(histories[i : i + 64]) for i in range(0, len(histories), 64)])
    original, rows = pipe.scheduler.config, []
    total = original.num_train_timesteps
    for scheduler_class, steps in [(DDPMScheduler, s) for s in (10, 50, total)] + [
        (DDIMScheduler, s) for s in (5, 10, 20, 50)
    ]:
        pipe.scheduler = scheduler_class.from_config(original)
        started = time.perf_counter()
        latents = pipe.denoise(condition, steps, guidance, torch.Generator().manual_seed(0))
        ms = 1000 * (time.perf_counter() - started) / len(histories)
        result = evaluate_scorer(
            lambda batch, rows, x=latents: pipe.score_latents(x[rows]), histories, targets,
            data.num_items, users=range(len(histories)), progress=False,
        )  # fmt: skip
        rows.append({"scheduler": scheduler_class.__name__, "steps": steps, "guidance": guidance,
                     "ndcg@10": result.metrics["ndcg@10"], "ms_per_user": ms})  # fmt: skip
    pipe.scheduler = DDPMScheduler.from_config(original)
    return rows


_RESUME = "resume it with the same options, or pass overwrite=True (--overwrite) to start over"
_DEFAULTS = (
    "the folder was trained by a version of the library with other defaults: resume it with that version, or pass "
    "overwrite=True (--overwrite) to start over"
)


def _plots(output: Path, log_rows: list[dict], sweep: list[dict], sasrec_validation: float) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = []
    steps = [r["step"] for r in log_rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("loss", "lm_loss", "diffusion_loss", "dispersive_loss", "history_diffusion_loss", "ranking_loss"):
        if all(key in r for r in log_rows):
            ax.plot(steps, [r[key] for r in log_rows], marker="o", label=key)
    ax.set_xlabel("step"), ax.set_title("training losses (mean over each validation interval)"), ax.legend()
    fig.tight_layout(), fig.savefig(output / "losses.png", dpi=100), plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r["val_ndcg@10"] for r in log_rows], marker="o", label="ContRec (500 validation users)")
    ax.axhline(sasrec_validation, color="grey", linestyle="--", label="SASRec-CE, selected model (all users)")
    ax.set_xlabel("step"), ax.set_ylabel("validation NDCG@10"), ax.set_title("validation NDCG@10 over training")
    ax.legend()
    fig.tight_layout(), fig.savefig(output / "validation_ndcg.png", dpi=100), plt.close(fig)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in sorted({r["scheduler"] for r in sweep}):
        rows = [r for r in sweep if r["scheduler"] == name]
        left.plot([r["steps"] for r in rows], [r["ndcg@10"] for r in rows], marker="o", label=name)
        right.plot([r["steps"] for r in rows], [r["ms_per_user"] for r in rows], marker="o", label=name)
    left.set_xscale("log"), right.set_xscale("log"), left.set_xlabel("steps"), right.set_xlabel("steps")
    left.set_ylabel("validation NDCG@10 (one sample)"), right.set_ylabel("denoising ms/user"), left.legend()
    fig.tight_layout(), fig.savefig(output / "schedulers.png", dpi=100), plt.close(fig)
    names += ["losses.png", "validation_ndcg.png", "schedulers.png"]
    return names


def run_main_job(
    output: str | Path,
    dataset: str = "ml-100k",
    data_path: str | None = None,
    *,
    preset: str | None = None,
    loader_kwargs: dict[str, Any] | None = None,
    features: str = "collaborative",
    backbone: str = "tiny",
    lora: bool = False,
    max_steps: int = MAIN_JOB_MAX_STEPS,
    learning_rate: float | None = None,
    ema_decay: float = 0.0,
    recipe: str = "contrec-hf",
    config_overrides: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | None = None,
    mixed_precision: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run (or resume) the whole job into ``output``; returns the metrics written to ``metrics.json``.

    ``recipe`` names one of :data:`RECIPES` (``"contrec-hf"``, the default, or ``"paper"``); ``config_overrides``
    change `ContRecConfig` fields on top of it. A run folder keeps its recipe (``recipe.json``) and its job options
    (``job.json``: the dataset, its preset and loader options, features, backbone, LoRA, stage-2 steps and learning
    rate, weight averaging, seed): resuming it with others is refused, since finished stages are skipped. So is
    resuming a folder trained with other `ContRecConfig` defaults (``config_options.json``: every option field's
    value, default or override), e.g. by an earlier version of the library.
    ``learning_rate`` is stage 2's AdamW peak learning rate (`None`: `RecommenderTrainingArguments`' default, 1e-3);
    ``ema_decay`` > 0 validates and keeps a moving average of stage 2's weights (`RecommenderTrainingArguments`).
    ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``: a GPU when there is one) is where the tokenizer, the recommender
    and SASRec train; `None` keeps each stage's default (the tokenizer and SASRec on the CPU, the recommender on a
    GPU when there is one). ``mixed_precision`` (``"no"``, ``"bf16"``, ``"fp16"``) applies to the same stages; the
    evaluation runs on the CPU in fp32 either way.
    """
    from .pipelines import ContRecDiffusionPipeline
    from .training import run_tokenizer_stage

    # Refuse bad options before anything is deleted, downloaded or trained.
    options = _checked_options(features, recipe, backbone, lora, config_overrides)
    devices, tokenizer_args, recommender_args = _training_arguments(
        output, max_steps, learning_rate, ema_decay, seed, device, mixed_precision
    )
    output = Path(output)
    if overwrite and output.exists():
        for child in output.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    output.mkdir(parents=True, exist_ok=True)
    recorded = _recipe_record(output, recipe, options.config_overrides)
    what = "another recipe or other overrides"
    check_recorded(output / "recipe.json", recorded, what, _RESUME, normalise=_spelled_out_defaults)
    # The defaults under the overrides too: a folder trained before a default changed is not resumed as today's.
    settings = {**option_defaults(), **options.config_overrides}
    check_recorded(output / "config_options.json", settings, "other ContRecConfig options", _DEFAULTS)
    # What else shapes the results (where the job runs, device and precision, may change between resumes):
    # finished stages are skipped, so a rerun with another seed or schedule would report the old run as its own.
    # No weight averaging is not recorded, so folders from before the option stay resumable.
    job = {"dataset": dataset, "preset": preset, "loader_kwargs": loader_kwargs or {}, "features": features,
           "backbone": backbone, "lora": lora, "max_steps": max_steps, "learning_rate": recommender_args.learning_rate,
           "seed": seed, **({"ema_decay": ema_decay} if ema_decay else {})}  # fmt: skip
    check_recorded(output / "job.json", job, "other job options", _RESUME)
    stages = _Stages(output)

    def data_stage():
        load_sequential_dataset(dataset, data_path, preset=preset, **(loader_kwargs or {})).save(output / "data")

    stages.run("data", data_stage, log)
    data = SequentialDataset.load(output / "data")

    def tokenizer_stage():  # `seed` seeds every random stage: the CF features and the σ-VAE too, not only stage 2
        run_tokenizer_stage(
            data, features, output / "tokenizer", overwrite=True, progress=progress,
            collaborative=CollaborativeConfig(seed=seed), args=tokenizer_args,
        )  # fmt: skip

    stages.run("tokenizer", tokenizer_stage, log)

    def recommender_stage():
        return _train_recommender(output, data, recommender_args, options, progress)

    stages.run("recommender", recommender_stage, log)

    stages.run("pipeline", lambda: _save_pipeline(output, data), log)
    pipe = ContRecDiffusionPipeline.from_pretrained(output / "pipeline")
    pipe.set_progress_bar_config(disable=True)

    stages.run("evaluation", lambda: _evaluate(pipe, data, output), log)

    baselines = {"seed": seed, "progress": progress, "training_kwargs": devices}
    stages.run("baselines", lambda: {n: run_baseline(n, data, output_dir=output / "baselines" / n, **baselines)
                                     for n in ("sasrec", "pop")}, log)  # fmt: skip
    metrics = _collect_metrics(output, data, recipe)
    _write_report(output, data, recipe, pipe.recommender.config, metrics)  # cheap; always matches metrics.json
    return metrics


def _recipe_record(output: Path, recipe: str, overrides: dict) -> dict:
    """This call's ``recipe.json`` record. On a folder that has one, an override its record does not list is left out
    when it only repeats a value the folder trained with (its ``config_options.json``): a paper-recipe folder from
    before the recipe pinned ``fast_path_probability`` at 0.5, then the default, is the same run."""
    if (output / "recipe.json").is_file() and (output / "config_options.json").is_file():
        listed = json.loads((output / "recipe.json").read_text()).get("config_overrides", {})
        used = json.loads((output / "config_options.json").read_text())
        overrides = {k: v for k, v in overrides.items() if k in listed or k not in used or used[k] != v}
    return {"name": recipe, **asdict(RECIPES[recipe]), "config_overrides": overrides}


def _spelled_out_defaults(recipe: dict) -> dict:
    """A ``recipe.json`` record without the overrides that only repeat a default (``--ranking-mask-history`` on a
    folder started without it is the same run) and without the recipe's description (prose for the report);
    ``config_options.json`` still holds every value the folder used."""
    defaults = option_defaults()
    overrides = recipe.get("config_overrides", {})
    kept = {k: v for k, v in overrides.items() if k not in defaults or defaults[k] != v}
    return {**{k: v for k, v in recipe.items() if k != "description"}, "config_overrides": kept}


def _checked_options(features: str, recipe: str, backbone: str, lora: bool, config_overrides: dict | None):
    """Stage 2's checked `RecommenderOptions`: the recipe's `ContRecConfig` overrides with the caller's on top, after
    every cheap check of the options."""
    from .training import RecommenderOptions

    if features not in FEATURE_KINDS:
        raise ConfigError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
    if recipe not in RECIPES:
        raise ConfigError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
    config_overrides = {**RECIPES[recipe].config_overrides, **(config_overrides or {})}
    return RecommenderOptions(backbone=backbone, lora=lora, config_overrides=config_overrides)


def _training_arguments(
    output,
    max_steps,
    learning_rate: float | None,
    ema_decay: float,
    seed: int,
    device: str | None,
    mixed_precision: str | None,
) -> tuple:
    """``(devices, tokenizer arguments, recommender arguments)`` of the main job, every option checked."""
    from .training import RecommenderTrainingArguments, TokenizerTrainingArguments
    from .training.devices import resolve_device

    if isinstance(max_steps, bool) or not isinstance(max_steps, int):
        raise ConfigError(f"max_steps must be an integer, got {max_steps!r}")
    device = resolve_device(device) if device is not None else None
    devices = {"device": device, "mixed_precision": mixed_precision or "no"}  # for the tokenizer and SASRec
    tokenizer_args = TokenizerTrainingArguments(seed=seed, **devices)  # checks device and precision
    recommender_args = RecommenderTrainingArguments(
        # Eight validations with patience 3: early stopping can fire (with four and patience 4 it never could).
        output_dir=str(Path(output) / "recommender-training"), max_steps=max_steps, eval_steps=max(1, max_steps // 8),
        save_steps=max(1, max_steps // 8), patience=3, eval_users=500, seed=seed, device=device,
        mixed_precision=mixed_precision, ema_decay=ema_decay,
        **({} if learning_rate is None else {"learning_rate": learning_rate}),
    )  # fmt: skip
    return devices, tokenizer_args, recommender_args


def _train_recommender(output: Path, data, args, options, progress: bool) -> dict:
    """Stage 2, then its best model copied (atomically) to ``output/recommender``; returns the trainer's state."""
    from .training import run_recommender_stage

    trainer = run_recommender_stage(data, output / "tokenizer", args, options=options, progress=progress)
    best = output / "recommender-training" / "best"
    if not (best / "config.json").is_file():
        raise ContRecError("stage 2 produced no best model (no validation ran)")
    with atomic_directory(output / "recommender") as tmp:
        shutil.copytree(best, tmp, dirs_exist_ok=True)
    return trainer.state


def _save_pipeline(output: Path, data: SequentialDataset) -> None:
    """The pipeline of the trained recommender and the dataset's catalog, saved to ``output/pipeline``."""
    from .training import load_pipeline

    load_pipeline(output / "recommender", output / "tokenizer", data).save_pretrained(output / "pipeline")


def _evaluate(pipe, data: SequentialDataset, output: Path) -> None:
    """ContRec's fast and full paths on both splits (``contrec_metrics.json``) and the schedulers' steps sweep."""
    full = full_path_metrics(pipe, data)
    results = {
        split: {"contrec": contrec_metrics(pipe, data, split, full_path=False), **full[split]}
        for split in ("validation", "test")
    }
    write_json(output / "contrec_metrics.json", results)
    write_json(output / "scheduler_sweep.json", _steps_sweep(pipe, data))


def _collect_metrics(output: Path, data: SequentialDataset, recipe: str) -> dict[str, Any]:
    """ContRec's and the baselines' metrics of a finished run, with the dataset's statistics, into ``metrics.json``."""
    contrec = json.loads((output / "contrec_metrics.json").read_text())
    metrics: dict[str, Any] = {"validation": dict(contrec["validation"]), "test": dict(contrec["test"])}
    for name in ("sasrec", "pop"):
        baseline = json.loads((output / "baselines" / name / "metrics.json").read_text())
        for split in ("validation", "test"):
            metrics[split][name] = baseline[split]
    metrics["dataset"] = data.stats()
    metrics["recipe"] = recipe
    metrics["item_table"] = _item_table_diagnostics(output)
    write_json(output / "metrics.json", metrics)
    return metrics


def _item_table_diagnostics(output: Path) -> dict[str, Any]:
    """The kind of item table the pipeline scores with and its effective rank (a table learned together with its
    target can collapse; docs/recommender.md)."""
    from .models import effective_rank
    from .pipelines import ContRecCatalog

    table = ContRecCatalog.from_pretrained(output / "pipeline" / "catalog").latents  # [N, d_z]
    kind = json.loads((output / "recommender" / "config.json").read_text()).get("item_table", "latent")
    return {"kind": kind, "effective_rank": effective_rank(table), "dim": table.shape[1]}


def _write_report(output: Path, data: SequentialDataset, recipe: str, config, metrics: dict[str, Any]) -> None:
    """``output/report.md``: the tables, the stage times, the steps sweep and the plots of a finished run."""
    chosen = RECIPES[recipe]
    log_rows = json.loads((output / "recommender-training" / "training_log.json").read_text())
    sweep = json.loads((output / "scheduler_sweep.json").read_text())
    images = _plots(output, log_rows, sweep, metrics["validation"]["sasrec"]["ndcg@10"])
    timings = json.loads((output / "stages.json").read_text())
    table = metrics["item_table"]
    lines = [
        f"# ContRec on {data.name}",
        "",
        f"Leave-one-out, full ranking over {data.num_items:,} items, history masked; {data.num_users:,} test users.",
        f"Recipe `{recipe}`: {chosen.description}. Read-out: {_readout_words(config)}.",
        "`contrec` is the fast path, `contrec_full` the full path (greedy reasoning, then `<pref>`), "
        "`contrec_fused` the full path's z-norm(latent) + λ_text · text score, λ_text = "
        f"{metrics['test']['contrec_fused']['text_weight']:g} chosen on validation.",
        f"Item table `{table['kind']}`: effective rank {table['effective_rank']:.1f} of {table['dim']}.",
        "",
        "## Test",
        "",
        format_metrics_table(metrics["test"]),
        "",
        "## Validation",
        "",
        format_metrics_table(metrics["validation"]),
        "",
        "## Stage times (s)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        "",
        f"## Schedulers (validation, one sample, guidance {sweep[0].get('guidance', 3.0):g})",
        "",
        "| scheduler | steps | NDCG@10 | ms/user |",
        "|---|---|---|---|",
        *[f"| {r['scheduler']} | {r['steps']} | {r['ndcg@10']:.4f} | {r['ms_per_user']:.1f} |" for r in sweep],
        "",
        *[f"![{name}]({name})" for name in images],
    ]
    (output / "report.md").write_text("\n".join(lines) + "\n")

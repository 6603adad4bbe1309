import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from contrec_hf.errors import CheckpointError, DataError, InputError
from contrec_hf.pipelines import ContRecCatalog, ContRecDiffusionPipeline, build_pipeline
from contrec_hf.retrieval import latent_scores

SWAPS = [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler]


@pytest.fixture(scope="module")
def pipe():
    from conftest import make_cyclic_dataset
    from tiny import tiny_pipeline

    return tiny_pipeline(make_cyclic_dataset(), num_train_timesteps=50)


def call(pipe, **kwargs):
    defaults = {
        "num_inference_steps": 5,
        "top_k": 3,
        "generator": torch.Generator().manual_seed(0),
        "readout": "sample",
    }
    return pipe([["i1", "i2", "i3"], ["i7"]], **{**defaults, **kwargs})


def test_output_shapes_history_masking_and_tuple(pipe):
    out = call(pipe)
    assert len(out.item_ids) == 2 and all(len(r) == 3 for r in out.item_ids)
    assert out.scores.shape == (2, 3) and out.latents.shape == (2, 16) and out.texts is None
    assert not {"i1", "i2", "i3"} & set(out.item_ids[0]) and "i7" not in out.item_ids[1]
    assert (out.scores[:, :-1] >= out.scores[:, 1:]).all()  # best first
    as_tuple = call(pipe, return_dict=False)
    assert as_tuple[0] == out.item_ids and torch.equal(as_tuple[1], out.scores)
    assert call(pipe, output_type="np").scores.shape == (2, 3)


def test_same_generator_same_recommendations_and_readouts(pipe):
    assert call(pipe).item_ids == call(pipe).item_ids
    a, b = call(pipe, readout="x0"), call(pipe, readout="x0", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.latents, b.latents)  # deterministic read-out
    assert call(pipe, readout="mean", num_samples=3).latents.shape == (2, 16)


def test_read_out_of_a_condition(pipe):
    condition = pipe.encode_histories([[0, 1, 2], [6], [3, 4]])  # [3, hidden]
    x0 = pipe.read_out(condition, "x0", guidance_scale=2.0)
    assert torch.equal(x0, pipe.recommender.diffusion_head.x0_estimate(condition, 2.0))
    # the mean of N samples is the mean of the samples drawn for the condition repeated N times, row by row
    mean = pipe.read_out(condition, "mean", 4, 1.5, torch.Generator().manual_seed(3), num_samples=5)
    samples = pipe.denoise(condition.repeat_interleave(5, 0), 4, 1.5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(mean, samples.view(3, 5, -1).mean(1))
    assert not torch.allclose(mean[0], samples[0])  # a mean, not the first sample
    one = pipe.read_out(condition, "sample", 4, 1.5, torch.Generator().manual_seed(3))
    assert one.shape == (3, 16) and torch.equal(
        one, pipe.read_out(condition, "sample", 4, 1.5, torch.Generator().manual_seed(3))
    )
    with pytest.raises(InputError, match="readout"):
        pipe.read_out(condition, "median")


def test_the_read_out_defaults_are_the_recommenders_config(pipe):
    """Without read-out arguments the pipeline reads out as the recommender's config says (the trained read-out)."""
    config, histories = pipe.recommender.config, [["i1", "i2", "i3"], ["i7"]]
    saved = config.readout, config.guidance_scale, config.num_inference_steps
    try:
        config.readout, config.guidance_scale, config.num_inference_steps = "sample", 2.0, 4
        implicit = pipe(histories, generator=torch.Generator().manual_seed(1)).latents
        explicit = pipe(histories, readout="sample", guidance_scale=2.0, num_inference_steps=4,
                        generator=torch.Generator().manual_seed(1)).latents  # fmt: skip
        torch.testing.assert_close(implicit, explicit, rtol=0, atol=0)
        other = pipe(histories, guidance_scale=1.0, generator=torch.Generator().manual_seed(1)).latents
        assert not torch.allclose(implicit, other)
    finally:
        config.readout, config.guidance_scale, config.num_inference_steps = saved
    default = pipe(histories).latents  # the library's default: the deterministic x₀ estimate at guidance 1
    condition = pipe.encode_histories(pipe._histories(histories))
    torch.testing.assert_close(default, pipe.recommender.diffusion_head.x0_estimate(condition, 1.0), rtol=0, atol=0)


@pytest.mark.parametrize("scheduler_class", SWAPS, ids=lambda c: c.__name__)
def test_scheduler_swaps(pipe, scheduler_class, tmp_path):
    original = pipe.scheduler
    try:
        pipe.scheduler = scheduler_class.from_config(original.config)
        out = call(pipe)
        assert torch.isfinite(out.latents).all() and len(out.item_ids[0]) == 3
        pipe.save_pretrained(tmp_path)
        reloaded = ContRecDiffusionPipeline.from_pretrained(tmp_path)
        assert type(reloaded.scheduler) is scheduler_class  # the saved pipeline remembers the swap
    finally:
        pipe.scheduler = original


def test_unsupported_scheduler_names_alternatives(pipe):
    original = pipe.scheduler
    try:
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(original.config)
        with pytest.raises(ValueError, match="DDIMScheduler"):
            call(pipe)
        pipe.scheduler = DDIMScheduler.from_config(original.config, prediction_type="epsilon")
        with pytest.raises(ValueError, match="trained to predict 'sample'"):
            call(pipe)
    finally:
        pipe.scheduler = original


def test_save_load_identical_outputs_and_components_alone(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    assert {"model_index.json", "recommender", "scheduler", "text_tokenizer", "catalog"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pkl"))
    reloaded = ContRecDiffusionPipeline.from_pretrained(tmp_path)
    a, b = call(pipe), call(reloaded)
    assert a.item_ids == b.item_ids and torch.allclose(a.scores, b.scores, atol=1e-5)
    from contrec_hf.models import ContRecForRecommendation

    assert isinstance(ContRecForRecommendation.from_pretrained(tmp_path / "recommender"), ContRecForRecommendation)
    catalog = ContRecCatalog.from_pretrained(tmp_path / "catalog")
    assert catalog.index(["i3"]) == pipe.catalog.index(["i3"])
    assert DDPMScheduler.from_pretrained(tmp_path / "scheduler").config.clip_sample is False


def test_full_path_generates_text(pipe):
    out = call(pipe, generate_text=True, text_weight=0.5)
    assert len(out.texts) == 2 and all(isinstance(t, str) for t in out.texts)
    assert len(out.item_ids[0]) == 3


def test_histories_as_tensors_and_arrays_of_numeric_ids():
    import numpy as np
    from conftest import make_cyclic_dataset
    from tiny import tiny_pipeline

    numeric = tiny_pipeline(make_cyclic_dataset(prefix=""), num_train_timesteps=50)
    lists = numeric([[1, 2, 3], [7, 8, 9]], top_k=4).item_ids
    assert numeric(torch.tensor([[1, 2, 3], [7, 8, 9]]), top_k=4).item_ids == lists  # [users, n]
    assert numeric(np.array([[1, 2, 3], [7, 8, 9]]), top_k=4).item_ids == lists
    assert numeric([torch.tensor([1, 2, 3]), np.array([7, 8, 9])], top_k=4).item_ids == lists  # one per user
    assert numeric(torch.tensor([1, 2, 3]), top_k=4).item_ids == lists[:1]  # [n]: one user
    with pytest.raises(DataError, match="1-D or 2-D"):
        numeric(torch.zeros(1, 2, 3, dtype=torch.long))


def test_full_path_never_emits_item_markers(pipe):
    """An LM that would write `<item_token>` at every step (its placeholder needs features the prompt lacks, so the
    second forward would fail its count check) still completes: markers are banned from generation."""
    import copy

    from torch import nn

    biased = copy.deepcopy(pipe)
    lm, config = biased.recommender.language_model, biased.recommender.config
    head = nn.Linear(lm.lm_head.in_features, lm.lm_head.out_features, bias=True)
    nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[config.item_token_id] = 100.0  # the greedy choice, were it allowed
        head.bias[config.item_start_token_id] = 90.0
        head.bias[config.pref_token_id] = 50.0  # next best: stop at once
    lm.lm_head = head
    condition, texts = biased.generate_and_encode([[1, 2], [5]])
    assert condition.shape[0] == 2 and texts == ["", ""]


def test_batched_generation_gives_each_user_what_it_gives_alone(pipe):
    """The full path generates a batch of users at once (left-padded prompts, rows that stop early padded after their
    `<pref>`); each row's text and condition equal those of the user alone. A bias on `<pref>` makes the rows stop
    at different points: at once, midway, or not before `max_new_tokens`."""
    import copy

    from torch import nn

    from contrec_hf.errors import InputError

    biased = copy.deepcopy(pipe)
    lm, config = biased.recommender.language_model, biased.recommender.config
    head = nn.Linear(lm.lm_head.in_features, lm.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(lm.lm_head.weight)
        head.bias.zero_()
        head.bias[config.pref_token_id] = 2.0
    lm.lm_head = head
    histories = [[1, 2], [5], [3, 4, 6, 7, 8], [0, 9, 1], [12, 11], [4], [7, 8, 9, 10]]
    together, texts = biased.generate_and_encode(histories, max_new_tokens=12)
    alone, alone_texts = biased.generate_and_encode(histories, max_new_tokens=12, batch_size=1)
    chunks, chunk_texts = biased.generate_and_encode(histories, max_new_tokens=12, batch_size=3)
    assert texts == alone_texts == chunk_texts
    lengths = {len(biased.text_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts}
    assert 0 in lengths and 12 in lengths and len(lengths) >= 3, lengths  # stopped at once, midway and never
    assert together.shape == (len(histories), config.condition_dim)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(chunks, alone, rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="batch_size"):
        biased.generate_and_encode(histories, batch_size=0)


def test_the_catalog_stores_the_table_the_recommender_ranks_with():
    from conftest import make_cyclic_dataset
    from tiny import tiny_features, tiny_pipeline

    data = make_cyclic_dataset()
    learned = tiny_pipeline(data, num_train_timesteps=50, ranking_loss_weight=1.0, item_table="tokens")
    with torch.no_grad():
        learned.recommender.table_projector[-1].bias.fill_(0.2)  # a table that differs from the frozen latents
    rebuilt = build_pipeline(learned.recommender, learned.text_tokenizer, data, tiny_features(data))
    features = rebuilt.catalog.features
    assert torch.equal(rebuilt.catalog.latents, rebuilt.recommender.item_table(features))
    assert not torch.equal(rebuilt.catalog.latents, rebuilt.recommender.target_latents(features))


def test_a_tied_table_pipeline_scores_the_projected_read_out_and_round_trips(tmp_path):
    from conftest import make_cyclic_dataset
    from tiny import tiny_pipeline

    data = make_cyclic_dataset()
    pipe = tiny_pipeline(data, num_train_timesteps=50, ranking_loss_weight=1.0, item_table="tied")
    recommender = pipe.recommender
    assert pipe.catalog.latents.shape[1] == recommender.config.text_config.hidden_size
    torch.testing.assert_close(pipe.catalog.latents, recommender.item_table(pipe.catalog.features))
    out = pipe([["i1", "i2", "i3"]], top_k=5, exclude_history=False)
    assert out.latents.shape[1] == recommender.config.latent_dim  # the read-out stays a generated latent
    scores = latent_scores(recommender.projector(out.latents), pipe.catalog.latents)
    assert out.item_ids[0] == [pipe.catalog.config.item_ids[i] for i in scores.topk(5).indices[0].tolist()]
    pipe.save_pretrained(tmp_path / "p")
    back = ContRecDiffusionPipeline.from_pretrained(tmp_path / "p")
    assert back([["i1", "i2", "i3"]], top_k=5, exclude_history=False).item_ids == out.item_ids


def test_numeric_ids_accept_int_and_str():
    catalog = ContRecCatalog.build(["1", "50"], ["a", "b"], ["", ""], torch.zeros(2, 3), torch.zeros(2, 4))
    assert catalog.index([1, "50", " 1"]) == [0, 1, 0]
    with pytest.raises(DataError, match="unknown item id"):
        catalog.index([7])


@pytest.mark.parametrize(
    ("kwargs", "histories", "message"),
    [
        ({}, [["nope"]], "unknown item id"),
        ({}, [[]], "empty"),
        ({"top_k": 99}, [["i1"]], "top_k must be an integer between 1 and the catalog size 13"),
        ({"top_k": 0}, [["i1"]], "top_k"),
        ({"num_inference_steps": 0}, [["i1"]], "num_inference_steps"),
        ({"guidance_scale": -1.0}, [["i1"]], "guidance_scale"),
        ({"readout": "median"}, [["i1"]], "readout"),
        ({}, "i1", "list of item-id lists"),
    ],
)
def test_bad_input(pipe, kwargs, histories, message):
    with pytest.raises((ValueError, DataError), match=message):
        pipe(histories, num_inference_steps=kwargs.pop("num_inference_steps", 2), **kwargs)


def test_missing_component_folder(pipe, tmp_path):
    import shutil

    pipe.save_pretrained(tmp_path)
    shutil.rmtree(tmp_path / "catalog")
    with pytest.raises(CheckpointError, match="catalog"):
        ContRecDiffusionPipeline.from_pretrained(tmp_path)


def test_push_and_load_from_the_hub(pipe, fake_hub):
    repo = f"{fake_hub.user}/tiny-contrec-pipeline"
    pipe.push_to_hub(repo, token=fake_hub.token)
    reloaded = ContRecDiffusionPipeline.from_pretrained(repo, token=fake_hub.token)
    assert call(reloaded).item_ids == call(pipe).item_ids


def test_cli_recommend(pipe, tmp_path, capsys):
    import json

    from contrec_hf.cli import main

    pipe.save_pretrained(tmp_path)
    argv = ["recommend", "--pipeline", str(tmp_path), "--history", "i1,i2", "--top-k", "4", "--steps", "3"]
    argv += ["--readout", "sample"]
    assert main([*argv, "--scheduler", "ddim", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and set(rows[0]) == {"item_id", "title", "score"}
    assert rows[0]["title"].startswith("Item ") and not {"i1", "i2"} & {r["item_id"] for r in rows}
    assert main(argv) == 0
    assert "1." in capsys.readouterr().out
    assert main([*argv[:3], "--history", "zzz"]) == 2
    assert "unknown item id" in capsys.readouterr().err


def test_tune_text_weight_reports_every_weight(pipe):
    from conftest import make_cyclic_dataset

    from contrec_hf.pipelines import tune_text_weight

    best, results = tune_text_weight(pipe, make_cyclic_dataset(), weights=(0.0, 1.0), users=4)
    assert best in (0.0, 1.0) and set(results) == {0.0, 1.0, float("inf")}
    assert all(0.0 <= r["ndcg@10"] <= 1.0 for r in results.values())


def test_text_weight_is_saved_and_faiss_index_serves_top_k(pipe, tmp_path):
    pytest.importorskip("faiss")
    from contrec_hf.retrieval_faiss import FaissIndex

    pipe.register_to_config(text_weight=0.25)
    try:
        pipe.save_pretrained(tmp_path)
        assert ContRecDiffusionPipeline.from_pretrained(tmp_path).config.text_weight == 0.25
        exact = call(pipe, readout="x0")
        pipe.set_retrieval_index(FaissIndex(pipe.catalog.latents, kind="flat"))
        approx = call(pipe, readout="x0")
        assert approx.item_ids == exact.item_ids and torch.allclose(approx.scores, exact.scores, atol=1e-5)
    finally:
        pipe.set_retrieval_index(None)
        pipe.register_to_config(text_weight=0.0)


def test_public_steps_build_no_autograd_graph(pipe):
    """Called on their own (e.g. by benchmarks over every user), the pipeline's steps must not keep graphs."""
    condition = pipe.encode_histories([[1, 2], [3]])
    latents = pipe.denoise(condition, 3, 1.0, torch.Generator().manual_seed(0))
    assert not condition.requires_grad and not latents.requires_grad

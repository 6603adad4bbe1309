"""TIGER: semantic IDs, the constrained beam search, the retrieval rule, training, saving and bad input."""

import json
import shutil

import pytest
import torch
from conftest import make_cyclic_dataset

from contrec_hf.baselines import TIGER, TIGERConfig, TIGERTrainer, TIGERTrainingArguments, run_baseline
from contrec_hf.baselines.tiger import SemanticIdVocabulary, unique_semantic_ids
from contrec_hf.errors import CheckpointError, ConfigError, EvaluationError, InputError
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.evaluation.metrics import target_ranks
from contrec_hf.models import ContRecTokenizer

TINY = {"num_levels": 2, "codebook_size": 4, "latent_dim": 8, "rq_hidden_sizes": (19,), "d_model": 32, "d_kv": 8,
        "num_heads": 2, "d_ff": 37, "num_layers": 1, "max_history": 5}  # fmt: skip
FAST = {"batch_size": 32, "learning_rate": 3e-3, "rq_batch_size": 64, "rq_max_epochs": 30, "eval_batch_size": 16}


@pytest.fixture(scope="module")
def walk():
    """41 items walked in a cycle by 23 users: more items than beams, so every beam holds a real unseen item."""
    return make_cyclic_dataset(num_items=41, num_users=23, length=11)


def features(num_items: int) -> torch.Tensor:
    return torch.randn(num_items, 24, generator=torch.Generator().manual_seed(1))


def untrained(num_items: int = 41, seed: int = 0) -> TIGER:
    torch.manual_seed(seed)
    config = TIGERConfig(num_items=num_items, dropout=0.0, **TINY)
    codes = torch.randint(4, (num_items, 2), generator=torch.Generator().manual_seed(seed))
    return TIGER(config, ContRecTokenizer(config.tokenizer_config(24)), unique_semantic_ids(codes))


def trained(data, seed=0, epochs=4, **kwargs):
    config = TIGERConfig(num_items=data.num_items, dropout=0.0, **TINY)
    args = TIGERTrainingArguments(seed=seed, max_epochs=epochs, patience=50, **{**FAST, **kwargs})
    trainer = TIGERTrainer(data, features(data.num_items), config, args)
    trainer.train(progress=False)
    return trainer


def test_collision_codes_make_every_semantic_id_distinct():
    codes = torch.tensor([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    ids = unique_semantic_ids(codes)
    assert ids[:, -1].tolist() == [0, 0, 1, 2, 0] and torch.equal(ids[:, :2], codes)
    assert len({tuple(row) for row in ids.tolist()}) == 5
    with pytest.raises(InputError, match="non-empty"):
        unique_semantic_ids(torch.zeros(0, 2, dtype=torch.long))


def test_vocabulary_gives_each_level_its_own_token_range():
    vocabulary = SemanticIdVocabulary(torch.tensor([[0, 1, 0], [2, 1, 0], [2, 1, 1]]), [3, 2, 2])
    assert vocabulary.vocab_size == 2 + 3 + 2 + 2
    assert vocabulary.tokens([1]).tolist() == [[4, 6, 7]]  # level 0 from 2, level 1 from 5, level 2 from 7
    assert [vocabulary.item_of(row) for row in vocabulary.tokens([0, 1, 2]).tolist()] == [0, 1, 2]
    assert vocabulary.item_of((4, 6, 9)) is None
    assert vocabulary.allowed((), vocabulary.history_counts([0])) == [4]  # item 0 seen: only level-0 code 2 left
    assert vocabulary.allowed((4, 6), vocabulary.history_counts([1])) == [8]
    with pytest.raises(InputError, match="item index 3 is not in the catalog"):
        vocabulary.tokens([3])
    with pytest.raises(InputError, match="share a semantic ID"):
        SemanticIdVocabulary(torch.tensor([[0, 1], [0, 1]]), [2, 2])
    with pytest.raises(InputError, match="outside its level's range"):
        SemanticIdVocabulary(torch.tensor([[0, 2]]), [2, 2])


def test_constrained_beams_hold_only_valid_unseen_items():
    model = untrained()
    histories = [[0, 5, 9], [40], list(range(0, 41, 2))]
    items, scores = model.generate(histories)
    assert items.shape == scores.shape == (3, 20)
    for history, row, row_scores in zip(histories, items.tolist(), scores, strict=True):
        assert min(row) >= 0 and len(set(row)) == 20 and not set(row) & set(history)  # never an invalid code
        assert torch.all(row_scores[:-1] >= row_scores[1:])  # best first
    nearly_all = [i for i in range(41) if i not in (3, 17, 30)]
    items, scores = model.generate([nearly_all])
    assert sorted(i for i in items[0].tolist() if i >= 0) == [3, 17, 30]  # the three unseen items, then nothing
    assert torch.isinf(scores[0, 3:]).all() and (items[0, 3:] == -1).all()


def test_items_outside_the_beam_rank_after_every_beam_item():
    model = untrained()
    history = [1, 2, 3]
    scores = model.score([history])
    items, _ = model.generate([history])
    in_beam = set(items[0].tolist())
    floor = torch.finfo(torch.float32).min
    assert {int(i) for i in (scores[0] > floor).nonzero().flatten()} == in_beam
    outside = next(i for i in range(41) if i not in in_beam and i not in history)
    assert int(target_ranks(scores, torch.tensor([outside]))) >= 20  # no hit at any K up to the beam's size
    best = int(items[0, 0])
    assert int(target_ranks(scores, torch.tensor([best]))) == 0
    metrics = evaluate_scorer(model.score, [history, history], [best, outside], 41, progress=False).metrics
    assert metrics["hr@5"] == metrics["hr@20"] == 0.5


def test_tiger_learns_a_cyclic_walk(walk):
    trainer = trained(walk, epochs=12)
    histories, targets = walk.split("test")
    before = evaluate_scorer(untrained().score, histories, targets, walk.num_items, progress=False)
    after = trainer.evaluate("test")
    assert after.metrics["ndcg@10"] > 0.5 > before.metrics["ndcg@10"]
    assert [row["epoch"] for row in trainer.history] == list(range(1, 13))
    usage = trainer.diagnostics["codebook_usage"]
    assert len(usage) == 2 and all(0 < u <= 1 for u in usage)
    assert trainer.diagnostics["collision_codes"] >= 1 and trainer.diagnostics["distinct_codes"] <= 16


def test_same_seed_same_model_and_a_save_load_round_trip(walk, tmp_path):
    a, b, c = trained(walk, epochs=1), trained(walk, epochs=1), trained(walk, seed=1, epochs=1)
    state_a, state_b = a.model.generator.state_dict(), b.model.generator.state_dict()
    assert all(torch.equal(value, state_b[name]) for name, value in state_a.items())
    assert torch.equal(a.model.semantic_ids, b.model.semantic_ids)
    assert not torch.equal(a.model.generator.shared.weight, c.model.generator.shared.weight)
    a.model.save_pretrained(tmp_path / "tiger")
    assert not list((tmp_path / "tiger").rglob("*.bin")) and not list((tmp_path / "tiger").rglob("*.pkl"))
    back = TIGER.from_pretrained(tmp_path / "tiger")
    assert torch.equal(back.semantic_ids, a.model.semantic_ids) and back.config == a.model.config
    histories = walk.split("validation")[0][:5]
    assert torch.equal(back.score(histories), a.model.score(histories))
    x = features(walk.num_items)
    assert torch.equal(back.item_tokenizer.codes(x), a.model.item_tokenizer.codes(x))
    (tmp_path / "tiger" / "semantic_ids.safetensors").unlink()
    with pytest.raises(CheckpointError, match="semantic_ids.safetensors is missing"):
        TIGER.from_pretrained(tmp_path / "tiger")


def test_epochs_take_the_windows_in_turn_from_seeded_orders(walk):
    config = TIGERConfig(num_items=walk.num_items, **TINY)
    trainer = TIGERTrainer(walk, features(41), config, TIGERTrainingArguments(windows_per_epoch=60))
    generator = torch.Generator().manual_seed(0)
    total = len(trainer.windows)  # 23 users × 8 training windows
    first = [trainer._next_windows(generator) for _ in range(total // 60)]
    assert all(len(epoch) == 60 for epoch in first)
    used = [i for epoch in first for i in epoch]
    assert len(set(used)) == len(used)  # no window twice before every window was used once
    assert len(trainer._next_windows(generator)) == 60  # the rest of this order, then the start of a fresh one
    wide = TIGERTrainer(walk, features(41), config, TIGERTrainingArguments(windows_per_epoch=10**6))
    assert sorted(wide._next_windows(generator)) == list(range(total))  # at most every window once
    with pytest.raises(ValueError, match="windows_per_epoch"):
        TIGERTrainingArguments(windows_per_epoch=0)


def test_bad_input_is_refused_early(walk):
    with pytest.raises(ConfigError, match="codebook_size 64 exceeds the catalog's 41 items"):
        TIGERConfig(num_items=41)
    with pytest.raises(ConfigError, match="features must be one of"):
        TIGERConfig(num_items=41, codebook_size=4, features="pixels")
    with pytest.raises(ConfigError, match="beam_size 10 is below 20"):
        TIGERTrainer(walk, features(41), TIGERConfig(num_items=41, beam_size=10, **TINY), TIGERTrainingArguments())
    with pytest.raises(InputError, match=r"features must be \[41, dim\]"):
        TIGERTrainer(walk, features(40), TIGERConfig(num_items=41, **TINY), TIGERTrainingArguments())
    model = untrained()
    with pytest.raises(ConfigError, match="top_k 25 exceeds beam_size 20"):
        model.recommend([1, 2], top_k=25)
    with pytest.raises(InputError, match="item index 41 is not in the catalog"):
        model.recommend([1, 41])
    with pytest.raises(EvaluationError, match="empty history"):
        model.score([[]])
    assert len(model.recommend([1, 2], top_k=7)) == 7


def test_run_baseline_trains_evaluates_and_saves_tiger(walk, tmp_path):
    """The runner's path, with the real MiniLM text encoder behind TIGER's default text features."""
    result = run_baseline("tiger", walk, output_dir=tmp_path / "tiger", model_kwargs={**TINY},
                          training_kwargs={**FAST, "max_epochs": 2}, progress=False)  # fmt: skip
    saved = json.loads((tmp_path / "tiger" / "metrics.json").read_text())
    assert saved["test"] == result["test"] and 0 <= result["test"]["ndcg@10"] <= 1
    assert saved["config"]["architecture"]["features"] == "text" and "codebook_usage" in saved["semantic_ids"]
    assert (tmp_path / "tiger" / "features" / "features.json").is_file()
    assert len(json.loads((tmp_path / "tiger" / "training_history.json").read_text())) == 2
    assert TIGER.from_pretrained(tmp_path / "tiger" / "model").config.codebook_size == 4


def resumable(data, folder, **kwargs) -> TIGERTrainer:
    """A trainer with dropout on (so the torch RNG must be restored too), checkpointing into ``folder``."""
    config = TIGERConfig(num_items=data.num_items, dropout=0.1, **TINY)
    args = TIGERTrainingArguments(seed=0, max_epochs=4, patience=50, output_dir=str(folder) if folder else None,
                                  **{**FAST, "windows_per_epoch": 70, **kwargs})  # fmt: skip
    return TIGERTrainer(data, features(data.num_items), config, args)


def same_training(a: TIGERTrainer, b: TIGERTrainer) -> bool:
    state_b = b.model.generator.state_dict()
    weights = all(torch.equal(value, state_b[name]) for name, value in a.model.generator.state_dict().items())
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in t.history] for t in (a, b)]
    return weights and untimed[0] == untimed[1] and torch.equal(a.model.semantic_ids, b.model.semantic_ids)


def test_an_interrupted_training_resumes_to_the_same_model(walk, tmp_path, monkeypatch):
    straight = resumable(walk, None)
    straight.train(progress=False)
    first = resumable(walk, tmp_path / "run")
    first.train(progress=False, stop_at_epoch=2)  # stopped after epoch 2, as a kill would
    saved = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())["trainer"]
    assert saved["epoch"] == 2 and not saved["finished"] and len(saved["history"]) == 2
    assert not list((tmp_path / "run").rglob("*.bin")) and not list((tmp_path / "run").rglob("*.pkl"))
    resumed = resumable(walk, tmp_path / "run")
    resumed.train(progress=False)
    assert same_training(straight, resumed) and [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]

    # Killed inside epoch 1: only the semantic IDs were saved; the RQ-VAE is not trained again.
    resumable(walk, tmp_path / "early").train(progress=False, stop_at_epoch=1)
    shutil.rmtree(tmp_path / "early" / "checkpoint")
    monkeypatch.setattr(TIGERTrainer, "train_semantic_ids", lambda *a, **k: pytest.fail("RQ-VAE retrained"))
    again = resumable(walk, tmp_path / "early")
    again.train(progress=False)
    assert same_training(straight, again) and again.diagnostics == straight.diagnostics

    finished = resumable(walk, tmp_path / "run")  # a finished run is read back, not trained further
    finished.train(progress=False)
    assert same_training(straight, finished)
    with pytest.raises(ConfigError, match="started with other options"):
        resumable(walk, tmp_path / "run", learning_rate=1e-2).train(progress=False)

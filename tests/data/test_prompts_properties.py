"""Property-based tests of the prompts, the stage-2 collator and the sliding training windows (hypothesis).

Titles and categories are drawn from words, spaces, non-ASCII letters and fragments of special tokens, so that
an item's text may contain ``<item_token>``, ``<pref>`` or ``<pad>`` literally. The references are written
here from the docstrings: the last L history items are kept, each with K placeholders; labels are -100 except
on the response and ``<pref>``; rows are right-padded.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrec_hf.data.prompts import (
    INSTRUCTION,
    SPECIAL_TOKENS,
    ContRecCollator,
    PromptBuilder,
    sliding_window_samples,
    train_text_tokenizer,
)
from contrec_hf.errors import DataError

SETTINGS = settings(derandomize=True, deadline=None, max_examples=60)

FRAGMENTS = ["Alpha", "film", " ", "  ", "é", "数", "<", ">", "/", "item", "_token", "pref", *SPECIAL_TOKENS.values()]
FRAGMENTS += ["<pad>", "<eos>"]
texts = st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join)


@pytest.fixture(scope="module")
def tokenizer():
    corpus = [INSTRUCTION, "History Answer User The user may prefer similar items like", *FRAGMENTS] * 2
    return train_text_tokenizer(corpus, vocab_size=300)


@st.composite
def prompt_setups(draw):
    """A catalog (titles, categories), the builder's K, L, title length and user tokens, and a batch."""
    num_items = draw(st.integers(1, 6))
    titles = draw(st.lists(texts, min_size=num_items, max_size=num_items))
    categories = draw(st.lists(texts, min_size=num_items, max_size=num_items))
    builder = PromptBuilder(
        titles,
        categories,
        num_item_tokens=draw(st.integers(1, 3)),
        max_history=draw(st.integers(1, 5)),
        max_title_length=draw(st.integers(1, 12)),
        num_user_tokens=draw(st.integers(0, 2)),
    )
    item = st.integers(0, num_items - 1)
    batch = draw(
        st.lists(
            st.tuples(st.lists(item, min_size=1, max_size=8), st.one_of(st.none(), item), st.integers(0, 2)),
            min_size=1,
            max_size=3,
        )
    )
    return builder, batch


def make_collator(tokenizer, builder, fast_path_probability=0.0, seed=0):
    num_items = len(builder.titles)
    features = torch.arange(num_items * 4, dtype=torch.float32).reshape(num_items, 4)  # row i starts with 4·i
    users = torch.arange(3 * 2, dtype=torch.float32).reshape(3, 2) if builder.num_user_tokens else None
    return ContRecCollator(tokenizer, builder, features, fast_path_probability, seed=seed, user_features=users)


def ids_of(tokenizer, name: str) -> int:
    return tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[name])


def runs(row: list[bool]) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of True."""
    out, start = [], None
    for j, flag in enumerate([*row, False]):
        if flag and start is None:
            start = j
        elif not flag and start is not None:
            out.append((start, j - start))
            start = None
    return out


# ------------------------------------------------------------------------------------------------ builder
@SETTINGS
@given(prompt_setups())
def test_prompt_keeps_the_most_recent_items_with_k_placeholders_each(setup):
    builder, batch = setup
    for history, target, _ in batch:
        text, items = builder.prompt(history)
        assert items == history[-builder.max_history :]
        assert len(items) == min(len(history), builder.max_history)
        assert text.startswith(builder.instruction) and text.endswith("\nAnswer:")
        k = builder.num_item_tokens
        assert text.count(SPECIAL_TOKENS["item_token"]) == k * len(items)
        assert text.count(SPECIAL_TOKENS["item_start"]) == text.count(SPECIAL_TOKENS["item_end"]) == len(items)
        assert text.count(SPECIAL_TOKENS["user_token"]) == builder.num_user_tokens
        assert SPECIAL_TOKENS["pref"] not in text
        # One line per kept item, in order, each with the (cut) title and the placeholder group.
        lines = text.split("\nHistory:\n")[1].removesuffix("\nAnswer:").split("\n")
        assert len(lines) == len(items)
        group = SPECIAL_TOKENS["item_start"] + SPECIAL_TOKENS["item_token"] * k + SPECIAL_TOKENS["item_end"]
        for line, item in zip(lines, items):
            title = line.removesuffix(" " + group)
            assert line == builder.item_text(item) and line.endswith(" " + group)
            assert len(title) <= builder.max_title_length and title == title.strip()
        if target is not None:
            response = builder.response(target)
            assert not any(token in response for token in SPECIAL_TOKENS.values())
            assert response.startswith(" The user may prefer (") and response.endswith(".")


# ----------------------------------------------------------------------------------------------- collator
@SETTINGS
@given(prompt_setups())
def test_placeholders_match_the_item_features(tokenizer, setup):
    builder, batch = setup
    out = make_collator(tokenizer, builder)(batch)
    k, ku = builder.num_item_tokens, builder.num_user_tokens
    kept = [history[-builder.max_history :] for history, _, _ in batch]
    item_token, start, end = (
        ids_of(tokenizer, "item_token"),
        ids_of(tokenizer, "item_start"),
        ids_of(tokenizer, "item_end"),
    )
    # Rows of item_features follow the placeholder groups in row-major order: the kept items, row after row.
    expected_items = [i for items in kept for i in items]
    assert out["item_features"].shape[0] == len(expected_items)
    assert out["item_features"][:, 0].tolist() == [4.0 * i for i in expected_items]
    assert out["item_ids"].tolist() == expected_items
    assert int((out["input_ids"] == item_token).sum()) == k * out["item_features"].shape[0]
    for b, items in enumerate(kept):
        row = out["input_ids"][b].tolist()
        groups = runs([t == item_token for t in row])
        assert [length for _, length in groups] == [k] * len(items)  # K contiguous placeholders per item
        for s, length in groups:
            assert row[s - 1] == start and row[s + length] == end
        assert row.count(start) == row.count(end) == len(items)
        assert row.count(ids_of(tokenizer, "user_token")) == ku
    if ku:
        assert out["user_features"].shape == (len(batch), 2)
        assert out["user_features"][:, 0].tolist() == [2.0 * u for _, _, u in batch]
    targets = [t for _, t, _ in batch]
    if all(t is not None for t in targets):
        assert out["target_ids"].tolist() == targets
        assert out["target_features"][:, 0].tolist() == [4.0 * t for t in targets]
        assert torch.equal(out["catalog_features"], torch.arange(len(builder.titles) * 4.0).reshape(-1, 4))
    else:
        assert not {"target_ids", "target_features", "catalog_features"} & set(out)


@SETTINGS
@given(prompt_setups(), st.booleans())
def test_labels_cover_exactly_the_response_and_pref(tokenizer, setup, train):
    builder, batch = setup
    out = make_collator(tokenizer, builder)(batch, train=train)
    pref = ids_of(tokenizer, "pref")
    for b, (history, target, _) in enumerate(batch):
        n = int(out["attention_mask"][b].sum())
        ids, labels = out["input_ids"][b, :n].tolist(), out["labels"][b].tolist()
        prompt = builder.prompt(history)[0]
        with_response = train and target is not None
        response = builder.response(target) if with_response else ""
        # The attended tokens spell the prompt, the response (when trained on) and <pref>, nothing else.
        assert tokenizer.decode(ids, clean_up_tokenization_spaces=False) == prompt + response + SPECIAL_TOKENS["pref"]
        assert ids[-1] == pref and ids.count(pref) == 1
        labelled = [j for j, label in enumerate(labels) if label != -100]
        if not with_response:
            assert labelled == []
            continue
        assert labelled == list(range(labelled[0], n))  # one span, ending at <pref>
        assert [labels[j] for j in labelled] == [ids[j] for j in labelled]
        span = tokenizer.decode([ids[j] for j in labelled], clean_up_tokenization_spaces=False)
        assert span == response + SPECIAL_TOKENS["pref"]
        assert tokenizer.decode(ids[: labelled[0]], clean_up_tokenization_spaces=False) == prompt


@SETTINGS
@given(prompt_setups(), st.floats(0.0, 1.0), st.integers(0, 3))
def test_padding_attention_and_fast_path_drops(tokenizer, setup, probability, seed):
    builder, batch = setup
    out = make_collator(tokenizer, builder, probability, seed)(batch)
    again = make_collator(tokenizer, builder, probability, seed)(batch)
    assert all(torch.equal(out[key], again[key]) for key in out)  # the seed fixes the response drops
    input_ids, attention, labels = out["input_ids"], out["attention_mask"], out["labels"]
    assert input_ids.shape == attention.shape == labels.shape and input_ids.shape[0] == len(batch)
    lengths = attention.sum(dim=1).tolist()
    assert max(lengths) == input_ids.shape[1]  # no column of padding only
    pref = ids_of(tokenizer, "pref")
    for b, n in enumerate(lengths):
        assert attention[b].tolist() == [1] * n + [0] * (input_ids.shape[1] - n)  # right padding
        assert (input_ids[b, n:] == tokenizer.pad_token_id).all() and (labels[b, n:] == -100).all()
        assert input_ids[b, n - 1] == pref
        prompt_length = len(tokenizer(builder.prompt(batch[b][0])[0], add_special_tokens=False)["input_ids"])
        trained = bool((labels[b] != -100).any())
        # A row either keeps its response (labels on it and <pref>) or drops it (the fast path: no labels).
        assert n == prompt_length + 1 or trained
        if trained:
            assert batch[b][1] is not None and labels[b, n - 1] == pref
    if probability == 1.0:
        assert (labels == -100).all() and (
            attention.sum(dim=1)
            == torch.tensor(
                [len(tokenizer(builder.prompt(h)[0], add_special_tokens=False)["input_ids"]) + 1 for h, _, _ in batch]
            )
        ).all()


@SETTINGS
@given(prompt_setups(), st.data())
def test_items_outside_the_catalog_are_refused(tokenizer, setup, data):
    builder, batch = setup
    num_items = len(builder.titles)
    bad = data.draw(st.one_of(st.integers(-5, -1), st.integers(num_items, num_items + 5)))
    where = data.draw(st.sampled_from(["history", "target"]))
    history, target, user = batch[0]
    broken = ([*history, bad], target, user) if where == "history" else (history, bad, user)
    with pytest.raises(DataError, match="outside the catalog"):
        make_collator(tokenizer, builder)([*batch[1:], broken])


# ---------------------------------------------------------------------------------------- sliding windows
sequences = st.lists(st.lists(st.integers(0, 20), max_size=8), max_size=5)


@settings(derandomize=True, deadline=None, max_examples=100)
@given(sequences, st.integers(1, 6))
def test_sliding_windows_cover_every_next_item_without_leaking_it(train, max_history):
    samples = sliding_window_samples(train, max_history)
    # Exactly one sample per (user, position ≥ 1), in order, whose target is the item at that position.
    assert [(u, end) for u, end, _ in samples] == [(u, e) for u, seq in enumerate(train) for e in range(1, len(seq))]
    for u, end, target in samples:
        seq = train[u]
        assert target == seq[end]
        history = seq[max(0, end - max_history) : end]
        assert 1 <= len(history) <= max_history and history == seq[:end][-max_history:]
        # Positions strictly before the target's: never the target's own position, never a later one.
        assert all(p < end for p in range(max(0, end - max_history), end))
        if len(set(seq)) == len(seq):  # deduplicated sequences: the target's item is not in its history
            assert target not in history


@SETTINGS
@given(prompt_setups(), st.lists(st.integers(0, 5), min_size=2, max_size=12))
def test_windows_and_prompts_agree_on_the_kept_history(tokenizer, setup, sequence):
    builder, _ = setup
    sequence = [i % len(builder.titles) for i in sequence]
    collator = make_collator(tokenizer, builder)
    samples = sliding_window_samples([sequence], builder.max_history)
    batch = [(sequence[:end], target, 0) for _, end, target in samples]
    out = collator(batch)
    windows = [sequence[max(0, end - builder.max_history) : end] for _, end, _ in samples]
    assert out["item_features"][:, 0].tolist() == [4.0 * i for w in windows for i in w]
    assert out["target_ids"].tolist() == sequence[1:]


def test_titles_cannot_inject_special_tokens(tokenizer):
    """Regression: a title or category holding ``<item_token>`` (or ``<pref>``) added a placeholder to the
    prompt, so the model's count check failed, and a ``<pref>`` in a response was trained as a target."""
    builder = PromptBuilder(
        ["A<item_token>b", "<it<item>em_token>", "x"], ["<pref>", "C<pref>", ""], num_item_tokens=2
    )
    text, items = builder.prompt([0, 1, 2])
    assert items == [0, 1, 2]
    assert text.count("<item_token>") == 2 * 3 and text.count("<item>") == 3
    assert (
        builder.item_text(0).startswith("Ab <item>")
        and builder.item_text(1) == " <item><item_token><item_token></item>"
    )
    assert builder.response(0) == " The user may prefer (similar) items, like Ab."
    assert builder.response(1) == " The user may prefer (C) items, like ."
    out = ContRecCollator(tokenizer, builder, torch.zeros(3, 2))([([0, 1, 2], 1)])
    assert int((out["input_ids"] == tokenizer.convert_tokens_to_ids("<item_token>")).sum()) == 2 * 3
    assert int((out["input_ids"] == tokenizer.convert_tokens_to_ids("<pref>")).sum()) == 1

"""Property-based tests of the chronological leave-one-out split (hypothesis).

Random interaction tables (few users and items, timestamps with many ties, repeated user–item pairs, numeric
and non-numeric ids) go through ``build_interactions`` and ``leave_one_out``; the result is compared with a
brute-force reference written here from the docstrings: each user's interactions sorted by time with ties in
file order, only the first interaction with an item kept, users left with fewer than 3 interactions dropped.
"""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contrec_hf.data import SequentialDataset, apply_preset, build_interactions, leave_one_out
from contrec_hf.data.prompts import sliding_window_samples
from contrec_hf.data.split import Preset, _sorted_ids
from contrec_hf.errors import DataError

SETTINGS = settings(derandomize=True, deadline=None, max_examples=60)

# Raw ids: numbers (negative ones too) and short strings with digits, dashes and a non-ASCII digit.
raw_ids = st.one_of(
    st.integers(-3, 40).map(str),
    st.text(alphabet="ab-_1²", min_size=1, max_size=3),
)


@st.composite
def interaction_tables(draw, max_rows: int = 30):
    """``(rows, titles)``: rows ``(user_id, item_id, timestamp)`` in file order, and titles of some items."""
    users = draw(st.lists(raw_ids, min_size=1, max_size=4, unique=True))
    items = draw(st.lists(raw_ids, min_size=2, max_size=7, unique=True))
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from(users), st.sampled_from(items), st.integers(0, 4)),
            min_size=3 * len(users),  # most users can be split, some fall short
            max_size=max_rows,
        )
    )
    titled = draw(st.lists(st.sampled_from(items), unique=True))
    titles = {item: f"Title of {item}" for item in titled}
    return rows, titles


def frame_of(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def items_frame(titles: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": list(titles), "title": list(titles.values())}, columns=["item_id", "title"])


def reference_sequences(rows, deduplicate: bool = True) -> tuple[dict[str, list[str]], int]:
    """Brute force: each kept user's raw item sequence, and the number of dropped users."""
    per_user: dict[str, list[tuple[int, int, str]]] = {}
    for position, (user, item, timestamp) in enumerate(rows):
        per_user.setdefault(user, []).append((timestamp, position, item))
    kept, dropped = {}, 0
    for user, events in per_user.items():
        sequence = []
        for _, _, item in sorted(events):  # by time, then by file position
            if not deduplicate or item not in sequence:
                sequence.append(item)
        if len(sequence) >= 3:
            kept[user] = sequence
        else:
            dropped += 1
    return kept, dropped


def split_of(rows, titles=None, **kwargs) -> SequentialDataset | None:
    """``leave_one_out`` of the rows, or None where no user can be split (the library raises then)."""
    interactions = build_interactions(frame_of(rows), items_frame(titles or {}), name="random")
    if not reference_sequences(rows, kwargs.get("deduplicate", True))[0]:
        with pytest.raises(DataError, match="3 interactions"):
            leave_one_out(interactions, **kwargs)
        return None
    return leave_one_out(interactions, **kwargs)


def raw_sequences(data: SequentialDataset) -> dict[str, list[str]]:
    return {user: [data.item_ids[i] for i in seq] for user, seq in zip(data.user_ids, data.sequences)}


@SETTINGS
@given(interaction_tables(), st.booleans())
def test_split_reconstructs_each_users_chronological_sequence(table, deduplicate):
    rows, titles = table
    data = split_of(rows, titles, deduplicate=deduplicate)
    expected, dropped = reference_sequences(rows, deduplicate)
    if data is None:
        return
    assert raw_sequences(data) == expected
    assert data.info["dropped_users"] == dropped and data.info["deduplicate"] == deduplicate
    assert data.stats()["dropped_users"] == dropped
    val_histories, val_targets = data.split("validation")
    test_histories, test_targets = data.split("test")
    train = data.train_sequences()
    for user, seq, tr, vh, vt, th, tt in zip(
        data.user_ids, data.sequences, train, val_histories, val_targets, test_histories, test_targets
    ):
        assert len(seq) >= 3
        assert [*tr, vt, tt] == seq  # train + validation + test is the whole sequence
        assert vh == tr and th == [*tr, vt]
        assert data.item_ids[vt] == expected[user][-2] and data.item_ids[tt] == expected[user][-1]
        if deduplicate:
            assert len(set(seq)) == len(seq)  # no item twice: no target in its own history
            assert vt not in vh and tt not in th
    assert data.num_interactions == sum(len(s) for s in expected.values())
    assert data.stats()["train_interactions"] == sum(len(s) - 2 for s in expected.values())
    assert int(data.item_counts().sum()) == sum(len(t) for t in train)


@SETTINGS
@given(interaction_tables())
def test_id_maps_are_bijections_over_the_kept_data(table):
    rows, titles = table
    data = split_of(rows, titles)
    if data is None:
        return
    expected, _ = reference_sequences(rows)
    assert len(set(data.user_ids)) == len(data.user_ids) == data.num_users
    assert set(data.user_ids) == set(expected)
    assert len(set(data.item_ids)) == len(data.item_ids) == data.num_items
    assert set(data.item_ids) == {item for seq in expected.values() for item in seq}  # no unused item
    assert data.user_index(data.user_ids) == list(range(data.num_users))
    assert data.item_index(data.item_ids) == list(range(data.num_items))
    assert all(0 <= i < data.num_items for seq in data.sequences for i in seq)
    # Deterministic order: numbers numerically when every id is an integer, otherwise as strings.
    for ids in (data.user_ids, data.item_ids):
        if all(re.fullmatch(r"-?[0-9]+", i) for i in ids):
            assert [int(i) for i in ids] == sorted(int(i) for i in ids)
        else:
            assert ids == sorted(ids)
    # The item table follows the item indices; items without a known title get an empty one.
    assert data.items["item_id"].tolist() == data.item_ids
    assert data.items["title"].tolist() == [titles.get(i, "") for i in data.item_ids]


@SETTINGS
@given(interaction_tables(), st.data())
def test_split_ignores_how_users_are_interleaved_in_the_file(table, data):
    rows, titles = table
    # Shuffle the rows, then put each user's rows back in their original relative order.
    order = data.draw(st.permutations(range(len(rows))))
    by_user = {u: [r for r in rows if r[0] == u] for u in dict.fromkeys(r[0] for r in rows)}
    cursors = Counter()
    shuffled = []
    for position in order:
        user = rows[position][0]
        shuffled.append(by_user[user][cursors[user]])
        cursors[user] += 1
    assert Counter(shuffled) == Counter(rows)
    a, b = split_of(rows, titles), split_of(shuffled, titles)
    if a is None:
        assert b is None
        return
    assert (a.user_ids, a.item_ids, a.sequences, a.info) == (b.user_ids, b.item_ids, b.sequences, b.info)
    pd.testing.assert_frame_equal(a.items, b.items)


@settings(derandomize=True, deadline=None, max_examples=20)
@given(interaction_tables())
def test_save_and_load_round_trip(tmp_path_factory, table):
    rows, titles = table
    data = split_of(rows, titles)
    if data is None:
        return
    directory = data.save(tmp_path_factory.mktemp("split"))
    back = SequentialDataset.load(directory)
    assert (back.name, back.user_ids, back.item_ids, back.sequences, back.info) == (
        data.name,
        data.user_ids,
        data.item_ids,
        data.sequences,
        data.info,
    )
    pd.testing.assert_frame_equal(back.items, data.items)
    for name in ("validation", "test"):
        assert back.split(name) == data.split(name)


@SETTINGS
@given(interaction_tables(max_rows=40), st.integers(1, 3))
def test_k_core_preset_matches_brute_force(table, k):
    rows, _ = table
    # Reference: drop users and items under k interactions until nothing changes.
    kept = list(rows)
    while True:
        users = Counter(r[0] for r in kept)
        items = Counter(r[1] for r in kept)
        smaller = [r for r in kept if users[r[0]] >= k and items[r[1]] >= k]
        if smaller == kept:
            break
        kept = smaller
    interactions = build_interactions(frame_of(rows))
    preset = Preset(name="core", k_core=k)
    if not kept:
        with pytest.raises(DataError, match="removed every interaction"):
            apply_preset(interactions, preset)
        return
    out = apply_preset(interactions, preset).frame
    assert list(zip(out["user_id"], out["item_id"], out["timestamp"])) == kept  # file order kept
    assert out.groupby("user_id").size().min() >= k and out.groupby("item_id").size().min() >= k


@SETTINGS
@given(interaction_tables(), st.integers(1, 4))
def test_training_windows_never_reach_the_held_out_items(table, max_history):
    rows, _ = table
    data = split_of(rows)
    if data is None:
        return
    train = data.train_sequences()
    samples = sliding_window_samples(train, max_history)
    assert len(samples) == sum(max(0, len(t) - 1) for t in train)
    for user, end, target in samples:
        seq = data.sequences[user]
        history = train[user][max(0, end - max_history) : end]
        held_out = {seq[-2], seq[-1]}
        assert end < len(seq) - 2 and target == seq[end]
        assert target not in held_out and not held_out & set(history)


def test_sorted_ids_handles_odd_digit_strings():
    """Regression: ``str.isdigit`` accepts "²" and ``lstrip("-")`` accepts "--1", but ``int`` refuses both."""
    assert _sorted_ids(["10", "-2", "3"]) == ["-2", "3", "10"]
    assert _sorted_ids(["--1", "2", "10"]) == ["--1", "10", "2"]
    assert _sorted_ids(["²", "1", "3"]) == ["1", "3", "²"]


def test_deduplication_keeps_the_chronologically_first_interaction():
    """Regression: deduplicating in file order kept a later repeat when the file is not in time order."""
    rows = [("u", "x", 10), ("u", "y", 5), ("u", "x", 1), ("u", "z", 20)]
    data = leave_one_out(build_interactions(frame_of(rows)))
    assert raw_sequences(data) == {"u": ["x", "y", "z"]}

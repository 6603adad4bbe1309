import pytest
import torch

from contrec_hf.retrieval import (
    fuse_scores,
    latent_scores,
    mask_history,
    parse_response,
    seen_items_mask,
    text_scores,
    top_k,
)


def test_latent_scores_by_hand():
    latents = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    assert torch.allclose(latent_scores(latents, items, "cosine"), torch.tensor([[1.0, 0.0, -1.0]]))
    assert torch.allclose(latent_scores(latents, items, "dot"), torch.tensor([[2.0, 0.0, -1.0]]))
    assert torch.allclose(latent_scores(latents, items, "l2"), torch.tensor([[-1.0, -10.0, -4.0]]))
    with pytest.raises(ValueError, match="unknown similarity"):
        latent_scores(latents, items, "manhattan")
    with pytest.raises(ValueError, match="share d"):
        latent_scores(latents, torch.zeros(3, 5))


def test_top_k_masks_history_and_checks_k():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    ids, values = top_k(scores, 2, [[0], [3, 2]])
    assert ids.tolist() == [[1, 2], [1, 0]] and torch.allclose(values[0], torch.tensor([0.8, 0.7]))
    with pytest.raises(ValueError, match="exceeds"):
        top_k(scores, 3, [[0], [3, 2]])
    with pytest.raises(ValueError, match="between 1 and the catalog size 4"):
        top_k(scores, 5)


def test_text_scores_and_fusion():
    text = " The user may prefer (Action Thriller) items, like Die Hard."
    assert parse_response(text) == ("Action Thriller", "Die Hard")
    assert parse_response("no structure here") == ("", "")
    scores = text_scores([text], ["Die Hard", "Hard Rain", "Toy Story"], ["Action Thriller", "Action", "Comedy"])
    assert scores[0, 0] == pytest.approx(1.5) and scores[0, 0] > scores[0, 1] > scores[0, 2] == 0
    latent = torch.tensor([[1.0, 2.0, 3.0]])
    fused = fuse_scores(latent, scores, 1.0)
    assert torch.allclose(fuse_scores(latent, None, 1.0), torch.tensor([[-1.0, 0.0, 1.0]]))
    assert fused.argmax() == 2 and fused[0, 0] > -1.0


def test_text_scores_jaccard_by_hand_with_empty_sets_and_unknown_words():
    """Each entry is |g ∩ w| / |g ∪ w| of the title words + 0.5 · that of the category words, 0 where a set is empty;
    generated words no item holds still count in the union, and a repeated word counts once."""
    titles, categories = ["Die Hard", "Hard Hard Rain", "", "Toy Story"], ["Action", "Action Thriller", "Action", ""]
    texts = [
        " The user may prefer (Action Noir) items, like Die Hard Again.",  # "again", "noir": in no item
        "no structure here",  # parses to nothing: every score 0
        " The user may prefer () items, like Toy.",  # an empty category
    ]
    expected = torch.tensor(
        [
            [2 / 3 + 0.5 * (1 / 2), 1 / 4 + 0.5 * (1 / 3), 0.0 + 0.5 * (1 / 2), 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1 / 2],
        ]
    )
    scores = text_scores(texts, titles, categories)
    assert scores.shape == (3, 4) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-7)
    assert text_scores([], titles, categories).shape == (0, 4)


def test_seen_items_mask_cuts_each_history_and_keeps_the_target():
    history = torch.tensor([[4, 1, 4, 2], [0, -1, -1, -1]])  # item 4 twice; row 1 padded
    rows, cutoffs = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 2, 4, 1, 0])
    mask = seen_items_mask(history, rows, cutoffs, 5, torch.tensor([3, 4, 2, 2, 0]))
    assert mask.shape == (5, 5) and mask.dtype == torch.bool
    left_out = [set(torch.nonzero(row).flatten().tolist()) for row in mask]
    # row 1 keeps its target 4, a repeat; row 2 keeps 2; the padding (-1) is never an item
    assert left_out == [set(), {1}, {1, 4}, {0}, set()]
    full = seen_items_mask(history, torch.tensor([0, 1]), torch.tensor([4, 1]), 5, torch.tensor([3, 3]))
    scores = mask_history(torch.zeros(2, 5), [[4, 1, 4, 2], [0]])  # the evaluation's mask, for the whole history
    assert torch.equal(full, torch.isinf(scores))

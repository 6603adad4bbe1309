"""Prompts and the stage-2 collator for ContRec (docs/method.md §3).

A prompt is a short instruction followed by the last L history items, each as its title (≤ 50 characters)
and ``<item>`` + K placeholders + ``</item>``; the continuous tokens are spliced into the placeholders'
embeddings by the model. The response names the next item's category and title, then ``<pref>``, whose
hidden state conditions the diffusion head. Raw item ids never appear in the text.

The fast path drops the response: ``<pref>`` follows the prompt directly (no text generation at inference).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from ..errors import DataError

__all__ = [
    "INSTRUCTION",
    "SPECIAL_TOKENS",
    "ContRecCollator",
    "PromptBuilder",
    "sliding_window_samples",
    "train_text_tokenizer",
]

INSTRUCTION = "Given the items the user interacted with, in order, predict the item they will like next."
SPECIAL_TOKENS = {
    "item_start": "<item>",
    "item_end": "</item>",
    "item_token": "<item_token>",
    "pref": "<pref>",
    "user_token": "<user_token>",
}


def train_text_tokenizer(texts: Sequence[str], vocab_size: int = 4096):
    """Train a small byte-level BPE tokenizer on ``texts`` (the `tokenizers` library) and return it as a
    `PreTrainedTokenizerFast` with ContRec's special tokens, a pad and an end-of-sequence token.

    For the tiny default backbone and the tests; pretrained LMs bring their own tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise DataError("cannot train a text tokenizer on no text")
    specials = ["<pad>", "<eos>", *SPECIAL_TOKENS.values()]
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")
    fast.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS.values())})
    return fast


def _plain(text: str) -> str:
    """``text`` without ContRec's special-token strings: a title holding ``<item_token>`` would add a placeholder
    to the prompt (and ``<pref>`` a second conditioning token). Removed until none is left, so that removing one
    cannot join the pieces of another."""
    while any(token in text for token in SPECIAL_TOKENS.values()):
        for token in SPECIAL_TOKENS.values():
            text = text.replace(token, "")
    return text


@dataclass
class PromptBuilder:
    """Builds the text of ContRec prompts and responses.

    Args:
        titles (`list[str]`): title of each item index.
        categories (`list[str]`): category of each item index (may be empty strings).
        num_item_tokens (`int`): K, placeholders per item.
        max_history (`int`): L, the most recent history items kept.
        max_title_length (`int`): characters of each title kept.
        num_user_tokens (`int`): K of the user tokens placed after the instruction (0: no user tokens).
    """

    titles: Sequence[str]
    categories: Sequence[str]
    num_item_tokens: int
    max_history: int = 20
    max_title_length: int = 50
    instruction: str = INSTRUCTION
    num_user_tokens: int = 0

    def item_text(self, item: int) -> str:
        """``"<title> <item><item_token>…</item>"`` for one item (K placeholders)."""
        title = _plain(self.titles[item])[: self.max_title_length].strip()
        tokens = SPECIAL_TOKENS["item_token"] * self.num_item_tokens
        return f"{title} {SPECIAL_TOKENS['item_start']}{tokens}{SPECIAL_TOKENS['item_end']}"

    def prompt(self, history: Sequence[int]) -> tuple[str, list[int]]:
        """The prompt text and the item indices whose tokens fill its placeholders, in order."""
        if len(history) == 0:
            raise DataError("cannot build a prompt from an empty history")
        items = list(history)[-self.max_history :]
        lines = "\n".join(self.item_text(i) for i in items)
        user = f"\nUser: {SPECIAL_TOKENS['user_token'] * self.num_user_tokens}" if self.num_user_tokens else ""
        return f"{self.instruction}{user}\nHistory:\n{lines}\nAnswer:", items

    def response(self, target: int) -> str:
        """``" The user may prefer (<category>) items, like <title>."`` (without ``<pref>``)."""
        category = _plain(self.categories[target]).strip() or "similar"
        title = _plain(self.titles[target])[: self.max_title_length].strip()
        return f" The user may prefer ({category}) items, like {title}."


def sliding_window_samples(train_sequences: Sequence[Sequence[int]], max_history: int) -> list[tuple[int, int, int]]:
    """Training samples over each user's training part: ``(user, end, target)`` where the history is
    ``sequence[max(0, end - max_history):end]`` and ``target = sequence[end]``, for every ``end ≥ 1``."""
    return [(u, end, seq[end]) for u, seq in enumerate(train_sequences) for end in range(1, len(seq))]


@dataclass
class ContRecCollator:
    """Turns (history, target) pairs into model inputs: token ids, attention mask, labels on the response
    only, the item features for every placeholder group and the target features.

    A history may be longer than the builder's `max_history`: the prompt keeps its last `max_history` items, and a
    batch with targets also carries every history whole as `history_ids` (`[batch, longest]`, -1 padded), the
    items the ranking softmax leaves out with `ContRecConfig.ranking_mask_history`.

    Args:
        tokenizer: the text tokenizer (with ContRec's special tokens added).
        builder ([`PromptBuilder`]).
        item_features (`torch.Tensor` of shape `[num_items, input_dim]`): the catalog's features.
        fast_path_probability (`float`): probability of dropping the response (training only).
        user_features (`torch.Tensor` of shape `[num_users, user_dim]`, *optional*): needed when the builder places
            user tokens; each batch entry then carries its user index as a third element.
        seed (`int`): seeds the response drops.
    """

    tokenizer: object
    builder: PromptBuilder
    item_features: torch.Tensor
    fast_path_probability: float = 0.0
    seed: int = 0
    user_features: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.pref = self.tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS["pref"])

    def encode(self, history: Sequence[int], target: int | None, with_response: bool) -> dict:
        prompt, items = self.builder.prompt(history)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(ids)
        if with_response and target is not None:
            response = self.tokenizer(self.builder.response(target), add_special_tokens=False)["input_ids"]
            ids, labels = ids + response, labels + response
        ids, labels = [*ids, self.pref], [*labels, self.pref if with_response and target is not None else -100]
        return {"input_ids": ids, "labels": labels, "items": items}

    def _check_items(self, batch: Sequence[tuple]) -> None:
        n = self.item_features.shape[0]
        for history, target, *_ in batch:
            bad = [i for i in [*history, *([] if target is None else [target])] if not 0 <= int(i) < n]
            if bad:
                raise DataError(f"item index/indices {bad[:5]} lie outside the catalog [0, {n})")

    def __call__(self, batch: Sequence[tuple], train: bool = True) -> dict:
        """``batch``: ``(history, target)`` pairs (target may be None at inference), or ``(history, target, user)``
        triples when the prompts carry user tokens."""
        self._check_items(batch)
        rows = []
        for history, target, *_ in batch:
            with_response = train and target is not None and self._rng.random() >= self.fast_path_probability
            rows.append(self.encode(history, target, with_response))
        length = max(len(r["input_ids"]) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for b, row in enumerate(rows):  # right padding: <pref> positions stay easy to find
            n = len(row["input_ids"])
            input_ids[b, :n] = torch.tensor(row["input_ids"])
            labels[b, :n] = torch.tensor(row["labels"])
            attention[b, :n] = 1
        items = torch.tensor([i for r in rows for i in r["items"]], dtype=torch.long)
        out = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "item_features": self.item_features[items],  # [placeholder groups, input_dim]
            "item_ids": items,  # [placeholder groups], catalog indices of those items
        }
        if self.builder.num_user_tokens:
            if self.user_features is None or any(len(entry) < 3 for entry in batch):
                raise DataError("prompts with user tokens need user_features and a user index in every batch entry")
            out["user_features"] = self.user_features[torch.tensor([entry[2] for entry in batch])]  # [B, user_dim]
        targets = [entry[1] for entry in batch]
        if all(t is not None for t in targets):
            out["target_features"] = self.item_features[torch.tensor(targets)]  # [B, input_dim]
            out["target_ids"] = torch.tensor(targets)  # [B]
            out["catalog_features"] = self.item_features  # [num_items, input_dim]: the ranking loss's item table
            histories = [torch.as_tensor(list(entry[0]), dtype=torch.long) for entry in batch]
            out["history_ids"] = pad_sequence(histories, batch_first=True, padding_value=-1)  # [B, longest history]
        return out

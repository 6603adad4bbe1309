import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, BertConfig

import contrec_hf  # noqa: F401 - registers the Auto classes
from contrec_hf.data.prompts import ContRecCollator, PromptBuilder, train_text_tokenizer
from contrec_hf.errors import ConfigError, InputError
from contrec_hf.models import ContRecConfig, ContRecForRecommendation
from contrec_hf.models.contrec.modeling_contrec import sampled_candidates

TEXT_CONFIGS = {
    "llama": {"model_type": "llama", "num_key_value_heads": 2},
    "qwen2": {"model_type": "qwen2", "num_key_value_heads": 2},
    "mistral": {"model_type": "mistral", "num_key_value_heads": 2, "sliding_window": None},
    "gpt2": {
        "model_type": "gpt2",
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 4,
        "n_inner": 37,
        "tie_word_embeddings": True,
    },
}
LLAMA_LIKE = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
TITLES = [f"Movie number {i}" for i in range(13)]
CATEGORIES = ["Drama", "Comedy", ""] * 4 + ["Horror"]


@pytest.fixture(scope="module")
def text_tokenizer():
    texts = [*TITLES, *CATEGORIES, "Given the items the user interacted with, predict the next. History: Answer:"]
    return train_text_tokenizer(texts * 3, vocab_size=95)


def build(arch, text_tokenizer, seed=0, **overrides):
    torch.manual_seed(seed)
    text = dict(TEXT_CONFIGS[arch])
    if arch != "gpt2":
        text.update(LLAMA_LIKE)
    text["vocab_size"] = 99
    config = ContRecConfig(
        text_config=text,
        item_tokenizer_config={"input_dim": 24, "num_tokens": 2, "token_dim": 16, "encoder_hidden_sizes": [19]},
        projector_hidden_size=37,
        condition_dim=29,
        denoiser_hidden_size=31,
        denoiser_num_blocks=2,
        num_train_timesteps=50,
        **overrides,
    )
    model = ContRecForRecommendation(config)
    model.add_special_tokens(text_tokenizer)
    return model


def batch(text_tokenizer, model, train=True, fast=0.0):
    features = torch.randn(13, 24, generator=torch.Generator().manual_seed(3))
    builder = PromptBuilder(TITLES, CATEGORIES, num_item_tokens=model.config.num_item_tokens, max_history=4)
    collator = ContRecCollator(text_tokenizer, builder, features, fast_path_probability=fast)
    return collator([([0, 1, 2], 3), ([4, 5, 6, 7, 8, 9], 10), ([11], 12)], train=train)


@pytest.mark.parametrize("arch", sorted(TEXT_CONFIGS))
def test_forward_backward_generate_and_round_trip(arch, text_tokenizer, tmp_path):
    model = build(arch, text_tokenizer)
    assert model.get_input_embeddings().num_embeddings >= len(text_tokenizer)
    inputs = batch(text_tokenizer, model)
    out = model(**inputs)
    assert out.condition.shape == (3, 29)
    assert out.lm_loss is not None and out.diffusion_loss is not None and out.dispersive_loss is not None
    expected = 0.5 * out.lm_loss + out.diffusion_loss + 0.5 * out.dispersive_loss + out.history_diffusion_loss
    assert torch.allclose(out.loss, expected + out.ranking_loss)  # λ_rank = 1 by default
    out.loss.backward()
    assert model.projector[0].weight.grad is not None
    assert model.diffusion_head.denoiser.input_proj.weight.grad is not None
    assert model.get_input_embeddings().weight.grad is not None
    assert all(p.grad is None for p in model.item_tokenizer.parameters())  # frozen

    # Text generation from the spliced embeddings (greedy, KV cache).
    model.eval()
    prompt_ids = text_tokenizer("History: Movie number 1 <item><item_token><item_token></item>\nAnswer:")["input_ids"]
    ids = torch.tensor([prompt_ids])
    embeds = model.embed_prompt(ids, torch.randn(1, 24))
    generated = model.language_model.generate(
        inputs_embeds=embeds, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False
    )
    assert generated.shape[0] == 1 and 1 <= generated.shape[1] <= 4

    # save → load → equal outputs; Auto classes know the model.
    model.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")) and (tmp_path / "model.safetensors").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), ContRecConfig)
    back = AutoModel.from_pretrained(tmp_path)
    assert isinstance(back, ContRecForRecommendation)
    for name, buffer in back.named_buffers():
        assert torch.isfinite(buffer).all(), name
    eval_inputs = batch(text_tokenizer, model, train=False)
    torch.manual_seed(0)
    a = model(**eval_inputs, return_loss=False)
    b = back(**eval_inputs, return_loss=False)
    assert torch.allclose(a.condition, b.condition, atol=1e-6)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    x0 = model.diffusion_head.read_out(a.condition, "x0", guidance_scale=3.0)
    assert torch.allclose(x0, back.diffusion_head.read_out(b.condition, "x0", guidance_scale=3.0), atol=1e-6)


def lm_own_response_logits(model, inputs):
    """The LM's own logits over the whole sequence, at the positions followed by a label: [num_labels, vocab]."""
    embeds = model.embed_prompt(inputs["input_ids"], inputs["item_features"])
    logits = model.language_model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits
    return logits[:, :-1][inputs["labels"][:, 1:] != -100]


@pytest.mark.parametrize("arch", sorted(TEXT_CONFIGS))
def test_lm_loss_applies_the_head_to_the_labelled_rows_once_checked(arch, text_tokenizer):
    model = build(arch, text_tokenizer).eval()
    inputs = batch(text_tokenizer, model)
    labels = inputs["labels"][:, 1:]
    expected = lm_own_response_logits(model, inputs)
    assert getattr(model, "_head_on_rows_ok", None) is None
    torch.manual_seed(1)  # the diffusion terms draw noise: the same draws for both calls
    first = model(**inputs)  # the LM's logits at the batch's label columns, and the check
    assert model._head_on_rows_ok is True
    torch.manual_seed(1)
    second = model(**inputs)  # the head on the labelled rows alone
    for out in (first, second):
        assert out.logits.shape == (int((labels != -100).sum()), model.config.text_config.vocab_size)
        assert torch.allclose(out.logits, expected, atol=1e-5)
        assert torch.allclose(out.lm_loss, F.cross_entropy(expected, labels[labels != -100]), atol=1e-6)
    assert torch.allclose(first.loss, second.loss, atol=1e-6)
    assert model(**inputs, return_loss=False).logits.shape[1] == 1  # without the loss: the last position only


def scale_logits(module, args, out):
    out["logits"] = 0.25 * out.logits  # a scale after the head, as Cohere and Granite have


def test_an_lm_that_changes_its_logits_after_the_head_keeps_its_own_logits(text_tokenizer):
    model = build("llama", text_tokenizer).eval()
    model.language_model.register_forward_hook(scale_logits)  # lm_head(h) alone would be wrong
    inputs = batch(text_tokenizer, model)
    expected = lm_own_response_logits(model, inputs)
    for _ in range(2):
        out = model(**inputs)
        assert model._head_on_rows_ok is False
        assert torch.allclose(out.logits, expected, atol=1e-5)
    other = build("llama", text_tokenizer)
    other.language_model.config.model_type = "not-a-listed-lm"
    other(**batch(text_tokenizer, other))
    assert other._head_on_rows_ok is False  # never checked: an LM not known to be plain keeps its own logits


def test_fast_path_has_no_response_labels(text_tokenizer):
    model = build("llama", text_tokenizer)
    inputs = batch(text_tokenizer, model, fast=1.0)
    assert (inputs["labels"] == -100).all()
    out = model(**inputs)
    assert out.lm_loss is None and out.diffusion_loss is not None
    # The last real token of every row is <pref>.
    last = inputs["attention_mask"].sum(1) - 1
    assert (inputs["input_ids"][torch.arange(3), last] == model.config.pref_token_id).all()


def test_labels_only_on_the_response(text_tokenizer):
    model = build("llama", text_tokenizer)
    inputs = batch(text_tokenizer, model)
    for row in range(3):
        labelled = (inputs["labels"][row] != -100).nonzero().flatten()
        text = text_tokenizer.decode(inputs["input_ids"][row, labelled])
        assert text.startswith(" The user may prefer (") and text.endswith("<pref>")
        assert "<item_token>" not in text


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_prediction_types_and_schedules(prediction_type, text_tokenizer):
    model = build("llama", text_tokenizer, prediction_type=prediction_type, noise_schedule="linear")
    inputs = batch(text_tokenizer, model)
    assert torch.isfinite(model(**inputs).loss)
    assert model.diffusion_head.read_out(torch.randn(2, 29)).shape == (2, 16)


def test_flipped_dispersive_sign_ablation(text_tokenizer):
    """flip_dispersive_sign subtracts λ_disp·L_disp where the default adds it (same seed, same draws)."""
    losses = {}
    for flip in (False, True):
        model = build("llama", text_tokenizer, flip_dispersive_sign=flip, history_diffusion_weight=0.0)
        inputs = batch(text_tokenizer, model)
        torch.manual_seed(5)
        losses[flip] = model(**inputs)
    disp = losses[False].dispersive_loss
    torch.testing.assert_close(losses[True].dispersive_loss, disp)
    torch.testing.assert_close(losses[False].loss - losses[True].loss, 2 * 0.5 * disp)


def test_placeholder_count_mismatch(text_tokenizer):
    model = build("llama", text_tokenizer)
    inputs = batch(text_tokenizer, model)
    inputs["item_features"] = inputs["item_features"][:-1]
    with pytest.raises(ValueError, match="item placeholders but .* items"):
        model(**inputs)


def test_missing_pref_and_missing_token_ids(text_tokenizer):
    model = build("llama", text_tokenizer)
    with pytest.raises(ValueError, match="no <pref> token"):
        model(input_ids=torch.tensor([[10, 11, 12]]), item_features=None)
    bare = ContRecForRecommendation(ContRecConfig(text_config={"model_type": "llama", "vocab_size": 99, **LLAMA_LIKE}))
    with pytest.raises(ValueError, match="add_special_tokens"):
        bare(input_ids=torch.tensor([[5, 6]]))


def test_default_config_builds_a_working_model():
    model = ContRecForRecommendation(ContRecConfig())
    assert model.config.text_config.model_type == "llama" and model.config.num_item_tokens == 2
    assert model.diffusion_head.denoiser.config.latent_dim == model.config.latent_dim == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text_config": BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    intermediate_size=37)}, "decoder-only causal LM"),
        ({"text_config": {"model_type": "t5"}}, "decoder-only causal LM"),
        ({"prediction_type": "x0"}, "prediction_type"),
        ({"condition_dropout": 1.5}, "condition_dropout"),
        ({"lm_weight": 1.0}, r"unknown option\(s\) \['lm_weight'\]"),
        ({"model_type": "llava"}, "belongs to another model"),
    ],
)  # fmt: skip
def test_config_errors(kwargs, message):
    with pytest.raises(Exception, match=message):
        ContRecConfig(**kwargs)


def test_lora_trains_adapters_heads_and_new_token_rows(text_tokenizer, tmp_path):
    from contrec_hf.models.contrec.backbones import apply_lora

    model = build("llama", text_tokenizer, ranking_temperature_learnable=True)
    peft_model = apply_lora(model, r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any(n.endswith("ranking_log_scale") for n in trainable)  # a bare parameter, kept trainable by hand
    assert any("lora_A" in n for n in trainable) and any("denoiser" in n for n in trainable)
    assert any("projector" in n for n in trainable) and any(n.endswith("null_condition") for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)
    assert not any("item_tokenizer" in n for n in trainable)
    assert not any(n.endswith("mlp.up_proj.weight") for n in trainable)  # the LM itself stays frozen
    inputs = batch(text_tokenizer, model)
    out = peft_model(**inputs)
    out.loss.backward()
    assert all(p.grad is not None for n, p in peft_model.named_parameters() if "lora_B" in n)
    merged = peft_model.merge_and_unload()
    merged.eval()
    merged.save_pretrained(tmp_path)
    back = ContRecForRecommendation.from_pretrained(tmp_path)
    eval_inputs = batch(text_tokenizer, model, train=False)
    assert torch.allclose(merged(**eval_inputs, return_loss=False).condition,
                          back(**eval_inputs, return_loss=False).condition, atol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="do not exist"):
        apply_lora(build("llama", text_tokenizer), target_modules=["c_attn"])


@pytest.mark.parametrize("user_tokens", [False, True])
def test_user_tokens_on_and_off(user_tokens, text_tokenizer, tmp_path):
    extra = {"user_tokenizer_config": {"input_dim": 9, "num_tokens": 3, "token_dim": 7}} if user_tokens else {}
    model = build("llama", text_tokenizer, **extra)
    assert (model.user_tokenizer is not None) == user_tokens and model.config.num_user_tokens == (
        3 if user_tokens else 0
    )
    features = torch.randn(13, 24, generator=torch.Generator().manual_seed(3))
    users = torch.randn(5, 9)
    builder = PromptBuilder(TITLES, CATEGORIES, num_item_tokens=2, num_user_tokens=model.config.num_user_tokens)
    collator = ContRecCollator(text_tokenizer, builder, features, user_features=users if user_tokens else None)
    inputs = collator([([0, 1, 2], 3, 4), ([5, 6], 7, 0)])
    placeholders = int((inputs["input_ids"] == model.config.user_token_id).sum())
    assert placeholders == (2 * 3 if user_tokens else 0)
    assert ("user_features" in inputs) == user_tokens
    out = model(**inputs)
    out.loss.backward()
    if user_tokens:
        assert model.user_projector[0].weight.grad is not None
        assert all(p.grad is None for p in model.user_tokenizer.parameters())  # frozen like the item tokenizer
        with pytest.raises(ValueError, match="6 user placeholders but 1 users"):
            model(**{**inputs, "user_features": inputs["user_features"][:1]})
        model.eval()
        model.save_pretrained(tmp_path)
        back = ContRecForRecommendation.from_pretrained(tmp_path)
        a = model(**inputs, return_loss=False).condition
        assert torch.allclose(a, back(**inputs, return_loss=False).condition, atol=1e-6)
    else:
        with pytest.raises(ValueError, match="user tokens are off"):
            model(**inputs, user_features=users[:2])


def test_from_pretrained_llm_round_trip(text_tokenizer, tmp_path):
    """An injected pretrained LM must compute the same after save → load (its attention implementation is kept)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from contrec_hf.models import ContRecTokenizer, ContRecTokenizerConfig

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(text_tokenizer), num_key_value_heads=2, **LLAMA_LIKE))
    lm.save_pretrained(tmp_path / "lm")
    text_tokenizer.save_pretrained(tmp_path / "lm")
    item_tokenizer = ContRecTokenizer(ContRecTokenizerConfig(input_dim=24, token_dim=16))
    model, tokenizer = ContRecForRecommendation.from_pretrained_llm(str(tmp_path / "lm"), item_tokenizer)
    assert model.config.text_config._attn_implementation is not None
    model.eval()
    model.save_pretrained(tmp_path / "contrec")
    back = ContRecForRecommendation.from_pretrained(tmp_path / "contrec")
    inputs = batch(tokenizer, model, train=False)
    a, b = model(**inputs, return_loss=False), back(**inputs, return_loss=False)
    assert torch.allclose(a.condition, b.condition, atol=1e-5)
    with pytest.raises(Exception, match="cannot load the causal LM"):
        ContRecForRecommendation.from_pretrained_llm(str(tmp_path / "missing"), item_tokenizer)


@pytest.mark.parametrize("detach", [False, True])
def test_detach_condition_stops_diffusion_gradients_at_the_lm(detach, text_tokenizer):
    model = build("llama", text_tokenizer, detach_condition=detach)
    inputs = batch(text_tokenizer, model, fast=1.0)  # no response: only the diffusion and dispersive losses
    model(**inputs).loss.backward()
    lm_grad = model.language_model.model.layers[0].mlp.up_proj.weight.grad
    assert (lm_grad is None or not lm_grad.any()) == detach
    assert model.condition_projector[1].weight.grad is not None


def test_history_diffusion_pairs_each_item_end_with_the_next_item():
    """`history_diffusion_weight`: the state at each `</item>` conditions the next item's latent; a row's last
    item is followed by its target. Checked against the latents computed item by item."""
    tokenizer = train_text_tokenizer([*TITLES, *CATEGORIES, "History: Answer:"] * 3, vocab_size=95)
    model = build("llama", tokenizer, history_diffusion_weight=1.0, ranking_loss_weight=0.0)  # the MSE term alone
    features = torch.randn(13, 24, generator=torch.Generator().manual_seed(3))
    builder = PromptBuilder(TITLES, CATEGORIES, num_item_tokens=model.config.num_item_tokens, max_history=4)
    samples = [([0, 1, 2], 3), ([4, 5, 6, 7, 8, 9], 10), ([11], 12)]
    inputs = ContRecCollator(tokenizer, builder, features)(samples)
    hidden = torch.randn(*inputs["input_ids"].shape, model.config.text_config.hidden_size)
    targets = model.target_latents(inputs["target_features"])
    conditions, x0, next_ids = model._history_targets(
        inputs["input_ids"], hidden, inputs["item_features"], targets, inputs["item_ids"], inputs["target_ids"]
    )
    # The history is cut to the last 4 items: rows hold [0,1,2], [6,7,8,9], [11]; next items follow.
    expected_next = [1, 2, 3, 7, 8, 9, 10, 12]
    assert torch.allclose(x0, model.target_latents(features[expected_next]))
    assert next_ids.tolist() == expected_next
    ends = inputs["input_ids"] == model.config.item_end_token_id
    assert torch.allclose(conditions, model.condition(hidden[ends]))

    model.train()
    torch.manual_seed(0)
    with_history = model(**inputs).loss
    model.config.history_diffusion_weight = 0.0
    torch.manual_seed(0)
    without = model(**inputs).loss
    assert with_history > without  # the extra term is a positive MSE, on the same random draws


def test_ranking_loss_is_the_catalog_softmax_of_the_x0_read_out(text_tokenizer):
    """L_rank = CE(cos(x̂₀(c), e_j)/τ) over the catalog, at <pref> and the dense targets; it trains the scores that
    the x₀ read-out ranks with (its gradient reaches the LM)."""
    model = build(
        "llama", text_tokenizer, ranking_loss_weight=0.7, ranking_temperature=0.2, ranking_mask_history=False
    )
    inputs = batch(text_tokenizer, model, fast=1.0)
    catalog = inputs.pop("catalog_features")  # the collator passes its item features as the table
    assert torch.equal(catalog, torch.randn(13, 24, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(InputError, match="ranking_loss_weight > 0 needs target_ids and catalog_features"):
        model(**inputs)
    model.eval()  # no condition dropout: the loss can be recomputed by hand
    out = model(**inputs, catalog_features=catalog)
    table = F.normalize(model.target_latents(catalog), dim=-1)
    ids = inputs["target_ids"]
    by_hand = F.cross_entropy(F.normalize(model.diffusion_head.read_out(out.condition), dim=-1) @ table.T / 0.2, ids)
    assert out.ranking_loss is not None and out.ranking_loss > 0
    model.config.history_diffusion_weight = 0.0  # the <pref> targets alone: exactly the formula above
    alone = model(**inputs, catalog_features=catalog)
    assert torch.allclose(alone.ranking_loss, by_hand, atol=1e-6)
    model.train()
    model(**inputs, catalog_features=catalog).ranking_loss.backward()
    assert model.language_model.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0
    model.zero_grad()
    model.config.ranking_loss_weight = 0.0
    assert model(**inputs).ranking_loss is None  # off: no table needed


def test_preference_term_joins_the_loss_at_pref_and_at_the_dense_targets(text_tokenizer):
    model = build("llama", text_tokenizer, preference_loss_weight=0.4)
    inputs = batch(text_tokenizer, model)  # the collator passes the catalog's features for the ranking loss
    out = model(**inputs)
    assert out.preference_loss is not None and out.preference_loss > 0
    expected = 0.5 * out.lm_loss + out.diffusion_loss + 0.5 * out.dispersive_loss + out.history_diffusion_loss
    torch.testing.assert_close(out.loss, expected + out.ranking_loss + 0.4 * out.preference_loss)
    assert out.to_tuple()[-1] is out.preference_loss  # last: a run without it keeps its tuple
    assert build("llama", text_tokenizer)(**inputs).preference_loss is None


def test_forward_refuses_an_unknown_argument(text_tokenizer):
    """No catch-all **kwargs: a misspelt input is an error, not silently ignored."""
    model = build("llama", text_tokenizer)
    inputs = batch(text_tokenizer, model)
    inputs["target_feature"] = inputs.pop("target_features")
    with pytest.raises(TypeError, match="target_feature"):
        model(**inputs)


def test_ranking_loss_settings_are_validated():
    with pytest.raises(ConfigError, match="ranking_temperature"):
        ContRecConfig(ranking_temperature=0.0)
    with pytest.raises(ConfigError, match="ranking_loss_weight"):
        ContRecConfig(ranking_loss_weight=-1.0)


def test_learned_ranking_temperature_starts_at_tau_in_a_fresh_model_and_round_trips(text_tokenizer, tmp_path):
    """A fresh model (transformers' weight init included) starts τ at ranking_temperature; a trained τ is saved and
    loaded with the weights."""
    model = build("llama", text_tokenizer, ranking_temperature=0.1, ranking_temperature_learnable=True)
    head = model.diffusion_head
    torch.testing.assert_close(head.ranking_temperature, torch.tensor(0.1))
    out = model(**batch(text_tokenizer, model))
    out.loss.backward()
    assert head.ranking_log_scale.grad.abs() > 0  # the model's L_rank reaches it
    with torch.no_grad():
        head.ranking_log_scale.fill_(3.0)
    model.save_pretrained(tmp_path / "m")
    back = ContRecForRecommendation.from_pretrained(tmp_path / "m")
    assert back.config.ranking_temperature_learnable
    torch.testing.assert_close(back.diffusion_head.ranking_log_scale, torch.tensor(3.0))


def test_learned_item_table_starts_at_the_latents_trains_and_round_trips(text_tokenizer, tmp_path):
    with pytest.raises(ConfigError, match="item_table='tokens' is learned through the ranking loss"):
        ContRecConfig(item_table="tokens", ranking_loss_weight=0.0)
    model = build("llama", text_tokenizer, ranking_loss_weight=1.0, item_table="tokens")
    catalog = torch.randn(13, 24, generator=torch.Generator().manual_seed(3))
    assert torch.equal(model.item_table(catalog), model.target_latents(catalog))  # zero-initialised correction
    model(**batch(text_tokenizer, model)).loss.backward()
    assert model.table_projector[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.table_projector[-1].bias.fill_(0.3)
    assert not torch.equal(model.item_table(catalog), model.target_latents(catalog))
    model.save_pretrained(tmp_path / "m")
    back = ContRecForRecommendation.from_pretrained(tmp_path / "m")
    assert back.config.item_table == "tokens"
    assert torch.equal(back.item_table(catalog), model.item_table(catalog))


def test_tied_item_table_is_the_input_projector_and_trains_it_through_the_ranking_loss(text_tokenizer, tmp_path):
    model = build("llama", text_tokenizer, item_table="tied")
    catalog = torch.randn(13, 24, generator=torch.Generator().manual_seed(3))
    latents = model.target_latents(catalog)
    table = model.item_table(catalog)
    assert table.shape == (13, 32)  # the LM's hidden size: the space the prompt's item tokens live in
    torch.testing.assert_close(table, model.projector(latents))
    x = torch.randn(4, latents.shape[1])
    torch.testing.assert_close(model.retrieval_query(x), model.projector(x))
    assert torch.equal(build("llama", text_tokenizer).retrieval_query(x), x)  # other tables: the latents themselves
    torch.testing.assert_close(
        model.item_scores(x, table), F.normalize(model.projector(x), dim=-1) @ F.normalize(table, dim=-1).T
    )
    # L_rank is the softmax of cos(P(x̂₀), P(z_j)) / τ: recompute it from the head's x₀ estimate.
    condition = torch.randn(3, model.config.condition_dim)
    ids = torch.tensor([0, 5, 12])
    expected = F.cross_entropy(
        F.normalize(model.projector(model.diffusion_head.x0_estimate(condition)), dim=-1)
        @ F.normalize(table, dim=-1).T
        / model.config.ranking_temperature,
        ids,
    )
    torch.testing.assert_close(model.ranking_loss(condition, ids, catalog), expected)
    model.zero_grad()
    model.ranking_loss(condition, ids, catalog).backward()
    assert model.projector[0].weight.grad.abs().sum() > 0  # the input map is trained as the output map too
    model.save_pretrained(tmp_path / "m")
    back = ContRecForRecommendation.from_pretrained(tmp_path / "m")
    assert back.config.item_table == "tied"
    assert torch.equal(back.item_table(catalog), table)


def test_residual_item_table_learns_rows_of_trained_items_only_and_round_trips(text_tokenizer, tmp_path):
    with pytest.raises(ConfigError, match="set num_catalog_items ≥ 1"):
        ContRecConfig(item_table="residual")
    model = build("llama", text_tokenizer, item_table="residual", num_catalog_items=13)
    catalog = torch.randn(13, 24, generator=torch.Generator().manual_seed(3))
    assert torch.equal(model.item_table(catalog), model.target_latents(catalog))  # zero residual, zero MLP output
    model.mark_trained_items([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])  # item 12 is cold
    model(**batch(text_tokenizer, model)).loss.backward()  # the batch ranks against all 13 items
    grad = model.item_residual.grad
    assert grad[:12].abs().sum(-1).gt(0).all() and not grad[12].any()  # a cold row gets no gradient
    with torch.no_grad():
        model.item_residual.fill_(0.5)
    table, content = model.item_table(catalog), model.target_latents(catalog)
    torch.testing.assert_close(table[:12], content[:12] + 0.5)
    torch.testing.assert_close(table[12], content[12])  # the cold item scores from its content alone
    ids = torch.tensor([12, 3])  # a subset needs its ids (the sampled softmax passes them)
    torch.testing.assert_close(model.item_table(catalog[ids], ids), table[ids])
    with pytest.raises(InputError, match="passed without their item_ids"):
        model.item_table(catalog[ids])
    with pytest.raises(InputError, match=r"item ids must lie in \[0, 13\)"):
        model.mark_trained_items([13])
    model.save_pretrained(tmp_path / "m")
    back = ContRecForRecommendation.from_pretrained(tmp_path / "m")
    assert torch.equal(back.trained_items, model.trained_items)
    assert torch.equal(back.item_table(catalog), table)
    with pytest.raises(ConfigError, match="mark_trained_items needs item_table='residual'"):
        build("llama", text_tokenizer).mark_trained_items([0])


def test_sampled_candidates_hold_every_target_once_with_the_logq_correction():
    targets = torch.tensor([4, 9, 4, 0])
    candidates, log_inclusion, labels = sampled_candidates(targets, 50, 7, torch.Generator().manual_seed(0))
    assert candidates[:3].tolist() == [0, 4, 9] and len(set(candidates.tolist())) == len(candidates)  # unique
    assert torch.equal(candidates[labels], targets)  # each row's label points at its own positive
    assert torch.equal(log_inclusion[:3], torch.zeros(3))  # the batch's targets: always candidates (π = 1)
    assert torch.allclose(log_inclusion[3:], torch.full((len(candidates) - 3,), math.log(7 / 50)))  # π = n / I
    assert 3 < len(candidates) <= 3 + 7
    with pytest.raises(InputError, match="num_negatives"):
        sampled_candidates(targets, 50, 0)


def test_sampled_softmax_with_every_item_drawn_is_the_full_softmax(text_tokenizer):
    model = build("llama", text_tokenizer, ranking_negatives=0)
    model.eval()
    inputs = batch(text_tokenizer, model)
    condition = model(**inputs).condition
    catalog, targets = inputs["catalog_features"], inputs["target_ids"]
    full = model.ranking_loss(condition, targets, catalog)
    candidates, log_inclusion, labels = sampled_candidates(targets, 13, 13)  # every item, in another order
    assert sorted(candidates.tolist()) == list(range(13)) and not log_inclusion.any()
    table = model.item_table(catalog[candidates])
    logits = F.normalize(model.diffusion_head.read_out(condition), dim=-1) @ F.normalize(table, dim=-1).T / 0.07
    assert torch.allclose(F.cross_entropy(logits - log_inclusion, labels), full, atol=1e-5)
    model.config.ranking_negatives = 5  # sampled: fewer candidates, another (finite) estimate
    sampled = model.ranking_loss(condition, targets, catalog)
    assert torch.isfinite(sampled) and not torch.allclose(sampled, full)
    with pytest.raises(ConfigError, match="ranking_negatives"):
        ContRecConfig(ranking_negatives=-1)


def test_ranking_mask_history_leaves_out_what_each_target_follows(text_tokenizer):
    """With `ranking_mask_history`, each row of the ranking softmax leaves out the user's items before its target,
    as the evaluation masks the history: at `<pref>` the whole history, at a prompt's k-th `</item>` the history up
    to that item (the items before the 4-item window too)."""
    model = build("llama", text_tokenizer, ranking_mask_history=True)
    model.eval()  # no condition dropout: the losses can be compared
    inputs = batch(text_tokenizer, model)  # histories [0, 1, 2], [4 … 9] (window [6 … 9]) and [11]
    pref = [{0, 1, 2}, {4, 5, 6, 7, 8, 9}, {11}]
    dense = [{0}, {0, 1}, {0, 1, 2}, {4, 5, 6}, {4, 5, 6, 7}, {4, 5, 6, 7, 8}, {4, 5, 6, 7, 8, 9}, {11}]
    rank_ids = torch.tensor([3, 10, 12, 1, 2, 3, 7, 8, 9, 10, 12])
    mask = model._seen_items(inputs["input_ids"], inputs["history_ids"], rank_ids, True, 13)
    assert [set(torch.nonzero(row).flatten().tolist()) for row in mask] == pref + dense
    masked = model(**inputs)
    plain = build("llama", text_tokenizer, ranking_mask_history=False).eval()(**inputs)
    assert masked.ranking_loss < plain.ranking_loss  # fewer competitors in every row's softmax
    torch.testing.assert_close(masked.diffusion_loss, plain.diffusion_loss)  # the same model otherwise
    model.config.history_diffusion_weight = 0.0  # the <pref> rows alone, by hand
    condition, table = masked.condition, F.normalize(model.target_latents(inputs["catalog_features"]), dim=-1)
    logits = F.normalize(model.diffusion_head.read_out(condition), dim=-1) @ table.T / 0.07
    seen = torch.tensor([[j in items for j in range(13)] for items in pref])
    by_hand = F.cross_entropy(logits.masked_fill(seen, float("-inf")), inputs["target_ids"])
    torch.testing.assert_close(model(**inputs).ranking_loss, by_hand)
    model.config.ranking_negatives = 13  # a sampled softmax drawing every item masks the same items
    torch.testing.assert_close(model(**inputs).ranking_loss, by_hand)
    with pytest.raises(InputError, match="needs history_ids"):
        model(**{k: v for k, v in inputs.items() if k != "history_ids"})
    unranked = build("llama", text_tokenizer, ranking_loss_weight=0.0).eval()  # the paper's: nothing to mask
    assert unranked.config.ranking_mask_history  # the default, and no effect without a ranking loss
    assert unranked(**{k: v for k, v in inputs.items() if k != "history_ids"}).ranking_loss is None

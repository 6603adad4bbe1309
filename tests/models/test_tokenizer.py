import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

import contrec_hf  # noqa: F401 - registers the Auto classes
from contrec_hf.models import ContRecTokenizer, ContRecTokenizerConfig, collapse_diagnostics, effective_rank

TINY = {
    "input_dim": 37,
    "num_tokens": 3,
    "token_dim": 11,
    "encoder_hidden_sizes": [19, 23],
    "decoder_hidden_sizes": [23],
}


def make(seed=0, **overrides):
    torch.manual_seed(seed)
    return ContRecTokenizer(ContRecTokenizerConfig(**{**TINY, **overrides}))


@pytest.fixture
def features():
    return torch.randn(29, 37, generator=torch.Generator().manual_seed(1)) * 2 + 0.5


def test_shapes(features):
    tok = make()
    tok.fit_normalization(features)
    out = tok(features)
    assert out.tokens.shape == out.mu.shape == (29, 3, 11)
    assert out.reconstruction.shape == (29, 37)
    assert out.loss.ndim == 0 and out.loss.requires_grad
    assert tok.encode(features).shape == (29, 3, 11)
    assert tok.latent(features).shape == (29, 11)
    assert tok.decode(tok.encode(features)).shape == (29, 37)
    assert tok(features, return_loss=False).loss is None
    assert isinstance(tok(features, return_dict=False), tuple)


def test_normalization_is_fitted_and_inverted(features):
    tok = make()
    tok.fit_normalization(features)
    assert torch.allclose(tok.normalize(features).mean(0), torch.zeros(37), atol=1e-5)
    recon = torch.randn(4, 37)
    assert torch.allclose(
        tok.decode(torch.zeros(4, 11), denormalize=False) * tok.feature_std + tok.feature_mean,
        tok.decode(torch.zeros(4, 11)),
        atol=1e-6,
    )
    assert recon.shape == (4, 37)
    off = make(normalize_inputs=False)
    off.fit_normalization(features)
    assert torch.equal(off.normalize(features), features)


def test_sigma_sampling_switch(features):
    on, off = make(feature_masking=False, dropout=0.0), make(feature_masking=False, dropout=0.0, sigma_sampling=False)
    on.train(), off.train()
    out_on, out_off = on(features), off(features)
    assert not torch.equal(out_on.tokens, out_on.mu)  # z = μ + σ·ε
    assert torch.equal(out_off.tokens, out_off.mu)
    # σ is drawn per example: the noise scale differs between rows.
    noise = (out_on.tokens - out_on.mu).flatten(1).std(dim=1)
    assert noise.std() > 0.01
    on.eval()
    assert torch.equal(on(features).tokens, on(features).mu)  # eval: μ only


def test_feature_masking_switch(features):
    torch.manual_seed(0)
    masked = make(sigma_sampling=False, dropout=0.0)
    plain = make(sigma_sampling=False, dropout=0.0, feature_masking=False)
    masked.load_state_dict(plain.state_dict())
    masked.train(), plain.train()
    with torch.no_grad():
        assert not torch.allclose(masked(features).mu, plain(features).mu)  # some inputs replaced by the offset
        masked.eval()
        assert torch.allclose(masked(features).mu, plain.eval()(features).mu)  # no masking at inference


def test_multi_encoder_switch():
    multi, shared = make(), make(multi_encoder=False)
    assert len(multi.encoders) == 3 and len(shared.encoders) == 1
    assert shared.encoders[0][-1].out_features == 3 * 11
    assert shared.encode(torch.randn(5, 37)).shape == (5, 3, 11)


def test_optional_loss_terms(features):
    tok = make(mu_regularizer_weight=0.5, barlow_twins_weight=0.1)
    out = tok(features)
    assert out.mu_loss is not None and out.barlow_twins_loss is not None
    expected = out.reconstruction_loss + 0.5 * out.mu_loss + 0.1 * out.barlow_twins_loss
    assert torch.allclose(out.loss, expected)
    plain = make()(features)
    assert plain.mu_loss is None and plain.barlow_twins_loss is None


def test_barlow_twins_is_zero_for_identical_decorrelated_ways():
    tok = make(barlow_twins_weight=1.0, barlow_offdiag_weight=1.0)
    x = torch.randn(64, 11)
    white = torch.linalg.qr(x - x.mean(0))[0] * 8  # centred orthogonal columns: decorrelated dimensions
    mu = torch.stack([white, white, white], dim=1)  # three identical ways
    assert tok._barlow_twins(mu) < 1e-3
    assert tok._barlow_twins(torch.randn(64, 3, 11)) > 0.1


def test_diagnostics_on_a_collapsed_input():
    collapsed = torch.randn(200, 1, 1) * torch.randn(1, 3, 11)  # every item on one direction
    stats = collapse_diagnostics(collapsed)
    assert stats["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    white = collapse_diagnostics(torch.randn(2000, 3, 11))
    assert white["effective_rank"] > 30 and white["dead_fraction"] == 0.0
    half_dead = torch.randn(100, 10)
    half_dead[:, 5:] *= 1e-4
    assert collapse_diagnostics(half_dead)["dead_fraction"] == 0.5
    assert effective_rank(torch.zeros(5, 4)) == 0.0


def test_save_load_auto_round_trip(features, tmp_path):
    tok = make()
    tok.fit_normalization(features)
    tok.eval()
    tok.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "contrec_tokenizer"
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, ContRecTokenizerConfig)
    assert config.to_diff_dict() == tok.config.to_diff_dict()
    back = AutoModel.from_pretrained(tmp_path)
    assert isinstance(back, ContRecTokenizer) and not back.training
    for name, buffer in back.named_buffers():
        assert torch.isfinite(buffer).all(), name
    assert torch.equal(back.feature_mean, tok.feature_mean) and torch.equal(back.feature_std, tok.feature_std)
    assert torch.equal(back.encode(features), tok.encode(features))
    assert torch.equal(back(features).reconstruction, tok(features).reconstruction)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_tokens": 0}, ValueError, "num_tokens must be an integer ≥ 1"),
        ({"mask_ratio": 1.5}, ValueError, "mask_ratio"),
        ({"sigma_std": -1.0}, ValueError, "sigma_std"),
        ({"encoder_hidden_sizes": [0]}, ValueError, "encoder_hidden_sizes"),
        ({"num_tokenz": 2}, ValueError, r"unknown option\(s\) \['num_tokenz'\]"),
        ({"model_type": "llama"}, ValueError, "belongs to another model"),
        ({"num_tokens": "2"}, Exception, "num_tokens"),
        ({"quantizer": "pq"}, Exception, "quantizer"),
        ({"quantizer": "rq"}, ValueError, "set multi_encoder=False"),
        ({"quantizer": "vq", "codebook_size": 0}, ValueError, "codebook_size must be an integer ≥ 1"),
        ({"commitment_weight": -0.1}, ValueError, "commitment_weight"),
    ],
)
def test_config_validation(kwargs, error, message):
    with pytest.raises(error, match=message):
        ContRecTokenizerConfig(**kwargs)


def test_vq_tokens_are_codebook_entries_and_train_straight_through(features, tmp_path):
    """The discrete-token ablation: every token is an entry of its codebook, gradients reach the encoders through
    the straight-through estimator, and the codes survive a save/load."""
    tok = make(quantizer="vq", codebook_size=7, sigma_sampling=False)
    tok.fit_normalization(features)
    with pytest.raises(ValueError, match="quantizer='vq'"):
        make().codes(features)
    tok.train()
    out = tok(features)
    assert out.codes.shape == (29, 3) and out.quantization_loss > 0 and bool(tok.codebooks_initialized)
    out.loss.backward()
    assert tok.encoders[0][0].weight.grad.abs().sum() > 0  # straight-through: the encoder learns from the MSE
    assert tok.codebooks.grad.abs().sum() > 0  # the codebook loss moves the entries
    tokens, codes = tok.encode(features), tok.codes(features)
    assert codes.dtype == torch.long and int(codes.min()) >= 0 and int(codes.max()) < 7
    for k in range(3):
        assert torch.equal(tokens[:, k], tok.codebooks[k, codes[:, k]].detach())
    assert len({tuple(row) for row in codes.tolist()}) <= 7**3  # a finite vocabulary of items
    tok.save_pretrained(tmp_path / "vq")
    back = ContRecTokenizer.from_pretrained(tmp_path / "vq")
    assert back.config.quantizer == "vq" and bool(back.codebooks_initialized)
    assert torch.equal(back.codes(features), codes) and torch.equal(back.encode(features), tokens)


def test_rq_levels_quantise_the_residual_and_train_straight_through(features, tmp_path):
    """TIGER's semantic IDs: level k's entry is the nearest code to what the levels before left, the latent is the
    sum of the levels, k-means fills the codebooks, the gradient reaches the one encoder, the codes survive a save."""
    tok = make(quantizer="rq", multi_encoder=False, codebook_size=5, sigma_sampling=False, feature_masking=False)
    tok.fit_normalization(features)
    assert len(tok.encoders) == 1
    tok.train()
    out = tok(features)
    assert out.mu.shape == (29, 1, 11) and out.codes.shape == (29, 3) and bool(tok.codebooks_initialized)
    out.loss.backward()
    assert tok.encoders[0][0].weight.grad.abs().sum() > 0 and tok.codebooks.grad.abs().sum() > 0
    tok.eval()
    z = tok._mu(tok.normalize(features))[:, 0]  # [29, 11], the one latent
    entries, codes = tok.encode(features), tok.codes(features)
    residual = z
    for level in range(3):
        distances = torch.cdist(residual, tok.codebooks[level])
        assert torch.equal(codes[:, level], distances.argmin(-1))
        assert torch.allclose(entries[:, level], tok.codebooks[level, codes[:, level]])
        residual = residual - entries[:, level]
    assert torch.allclose(tok.latent(features), entries.sum(1))  # the quantised latent is the sum of the levels
    assert tok.decode(entries).shape == (29, 37)
    assert (residual.norm(dim=-1) < z.norm(dim=-1)).float().mean() > 0.5  # the levels explain most of z
    tok.save_pretrained(tmp_path / "rq")
    back = ContRecTokenizer.from_pretrained(tmp_path / "rq")
    assert back.config.quantizer == "rq" and torch.equal(back.codes(features), codes)


def test_kmeans_finds_separated_clusters():
    from contrec_hf.models.tokenizer.modeling_contrec_tokenizer import kmeans

    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = centres.repeat_interleave(20, 0) + 0.1 * torch.randn(60, 2)
    found = kmeans(points, 3, iterations=20)
    assert torch.cdist(centres, found).min(dim=1).values.max() < 0.5  # every true centre has a centre near it
    assert kmeans(points[:2], 5).shape == (5, 2)  # fewer points than centres: drawn with replacement


def test_bad_features():
    tok = make()
    with pytest.raises(ValueError, match="dimension 36, but this tokenizer was built for input_dim=37"):
        tok.encode(torch.randn(3, 36))
    with pytest.raises(ValueError, match=r"\[batch, 37\]"):
        tok(torch.randn(37))
    bad = torch.randn(4, 37)
    bad[1, 3] = float("nan")
    bad[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or inf values in 2 row\(s\)"):
        tok(bad)
    with pytest.raises(ValueError, match="tokens must be"):
        tok.decode(torch.randn(4, 12))


def test_push_to_hub_and_load_by_repo_id(features, fake_hub):
    tok = make()
    tok.fit_normalization(features)
    tok.eval()
    repo = f"{fake_hub.user}/tiny-contrec-tokenizer"
    tok.push_to_hub(repo, token=fake_hub.token)
    assert {"config.json", "model.safetensors"} <= set(fake_hub.list_files(repo))
    back = AutoModel.from_pretrained(repo, token=fake_hub.token)
    assert isinstance(back, ContRecTokenizer)
    assert torch.equal(back.encode(features), tok.encode(features))

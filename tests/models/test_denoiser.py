import pytest
import torch

from contrec_hf.models.denoiser import ContRecDenoiser, dispersive_loss


def test_dispersive_loss_decreases_as_the_batch_spreads_out():
    base = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    values = [float(dispersive_loss(base * scale)) for scale in (0.0, 0.1, 1.0, 3.0)]
    assert values[0] == pytest.approx(0.0, abs=1e-6)  # all points equal: log(mean(exp(0))) = 0
    assert values == sorted(values, reverse=True) and values[-1] < values[0] - 0.5


def test_dispersive_loss_by_hand():
    r = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # d = 2, ‖r0 − r1‖² = 4
    expected = torch.log((2 + 2 * torch.exp(torch.tensor(-4.0 / 2))) / 4)
    assert dispersive_loss(r) == pytest.approx(float(expected))
    # Its gradient pushes the points apart.
    r = r.clone().requires_grad_()
    dispersive_loss(r).backward()
    assert r.grad[0, 0] > 0 > r.grad[1, 0]
    with pytest.raises(ValueError, match="temperature"):
        dispersive_loss(r, temperature=0)


def test_denoiser_zero_init_shapes_and_float_timesteps():
    torch.manual_seed(0)
    model = ContRecDenoiser(latent_dim=11, condition_dim=32, hidden_dim=37, num_blocks=2)
    x, c = torch.randn(5, 11), torch.randn(5, 32)
    out = model(x, torch.tensor([0, 1, 50, 199, 3]), c)
    assert out.sample.shape == (5, 11) and out.representation.shape == (5, 37)
    assert torch.equal(out.sample, torch.zeros(5, 11))
    assert model(x, 7.5, c).sample.shape == (5, 11)  # float scalar timestep (Euler)
    assert isinstance(model(x, 3, c, return_dict=False), tuple)


def test_denoiser_learns_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = ContRecDenoiser(latent_dim=4, condition_dim=6, hidden_dim=32, num_blocks=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    cond = torch.randn(64, 6)
    target = cond[:, :4] * 2  # learnable from the condition
    for _ in range(150):
        loss = (model(torch.randn(64, 4), torch.randint(0, 100, (64,)), cond).sample - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss < 0.2
    model.eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    back = ContRecDenoiser.from_pretrained(tmp_path)
    x, t = torch.randn(3, 4), torch.tensor([1, 2, 3])
    assert torch.equal(back(x, t, cond[:3]).sample, model(x, t, cond[:3]).sample)


def test_denoiser_bad_input():
    model = ContRecDenoiser(latent_dim=4, condition_dim=6, hidden_dim=8, num_blocks=1)
    with pytest.raises(ValueError, match=r"sample must be \[batch, 4\]"):
        model(torch.randn(2, 5), 1, torch.randn(2, 6))
    with pytest.raises(ValueError, match=r"condition must be \[2, 6\]"):
        model(torch.randn(2, 4), 1, torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"condition must be \[3, 6\] or \[1, 6\]"):
        model(torch.randn(3, 4), 1, torch.randn(2, 6))
    with pytest.raises(ValueError, match=r"timestep must be a scalar or \[3\]"):
        model(torch.randn(3, 4), torch.tensor([1, 2]), torch.randn(3, 6))
    with pytest.raises(ValueError, match="latent_dim"):
        ContRecDenoiser(latent_dim=0)


def test_denoiser_broadcasts_one_timestep_and_one_condition():
    """A scalar timestep and a `[1, C]` condition give what the same values repeated per row give."""
    torch.manual_seed(0)
    model = ContRecDenoiser(latent_dim=5, condition_dim=6, hidden_dim=37, num_blocks=2)
    for p in model.parameters():  # leave the zero initialisation, so the test sees every term
        torch.nn.init.normal_(p, std=0.1)
    x, c = torch.randn(7, 5), torch.randn(1, 6)
    repeated = model(x, torch.full((7,), 40), c.expand(7, -1))
    broadcast = model(x, torch.tensor(40), c)
    torch.testing.assert_close(broadcast.sample, repeated.sample, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(broadcast.representation, repeated.representation, rtol=1e-5, atol=1e-6)


def test_precomputed_modulation_gives_the_same_prediction():
    torch.manual_seed(0)
    model = ContRecDenoiser(latent_dim=5, condition_dim=6, hidden_dim=37, num_blocks=2)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, c, t = torch.randn(4, 5), torch.randn(4, 6), torch.tensor([3, 9, 9, 40])
    modulation = model.modulate(model.embed(t, c))
    assert modulation.shape == (4, model.modulation_dim) == (4, 8 * 37)
    torch.testing.assert_close(model(x, None, None, modulation=modulation).sample, model(x, t, c).sample)
    with pytest.raises(ValueError, match=r"modulation must be \[4 or 1, 296\]"):
        model(x, None, None, modulation=modulation[:2])
    with pytest.raises(ValueError, match=r"condition must be \[4, 6\] or \[1, 6\], got None"):
        model(x, t, None)

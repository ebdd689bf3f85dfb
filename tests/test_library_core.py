"""Unit tests of the course library's core: data, mixtures, digits, nets, training, metrics,
plotting, runtime helpers, ODE solvers and change of variables."""
from __future__ import annotations

import json
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

import course  # noqa: E402
from course import data2d, flows, metrics, ode, plotting  # noqa: E402
from course.digits import load_digits  # noqa: E402
from course.gmm import GaussianMixture, gmm_log_prob, gmm_score, noised_gmm_log_prob_and_score  # noqa: E402
from course.nets import TimeMLP  # noqa: E402
from course.training import EMA, train  # noqa: E402


@pytest.mark.parametrize("name", sorted(data2d.DATASETS))
def test_2d_sets_have_shape_scale_and_seed(name):
    """Does every 2D set return (n, 2) float32 points of a sensible scale, reproducibly?"""
    a = data2d.sample(name, 500, torch.Generator().manual_seed(3))
    b = data2d.sample(name, 500, torch.Generator().manual_seed(3))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert 0.3 < float(a.std()) < 3 and float(a.abs().max()) < 6


def test_checkerboard_is_uniform_on_eight_squares():
    """Does the checkerboard live on 8 unit squares of [-2, 2]^2 (density 1/8)?"""
    x = data2d.checkerboard(20000, torch.Generator().manual_seed(0))
    assert float(x.min()) >= -2 and float(x.max()) <= 2
    cells = (torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2
    assert bool((cells == cells[0]).all())  # one colour only
    counts = torch.histc(torch.floor(x[:, 0]) * 4 + torch.floor(x[:, 1]), bins=16, min=-10, max=6)
    assert int((counts > 0).sum()) == 8


def test_gmm_log_prob_integrates_to_one_and_score_is_its_gradient():
    """Is the mixture density normalised, and is its score the autograd gradient of log p?"""
    mix = data2d.two_gaussians_mixture()
    grid = plotting.grid2d(6.0, 200)
    mass = float(mix.log_prob(grid).exp().sum() * (12 / 199) ** 2)
    assert abs(mass - 1) < 1e-2
    x = torch.randn(20, 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(gmm_log_prob(x, mix.means, mix.stds, mix.weights).sum(), x)
    assert torch.allclose(grad, gmm_score(x.detach(), mix.means, mix.stds, mix.weights), atol=1e-5)


def test_gmm_is_stable_far_away():
    """Are log density and score finite far from every component (logsumexp)?"""
    mix = data2d.eight_gaussians_mixture()
    x = torch.tensor([[60.0, -40.0]])
    assert torch.isfinite(mix.log_prob(x)).all() and torch.isfinite(mix.score(x)).all()


def test_noised_mixture_matches_monte_carlo():
    """Does the noised mixture's density match samples of a x0 + s z?"""
    mix = data2d.two_gaussians_mixture()
    g = torch.Generator().manual_seed(0)
    a, s = 0.6, 0.7
    xt = a * mix.sample(200000, g) + s * torch.randn(200000, 2, generator=g)
    exact = GaussianMixture(a * mix.means, torch.sqrt(a ** 2 * mix.stds ** 2 + s ** 2), mix.weights)
    lp, score = mix.noised(xt[:100], a, s)
    assert torch.allclose(lp, exact.log_prob(xt[:100]), atol=1e-5)
    assert torch.allclose(score, exact.score(xt[:100]), atol=1e-4)
    lp_batch, _ = noised_gmm_log_prob_and_score(xt[:4], torch.full((4,), a), torch.full((4,), s),
                                                mix.means, mix.stds, mix.weights)
    assert torch.allclose(lp_batch, lp[:4])


def test_digits_loader_offline_range_split_and_upsampling():
    """Are the digits (N, 1, H, W) in [-1, 1] with a fixed train/test split and optional upsampling?"""
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,) and y.dtype == torch.int64
    assert float(x.min()) == -1 and float(x.max()) == 1
    tr, te = load_digits(split="train")[0], load_digits(split="test")[0]
    assert len(tr) + len(te) == 1797
    assert load_digits(16, split="test")[0].shape == (len(te), 1, 16, 16)


def test_time_mlp_shapes_time_and_labels():
    """Does TimeMLP map (B, d) to (B, d) and depend on t and on the label?"""
    torch.manual_seed(0)
    net = TimeMLP(dim=2, n_classes=3, time_scale=1000.0)
    x = torch.randn(5, 2)
    out = net(x, torch.full((5,), 0.2))
    assert out.shape == (5, 2)
    assert not torch.allclose(out, net(x, 0.7))
    assert torch.allclose(net(x, 0.2), out)  # float and (B,) tensor give the same
    y = torch.tensor([0, 1, 2, 0, 1])
    assert not torch.allclose(net(x, 0.2, y), out)


def test_training_loop_reduces_loss_and_tracks_ema():
    """Does train() minimise a simple regression, with EMA weights following?"""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    x = torch.randn(256, 2)
    y = x @ torch.tensor([[2.0], [-1.0]])
    losses = train(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), (x, y), steps=300, lr=0.05,
                   batch_size=64, ema=ema, progress=False, generator=torch.Generator().manual_seed(0))
    assert losses[-1] < 0.01 * losses[0]
    assert torch.allclose(ema.model.weight, model.weight, atol=0.05)


def test_sliced_wasserstein_and_energy_distance_separate_sets():
    """Are both metrics near zero for two samples of one set and large for different sets?"""
    g = torch.Generator().manual_seed(0)
    a, b = data2d.moons(2000, generator=g), data2d.moons(2000, generator=g)
    c = data2d.circles(2000, generator=g)
    assert metrics.sliced_wasserstein(a, b, generator=g) < 0.1 < metrics.sliced_wasserstein(a, c, generator=g)
    assert metrics.energy_distance(a, b) < 0.02 < metrics.energy_distance(a, c)
    assert metrics.mmd_rbf(a, b) < 0.01 < metrics.mmd_rbf(a, c)
    shifted = a + torch.tensor([1.0, 0.0])
    assert abs(metrics.sliced_wasserstein(a, shifted, n_projections=2000) - 1 / math.sqrt(2)) < 0.05
    floor = metrics.data_floor(lambda n: data2d.moons(n, generator=g), 1000)
    assert 0 < floor < 0.15


def test_plots_render(tmp_path):
    """Do the plotting helpers draw, and does the animation save a GIF?"""
    import matplotlib.pyplot as plt

    mix = data2d.two_gaussians_mixture()
    plotting.scatter2d(mix.sample(100))
    plotting.density_heatmap(mix.log_prob, n=30)
    plotting.vector_field(lambda x, t: -x, n=8)
    path = ode.integrate(lambda x, t: -x, torch.randn(10, 2), 0.0, 1.0, 5)
    plotting.trajectories(path)
    plotting.image_grid(load_digits()[0][:16], nrow=8)
    out = plotting.animate_particles(path, filename=str(tmp_path / "a.gif"))
    assert (tmp_path / "a.gif").stat().st_size > 1000 and out.endswith("a.gif")
    assert "<script" in plotting.animate_particles(path).data  # inline HTML
    plt.close("all")


def test_runtime_device_seed_fast_and_metrics(monkeypatch, tmp_path):
    """Do device(), seeding, fast mode and record_metric behave as documented?"""
    assert course.device().type in {"cpu", "cuda", "mps"}
    g1, g2 = course.seed_everything(5), course.seed_everything(5)
    assert torch.equal(torch.randn(3, generator=g1), torch.randn(3, generator=g2))
    monkeypatch.setenv("COURSE_FAST", "1")
    assert course.is_fast() and course.budget(100, 3) == 3
    monkeypatch.setenv("COURSE_FAST", "0")
    assert course.budget(100, 3) == 100
    course.record_metric("x", 1.0)  # no file: no-op
    monkeypatch.setenv("COURSE_METRICS_FILE", str(tmp_path / "m.jsonl"))
    course.record_metric("w_ratio", torch.tensor(1.25), notebook="01_toy_flows")
    assert json.loads((tmp_path / "m.jsonl").read_text()) == {"notebook": "01_toy_flows", "name": "w_ratio", "value": 1.25}


@pytest.mark.parametrize("step,order", [(ode.euler_step, 1), (ode.heun_step, 2), (ode.rk4_step, 4)])
@pytest.mark.parametrize("dtype", [torch.float64])
def test_solvers_reach_their_order(step, order, dtype):
    """Do Euler, Heun and RK4 converge at orders 1, 2 and 4 on an ODE with an exact solution?"""
    x0 = torch.randn(8, 2, dtype=dtype)
    exact = x0 * math.exp(-2.0)
    ns = [16, 32, 64, 128]
    errs = [float((ode.integrate(lambda x, t: -t * x, x0, 0.0, 2.0, n, step)[-1] - exact).abs().max()) for n in ns]
    assert abs(ode.convergence_order([2 / n for n in ns], errs) - order) < 0.15


def test_integrate_path_shape_and_backwards():
    """Does integrate return (n+1, N, d) with x0 first, and undo itself backwards?"""
    x0 = torch.randn(4, 2, dtype=torch.float64)
    f = lambda x, t: torch.stack([-x[:, 1], x[:, 0]], 1) * (1 + t)  # noqa: E731
    fwd = ode.integrate(f, x0, 0.0, 1.0, 50, ode.rk4_step)
    back = ode.integrate(f, fwd[-1], 1.0, 0.0, 50, ode.rk4_step)
    assert fwd.shape == (51, 4, 2) and torch.equal(fwd[0], x0)
    assert torch.allclose(back[-1], x0, atol=1e-6)


def test_divergence_logdet_and_pushforward():
    """Do divergence, log-determinant and the pushforward density agree with closed forms?"""
    A = torch.tensor([[1.0, 2.0], [0.5, -3.0]])
    x = torch.randn(6, 2)
    assert torch.allclose(flows.divergence(lambda z, t: z @ A.T, x, 0.0), torch.full((6,), -2.0))
    assert torch.allclose(flows.jacobian_logdet(lambda z: z @ A.T, x), torch.full((6,), math.log(4.0)))
    y = torch.randn(6, 2)
    lp = flows.pushforward_log_prob(y, lambda z: z / 3, flows.standard_normal_log_prob)
    expected = torch.distributions.MultivariateNormal(torch.zeros(2), 9 * torch.eye(2)).log_prob(y)
    assert torch.allclose(lp, expected, atol=1e-5)


def test_judge_is_accurate_and_fid_separates():
    """Is the digit judge accurate on held-out digits, for 8x8 and upsampled images, and does its
    Fréchet distance separate digits from noise?"""
    from course.judge import get_judge

    judge = get_judge()
    assert judge.test_accuracy > 0.95
    x, y = load_digits(16, split="test")
    assert judge.accuracy(x, y) > 0.95
    same = judge.frechet_distance(x[:150], x[150:300])
    noise = judge.frechet_distance(x[:150], torch.rand_like(x[:150]) * 2 - 1)
    assert noise > 5 * same


def test_floor_is_measured_like_the_model():
    """Does floor_and_spread score fresh data with the model's own score, so data itself sits at the floor?"""
    from course import metrics
    from course.data2d import eight_gaussians_mixture

    mix = eight_gaussians_mixture()
    g = torch.Generator().manual_seed(0)
    reference = mix.sample(2000, g)

    def score(x):
        return metrics.sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(3))

    floor, spread = metrics.floor_and_spread(score, lambda n: mix.sample(n, g), 2000, repeats=8)
    assert spread > 0
    perfect = [score(mix.sample(2000, g)) for _ in range(5)]  # a perfect sampler
    assert sum(metrics.within_noise(v, floor, spread, k=3) for v in perfect) >= 4
    assert not metrics.within_noise(score(mix.sample(2000, g) * 1.3), floor, spread)  # a too-wide sampler

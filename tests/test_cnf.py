"""Unit tests of course/cnf.py: the reference the grader of notebook 02 compares against.

Each test checks the library against a closed form or an independent computation: the flow of a
linear field dx/dt = A x is x_t = e^(tA) x_0 with log-det t tr A, so a CNF of a linear field is a
Gaussian pushforward with a known density.
"""
from __future__ import annotations

import math

import pytest
import torch

from course import cnf, flows, ode
from course.nets import TimeMLP


def linear_field(A):
    return lambda x, t: x @ A.T


def tanh_field(W, b):
    return lambda x, t: torch.tanh(x @ W.T + b) * (1 + t)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_hutchinson_is_the_quadratic_form_of_the_jacobian(gen):
    """Is hutchinson_divergence exactly noise^T J noise for the given noise?"""
    W, b = torch.randn(3, 3, generator=gen), torch.randn(3, generator=gen)
    f, x, noise = tanh_field(W, b), torch.randn(10, 3, generator=gen), torch.randn(10, 3, generator=gen)
    jac = flows.batch_jacobian(lambda z: f(z, 0.5), x)
    expected = torch.einsum("ni,nij,nj->n", noise, jac, noise)
    torch.testing.assert_close(cnf.hutchinson_divergence(f, x, 0.5, noise), expected)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased(gen, kind):
    """Does the mean of many Hutchinson estimates approach the exact divergence?"""
    W, b = torch.randn(2, 2, generator=gen), torch.randn(2, generator=gen)
    f, x = tanh_field(W, b), torch.randn(1, 2, generator=gen).expand(20_000, 2)
    noise = torch.randn(20_000, 2, generator=gen)
    if kind == "rademacher":
        noise = noise.sign()
    estimates = cnf.hutchinson_divergence(f, x, 0.2, noise)
    exact = flows.divergence(f, x[:1], 0.2)
    stderr = estimates.std() / math.sqrt(len(estimates))
    assert abs(float(estimates.mean() - exact)) < 5 * float(stderr) + 1e-6


def test_cnf_sample_is_rk4_from_0_to_1(gen):
    """Is cnf_sample the end of course.ode.integrate with RK4 from t = 0 to 1?"""
    f, z = tanh_field(torch.randn(2, 2, generator=gen), torch.randn(2, generator=gen)), torch.randn(50, 2, generator=gen)
    torch.testing.assert_close(cnf.cnf_sample(f, z, 7), ode.integrate(f, z, 0.0, 1.0, 7, step=ode.rk4_step)[-1])


def test_cnf_log_prob_of_a_linear_flow_is_the_gaussian_pushforward(gen):
    """log p1 of dx/dt = A x from N(0, I) is log N(x; 0, e^A e^(A^T)): the log-det is tr A."""
    A = torch.tensor([[0.3, -0.8], [0.5, -0.6]])
    M = torch.linalg.matrix_exp(A)
    x1 = 2 * torch.randn(64, 2, generator=gen)
    exact = torch.distributions.MultivariateNormal(torch.zeros(2), M @ M.T).log_prob(x1)
    got = cnf.cnf_log_prob(linear_field(A), x1, 20, flows.standard_normal_log_prob)
    torch.testing.assert_close(got, exact, rtol=1e-4, atol=1e-4)


def test_cnf_log_prob_inverts_cnf_sample(gen):
    """Sampling then evaluating: log p1(x1) = log p0(z) - int div f, along the same path."""
    W, b = torch.randn(2, 2, generator=gen), torch.randn(2, generator=gen)
    f, z = tanh_field(W, b), torch.randn(30, 2, generator=gen)
    x1 = cnf.cnf_sample(f, z, 40)
    ts = ode.time_grid(0.0, 1.0, 400)
    path = ode.integrate(f, z, 0.0, 1.0, 400, step=ode.rk4_step)
    divs = torch.stack([flows.divergence(f, x, t) for x, t in zip(path, ts)])  # (401, N)
    integral = torch.trapezoid(divs, dx=1 / 400, dim=0)
    expected = flows.standard_normal_log_prob(z) - integral
    torch.testing.assert_close(cnf.cnf_log_prob(f, x1, 40, flows.standard_normal_log_prob), expected,
                               rtol=1e-4, atol=1e-4)


def test_cnf_density_integrates_to_one(gen):
    """Is exp(cnf_log_prob) a density (mass 1 over a large square)?"""
    f = tanh_field(torch.tensor([[0.2, -1.5], [1.5, 0.3]]), torch.tensor([0.3, -0.2]))
    xs = torch.linspace(-7, 7, 71)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = cnf.cnf_log_prob(f, grid, 8, flows.standard_normal_log_prob).exp().sum() * 0.2 ** 2
    assert abs(float(mass) - 1) < 0.01


def test_cnf_nll_is_the_mean_and_trains_the_divergence(gen):
    """Is cnf_nll the mean NLL, and do its gradients reach the parameters through the divergence?"""
    torch.manual_seed(0)
    model = TimeMLP(dim=2, hidden=16, depth=2, emb_dim=8, time_scale=1000.0)
    x = torch.randn(16, 2, generator=gen)
    loss = cnf.cnf_nll(model, x, 4, flows.standard_normal_log_prob)
    torch.testing.assert_close(loss, -cnf.cnf_log_prob(model, x, 4, flows.standard_normal_log_prob).mean())
    (grad,) = torch.autograd.grad(loss, [model.net[0].weight])
    # the same loss with the divergence held constant has another gradient
    d = 2

    def augmented(state, t):
        y = state[:, :d]
        return torch.cat([model(y, t), flows.divergence(model, y, t, create_graph=False)[:, None]], 1)

    state = ode.integrate(augmented, torch.cat([x, torch.zeros(16, 1)], 1), 1.0, 0.0, 4, step=ode.rk4_step)[-1]
    frozen = -(flows.standard_normal_log_prob(state[:, :d]) + state[:, d]).mean()
    (grad_frozen,) = torch.autograd.grad(frozen, [model.net[0].weight])
    torch.testing.assert_close(frozen, loss)
    assert (grad - grad_frozen).abs().max() > 1e-4


def test_cnf_log_prob_without_grad_is_not_a_graph(gen):
    """Under torch.no_grad() the log density carries no graph (cheap evaluation)."""
    model = TimeMLP(dim=2, hidden=16, depth=2, emb_dim=8, time_scale=1000.0)
    with torch.no_grad():
        out = cnf.cnf_log_prob(model, torch.randn(8, 2, generator=gen), 4, flows.standard_normal_log_prob)
    assert not out.requires_grad


def test_adjoint_of_a_linear_flow_is_the_transposed_exponential(gen):
    """For x1 = e^A x0, dL/dx0 = e^(A^T) dL/dx1."""
    A = torch.tensor([[0.3, -0.8, 0.1], [0.5, -0.6, 0.0], [0.2, 0.2, 0.4]])
    x0, g = torch.randn(10, 3, generator=gen), torch.randn(10, 3, generator=gen)
    torch.testing.assert_close(cnf.adjoint_grad_x0(linear_field(A), x0, 20, g), g @ torch.linalg.matrix_exp(A),
                               rtol=1e-4, atol=1e-5)


def _autograd_grad_x0(f, x0, n_steps, g):
    x0 = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((ode.integrate(f, x0, 0.0, 1.0, n_steps, step=ode.rk4_step)[-1] * g).sum(), x0)
    return grad


def test_adjoint_agrees_with_autograd_through_the_solver(gen):
    """Does the adjoint solved backwards match backpropagation through the RK4 solver?"""
    f = tanh_field(torch.randn(2, 2, generator=gen), torch.randn(2, generator=gen))
    x0, g = torch.randn(25, 2, generator=gen), torch.randn(25, 2, generator=gen)
    torch.testing.assert_close(cnf.adjoint_grad_x0(f, x0, 32, g), _autograd_grad_x0(f, x0, 32, g),
                               rtol=1e-4, atol=1e-4)


def test_adjoint_and_autograd_differ_by_a_fourth_order_error(gen):
    """The two gradients differ only by RK4's discretisation error: halving the step divides it by ~16."""
    kw = dict(generator=gen, dtype=torch.float64)
    f = tanh_field(torch.randn(2, 2, **kw), torch.randn(2, **kw))
    x0, g = torch.randn(25, 2, **kw), torch.randn(25, 2, **kw)
    gaps = [float((cnf.adjoint_grad_x0(f, x0, n, g) - _autograd_grad_x0(f, x0, n, g)).abs().max()) for n in (8, 16, 32)]
    assert ode.convergence_order([1 / 8, 1 / 16, 1 / 32], gaps) == pytest.approx(4.0, abs=0.5)

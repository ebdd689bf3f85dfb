"""Hidden tests of notebook 02 (Neural ODEs and CNFs). Inputs are drawn at grading time from
``rng``; expected answers come from closed forms (linear flows) and the course library.

Hints are computed by running the known mistakes (``mistaken_*`` and ``*_hints`` in the public
module, shared with the public checks) on the same inputs, so a learner who made one is told which.
"""
from __future__ import annotations

import torch

from course import cnf, flows, ode
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close, expect_moments, expect_tensor, matches
from grader.public.nb02_neural_odes import (FROZEN_DIVERGENCE, FROZEN_WHERE, adjoint_hints, diagonal_gaussian,
                                            expect_adjoint_backwards, expect_hutchinson_noise,
                                            expect_hutchinson_variance, expect_nll, hutchinson_hints, linear_field,
                                            linear_flow_log_prob, log_prob_hints, mistaken_log_prob, mlp_field,
                                            standard_normal, tanh_field)


# ---------------------------------------------------------------------------------------------
# Random inputs
# ---------------------------------------------------------------------------------------------
def points(rng, n=32, d=2, scale=1.0):
    return scale * torch.randn(n, d, generator=rng)


def random_tanh_field(rng, d=2):
    return Ref(tanh_field, 0.8 * torch.randn(d, d, generator=rng), 0.5 * torch.randn(d, generator=rng), 0.7)


def random_matrix(rng, d=2):
    """0.4 randn with its trace set to +-(0.5..1.5), so that tr A (the log-volume change) is never ~0."""
    A = 0.4 * torch.randn(d, d, generator=rng)
    trace = (0.5 + float(torch.rand(1, generator=rng))) * (1 if float(torch.rand(1, generator=rng)) < 0.5 else -1)
    return A + (trace - torch.trace(A)) / d * torch.eye(d)


def random_stds(rng, d=2):
    return 0.5 + torch.rand(d, generator=rng)


def autograd_grad_x0(f, x0, n_steps, grad_x1):
    """dL/dx0 by backpropagation through the RK4 solver: what the adjoint must agree with."""
    x0 = x0.clone().requires_grad_(True)
    x1 = ode.integrate(f, x0, 0.0, 1.0, n_steps, step=ode.rk4_step)[-1]
    (grad,) = torch.autograd.grad((x1 * grad_x1).sum(), x0)
    return grad


def flat_gradient(loss, model):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


# -- hutchinson_divergence ---------------------------------------------------------------------
@exercise("hutchinson_divergence")
def test_hutchinson_nonlinear(sub, rng):
    """hutchinson_divergence is noise^T (df/dx) noise on a nonlinear field in 3 dimensions"""
    ref, x, t = random_tanh_field(rng, 3), points(rng, 24, 3), 0.4
    noise = torch.randn(24, 3, generator=rng)
    f = build(ref)
    jac = flows.batch_jacobian(lambda z: f(z, t), x)  # (N, d, d)
    expected = torch.einsum("ni,nij,nj->n", noise, jac, noise)
    got = sub.call("hutchinson_divergence", ref, x, t, noise)
    expect_close(got, expected, "hutchinson_divergence(f, x, t, noise)", rtol=1e-4, atol=1e-4,
                 hints=hutchinson_hints(f, x, t, noise))


@exercise("hutchinson_divergence")
def test_hutchinson_network_time(sub, rng):
    """hutchinson_divergence of a time-conditioned network, with Rademacher noise"""
    seed = int(torch.randint(0, 2 ** 30, (1,), generator=rng))
    ref, x = Ref(mlp_field, seed), points(rng, 16)
    t = float(torch.rand(1, generator=rng))
    noise = torch.randint(0, 2, (16, 2), generator=rng).float() * 2 - 1
    f = build(ref)
    jac = flows.batch_jacobian(lambda z: f(z, t), x)
    expected = torch.einsum("ni,nij,nj->n", noise, jac, noise).detach()
    at_zero = torch.einsum("ni,nij,nj->n", noise, flows.batch_jacobian(lambda z: f(z, 0.0), x), noise).detach()
    expect_close(sub.call("hutchinson_divergence", ref, x, t, noise), expected,
                 f"hutchinson_divergence(f, x, t={t:.3f}, noise)", rtol=1e-4, atol=1e-4,
                 hints=[Hint(at_zero, "evaluate the field at the given time t.")] + hutchinson_hints(f, x, t, noise))


# -- cnf_sample -------------------------------------------------------------------------------
@exercise("cnf_sample")
def test_cnf_sample_nonlinear(sub, rng):
    """cnf_sample pushes points from t = 0 to t = 1 with RK4 (a 3D nonlinear field)"""
    ref, z = random_tanh_field(rng, 3), points(rng, 32, 3)
    n = int(torch.randint(3, 9, (1,), generator=rng))
    f = build(ref)
    path = ode.integrate(f, z, 0.0, 1.0, n, step=ode.rk4_step)
    got = sub.call("cnf_sample", ref, z, n)
    expect(not (hasattr(got, "shape") and tuple(got.shape) == tuple(path.shape)),
           f"cnf_sample returned the whole path, shape {tuple(path.shape)}; it should return the end points "
           f"x1 only, shape {tuple(z.shape)}.")
    expect_close(got, path[-1], f"cnf_sample(f, z, n_steps={n})", rtol=1e-4, atol=1e-5, hints=[
        Hint(ode.integrate(f, z, 0.0, 1.0, n, step=ode.euler_step)[-1],
             "that is Euler's method; use RK4, like every solve in this notebook.", where="section 1."),
        Hint(ode.integrate(f, z, 1.0, 0.0, n, step=ode.rk4_step)[-1],
             "you integrated from t = 1 to t = 0; sampling runs from the base (t = 0) to the data (t = 1)."),
    ])


@exercise("cnf_sample")
def test_cnf_sample_pushforward_statistics(sub, rng):
    """samples of a linear flow from N(0, I) have covariance e^A e^(A^T)"""
    A = random_matrix(rng)
    z = torch.randn(4000, 2, generator=rng)
    got = sub.call("cnf_sample", Ref(linear_field, A), z, 12)
    expect_tensor(got, "cnf_sample(f, z, n_steps=12)", shape=tuple(z.shape))
    M = torch.linalg.matrix_exp(A)
    M_inv_cov = torch.linalg.matrix_exp(-A) @ torch.linalg.matrix_exp(-A).T
    expect_moments(got, torch.zeros(2), M @ M.T, "cnf_sample(f, z ~ N(0, I), n_steps=12) for f(x) = A x",
                   hints=[Hint(lambda m, c: bool((c - M_inv_cov.double()).abs().max() < 0.1 * M_inv_cov.abs().max()),
                               "the covariance is that of e^(-A) z: the flow ran backwards in time.")])


# -- cnf_log_prob -----------------------------------------------------------------------------
@exercise("cnf_log_prob")
def test_cnf_log_prob_linear_exact(sub, rng):
    """cnf_log_prob of a linear flow matches the exact Gaussian pushforward"""
    A = random_matrix(rng)
    x1 = points(rng, 32, 2, scale=1.5)
    got = sub.call("cnf_log_prob", Ref(linear_field, A), x1, 12, Ref(standard_normal))
    expect_close(got, linear_flow_log_prob(A, x1), "cnf_log_prob(f, x1, n_steps=12, base_log_prob) for f(x) = A x",
                 rtol=1e-3, atol=1e-3,
                 hints=log_prob_hints(build(Ref(linear_field, A)), x1, 12, flows.standard_normal_log_prob))


@exercise("cnf_log_prob")
def test_cnf_log_prob_nonlinear_3d(sub, rng):
    """cnf_log_prob on a 3D nonlinear time-dependent field with a non-standard base"""
    ref, stds, x1 = random_tanh_field(rng, 3), random_stds(rng, 3), points(rng, 24, 3)
    n = int(torch.randint(4, 9, (1,), generator=rng))
    f, base = build(ref), build(Ref(diagonal_gaussian, stds))
    expected = cnf.cnf_log_prob(f, x1, n, base).detach()
    got = sub.call("cnf_log_prob", ref, x1, n, Ref(diagonal_gaussian, stds))
    expect_close(got, expected, f"cnf_log_prob(f, x1, n_steps={n}, base_log_prob)", rtol=1e-4, atol=1e-4,
                 hints=log_prob_hints(f, x1, n, base) + [
                     Hint(mistaken_log_prob(f, x1, n, flows.standard_normal_log_prob),
                          "use the base_log_prob you are given, not a standard normal.")])


@exercise("cnf_log_prob")
def test_cnf_log_prob_normalised(sub, rng):
    """the density of a CNF integrates to 1 (on a grid)"""
    lim, n = 6.0, 61
    xs = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    W = torch.tensor([[0.0, -1.5], [1.5, 0.0]]) + 0.5 * torch.randn(2, 2, generator=rng)
    got = sub.call("cnf_log_prob", Ref(tanh_field, W, torch.zeros(2), 0.0), grid, 6, Ref(standard_normal))
    expect(hasattr(got, "shape") and tuple(got.shape) == (n * n,),
           f"cnf_log_prob should return one log density per point, shape ({n * n},).")
    mass = float(torch.exp(got.double()).sum() * (2 * lim / (n - 1)) ** 2)
    expect(abs(mass - 1) < 0.03, f"exp(cnf_log_prob) integrates to {mass:.3f} over the plane, not 1.",
           "Hint: check the direction of the solve (t = 1 back to t = 0) and the sign of the divergence term.")


@exercise("cnf_log_prob")
def test_cnf_log_prob_under_no_grad(sub, rng):
    """cnf_log_prob works inside torch.no_grad() (as when a trained model is evaluated)"""
    A, x1 = random_matrix(rng), points(rng, 8)
    got = sub.probe("probe_log_prob_no_grad", A, x1, 12)
    expect_close(got, linear_flow_log_prob(A, x1), "cnf_log_prob(...) called inside torch.no_grad()",
                 rtol=1e-3, atol=1e-3,
                 hints=log_prob_hints(build(Ref(linear_field, A)), x1, 12, flows.standard_normal_log_prob))


@exercise("cnf_log_prob")
def test_cnf_log_prob_trains(sub, rng):
    """cnf_log_prob is differentiable in the network's parameters, through the divergence too"""
    seed, x = int(torch.randint(0, 2 ** 30, (1,), generator=rng)), points(rng, 16)
    model = build(Ref(mlp_field, seed))
    expected = flat_gradient(cnf.cnf_log_prob(model, x, 4, flows.standard_normal_log_prob).sum(), model)
    frozen = flat_gradient(mistaken_log_prob(model, x, 4, flows.standard_normal_log_prob).sum(), model)
    got = sub.probe("probe_log_prob_gradient", seed, x, 4)
    expect_close(got, expected, "the gradient of sum(cnf_log_prob) with respect to the network's parameters",
                 rtol=1e-3, atol=1e-4,
                 hints=[Hint(frozen, FROZEN_DIVERGENCE, where=FROZEN_WHERE)])


# -- cnf_nll --------------------------------------------------------------------------------
@exercise("cnf_nll")
def test_cnf_nll_value(sub, rng):
    """cnf_nll is the mean negative log-likelihood (a 3D field, a non-standard base)"""
    ref, stds, x = random_tanh_field(rng, 3), random_stds(rng, 3), points(rng, 20, 3)
    log_p = cnf.cnf_log_prob(build(ref), x, 6, build(Ref(diagonal_gaussian, stds))).detach()
    args = (ref, x, 6, Ref(diagonal_gaussian, stds))
    expect_nll(sub, sub.call("cnf_nll", *args), log_p, args, "cnf_nll(f, x, n_steps=6, base_log_prob)")


@exercise("cnf_nll")
def test_cnf_nll_trains(sub, rng):
    """cnf_nll is differentiable in the network's parameters (the gradient training follows)"""
    seed, x = int(torch.randint(0, 2 ** 30, (1,), generator=rng)), points(rng, 16)
    model = build(Ref(mlp_field, seed))
    expected = flat_gradient(cnf.cnf_nll(model, x, 4, flows.standard_normal_log_prob), model)
    frozen = flat_gradient(-mistaken_log_prob(model, x, 4, flows.standard_normal_log_prob).mean(), model)
    got = sub.probe("probe_nll_gradient", seed, x, 4)
    if got["own"] is not None and matches(got["nll"], got["own"], rtol=1e-4, atol=1e-5):
        return  # the gradient of minus the mean of the learner's own cnf_log_prob: judged there
    expect_close(got["nll"], expected, "the gradient of cnf_nll with respect to the network's parameters",
                 rtol=1e-3, atol=1e-4, hints=[Hint(frozen, FROZEN_DIVERGENCE, where=FROZEN_WHERE)])


# -- adjoint_grad_x0 ------------------------------------------------------------------------
@exercise("adjoint_grad_x0")
def test_adjoint_linear_exact(sub, rng):
    """adjoint_grad_x0 for a 3D linear field is e^(A^T) dL/dx1"""
    A, x0, g = random_matrix(rng, 3), points(rng, 16, 3), points(rng, 16, 3)
    expected = g @ torch.linalg.matrix_exp(A)  # rows: (e^(A^T) g)^T
    got = sub.call("adjoint_grad_x0", Ref(linear_field, A), x0, 12, g)
    expect_close(got, expected, "adjoint_grad_x0(f, x0, n_steps=12, grad_x1) for f(x) = A x",
                 rtol=1e-3, atol=1e-4, hints=adjoint_hints(build(Ref(linear_field, A)), x0, 12, g))


@exercise("adjoint_grad_x0")
def test_adjoint_matches_autograd(sub, rng):
    """adjoint_grad_x0 agrees with autograd through the RK4 solver (a nonlinear time-dependent field)"""
    ref, x0, g = random_tanh_field(rng), points(rng, 24), points(rng, 24)
    f = build(ref)
    expected = autograd_grad_x0(f, x0, 16, g)
    got = sub.call("adjoint_grad_x0", ref, x0, 16, g)
    expect_close(got, expected, "adjoint_grad_x0(f, x0, n_steps=16, grad_x1) against autograd through the solver",
                 rtol=1e-3, atol=1e-4, hints=adjoint_hints(f, x0, 16, g))


@exercise("adjoint_grad_x0")
def test_adjoint_runs_backwards(sub, rng):
    """adjoint_grad_x0 solves the adjoint ODE backwards in time (not autograd through the solver)"""
    A, x0, g = random_matrix(rng), points(rng, 4), points(rng, 4)
    expect_adjoint_backwards(sub.probe("probe_adjoint_times", A, x0, 8, g))


# -- questions ------------------------------------------------------------------------------
@exercise("derive_hutchinson_variance", weight=0.5)
def test_derive_hutchinson_variance_hidden(sub, rng):
    """the variance of a Hutchinson estimate with Gaussian noise, in 5 dimensions"""
    jac = 0.7 * torch.randn(6, 5, 5, generator=rng)
    expect_hutchinson_variance(sub.call("derive_hutchinson_variance", jac), jac, "derive_hutchinson_variance(J), d = 5")


@exercise("predict_hutchinson_noise", weight=0.5)
def test_predict_hutchinson_noise_hidden(sub, rng):
    """your prediction: which noise gives the lower variance"""
    expect_hutchinson_noise(sub.call("predict_hutchinson_noise"))

"""Notebook 02 (Neural ODEs and continuous normalizing flows): its manifest, the argument
factories, the probes, and the public checks.

Time convention (as in ``course.cnf``): t = 0 is the base N(0, I), t = 1 the data.
"""
from __future__ import annotations

import math

import torch

from course import cnf, flows, ode
from course.nets import TimeMLP
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_choice, expect_close, expect_scalar, matches
# the vector fields of notebook 01, re-exported so that Ref(linear_field, A) builds them here too
from grader.public.nb01_toy_flows import linear_field, standard_normal, tanh_field  # noqa: F401

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "hutchinson_divergence": 2,
    "cnf_sample": 1,
    "cnf_log_prob": 3,
    "cnf_nll": 2,
    "adjoint_grad_x0": 3,
    "derive_hutchinson_variance": 0.5,  # questions: derive, then run; predict, then run
    "predict_hutchinson_noise": 0.5,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "hutchinson_divergence": "course.cnf:hutchinson_divergence",
    "cnf_sample": "course.cnf:cnf_sample",
    "cnf_log_prob": "course.cnf:cnf_log_prob",
    "cnf_nll": "course.cnf:cnf_nll",
    "adjoint_grad_x0": "course.cnf:adjoint_grad_x0",
}


# ---------------------------------------------------------------------------------------------
# Factories: vector fields f(x, t) and base log densities
# ---------------------------------------------------------------------------------------------
def mlp_field(seed: int, dim: int = 2, hidden: int = 16, scale: float = 0.5) -> TimeMLP:
    """A small TimeMLP (the architecture the notebook trains) with weights drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # TimeMLP's Fourier frequencies (a buffer) come from the global RNG
        torch.manual_seed(seed)
        model = TimeMLP(dim=dim, hidden=hidden, depth=2, emb_dim=8, time_scale=1000.0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen))
    return model


def diagonal_gaussian(stds):
    """log N(x; 0, diag(stds^2)) per row: a base other than the standard normal."""
    stds = torch.as_tensor(stds, dtype=torch.float32)
    return lambda x: (flows.standard_normal_log_prob(x / stds) - torch.log(stds).sum())



def linear_flow_log_prob(A, x1: torch.Tensor) -> torch.Tensor:
    """The exact answer for dx/dt = A x from N(0, I): x1 = e^A x0, so log p1(x1) = log N(e^-A x1) - tr A."""
    A = torch.as_tensor(A, dtype=torch.float64)
    x0 = x1.double() @ torch.linalg.matrix_exp(-A).T
    return (flows.standard_normal_log_prob(x0) - torch.trace(A)).float()


# ---------------------------------------------------------------------------------------------
# Known mistakes, run on the grader's side so that the feedback can name the one a learner made
# ---------------------------------------------------------------------------------------------
def mistaken_log_prob(f, x1, n_steps, base, t_start=1.0, t_end=0.0, sign=1.0, step=ode.rk4_step,
                      create_graph=False):
    """cnf_log_prob with a knob for each mistake: direction, sign of the integral, solver, graph."""
    d = x1.shape[1]

    def augmented(state, t):
        x = state[:, :d]
        return torch.cat([f(x, t), flows.divergence(f, x, t, create_graph=create_graph)[:, None]], 1)

    state = ode.integrate(augmented, torch.cat([x1, torch.zeros_like(x1[:, :1])], 1), t_start, t_end,
                          n_steps, step=step)[-1]
    return base(state[:, :d]) + sign * state[:, d]


def log_prob_hints(f, x1, n_steps, base) -> list[Hint]:
    direction = ("you integrated from t = 0 to t = 1; the density of a data point solves the ODE "
                 "backwards, from x1 at t = 1 to x0 at t = 0.")
    integral = mistaken_log_prob(f, x1, n_steps, lambda x: torch.zeros(x.shape[0]))  # -int_0^1 div f dt
    x0 = ode.integrate(f, x1, 1.0, 0.0, n_steps, step=ode.rk4_step)[-1]
    return [
        Hint(mistaken_log_prob(f, x1, n_steps, base, sign=-1.0),
             "the divergence integral has the wrong sign: log p1(x1) = log p0(x0) - int_0^1 div f dt, "
             "and integrating from t = 1 down to 0 already gives -int_0^1 div f dt."),
        Hint(mistaken_log_prob(f, x1, n_steps, base, t_start=0.0, t_end=1.0), direction),
        Hint(mistaken_log_prob(f, x1, n_steps, base, t_start=0.0, t_end=1.0, sign=-1.0), direction),
        Hint(mistaken_log_prob(f, x1, n_steps, base, step=ode.euler_step),
             "that is Euler's method; solve the augmented state with RK4, like every solve in this notebook.",
             where="the time convention at the top of the notebook: every solve is RK4."),
        Hint(base(x0), "the divergence term is missing: log p1(x1) = log p0(x0) - int_0^1 div f dt."),
        Hint(base(x1) + integral, "evaluate the base density at x0 (the end of the backward solve), not at x1."),
    ]


def hutchinson_hints(f, x, t, noise) -> list[Hint]:
    jac = flows.batch_jacobian(lambda z: f(z, t), x).detach()  # (N, d, d)
    expected = torch.einsum("ni,nij,nj->n", noise, jac, noise)
    return [
        Hint(torch.einsum("nij,nj->n", jac, noise),
             "you summed the entries of (df/dx) noise; take its dot product with noise instead."),
        Hint(torch.einsum("ni,nij->n", noise, jac),
             "you summed the entries of noise^T (df/dx); take its dot product with noise instead."),
        Hint(jac.diagonal(dim1=1, dim2=2).sum(1),
             "you returned the exact trace; the estimator uses the given noise: noise^T (df/dx) noise."),
        Hint(expected / x.shape[1], "sum over the dimensions (a dot product), do not average."),
        Hint((noise * f(x, t)).sum(1).detach(), "you took noise^T f(x, t); the estimator needs the Jacobian: "
                                                "noise^T (df/dx) noise."),
    ]


def mistaken_adjoint(f, x0, n_steps, grad_x1, sign=-1.0, transpose=False, step=ode.rk4_step):
    """adjoint_grad_x0 with a knob for each mistake: the sign of da/dt, J a for a^T J, the solver."""
    d = x0.shape[1]
    x1 = ode.integrate(f, x0, 0.0, 1.0, n_steps, step=ode.rk4_step)[-1]

    def augmented(state, t):
        x, a = state[:, :d], state[:, d:]
        if transpose:
            a_jac = torch.einsum("nij,nj->ni", flows.batch_jacobian(lambda z: f(z, t), x), a)
        else:
            a_jac = cnf.field_and_vjp(f, x, t, a)[1]
        return torch.cat([f(x, t), sign * a_jac], 1)

    with torch.no_grad():
        return ode.integrate(augmented, torch.cat([x1, grad_x1], 1), 1.0, 0.0, n_steps, step=step)[-1][:, d:]


def adjoint_hints(f, x0, n_steps, grad_x1) -> list[Hint]:
    return [
        Hint(mistaken_adjoint(f, x0, n_steps, grad_x1, sign=1.0),
             "the sign of the adjoint equation is flipped: da/dt = -a^T df/dx, solved from t = 1 to t = 0."),
        Hint(mistaken_adjoint(f, x0, n_steps, grad_x1, transpose=True),
             "you multiplied by df/dx where its transpose belongs: the adjoint follows da/dt = -a^T df/dx, "
             "a vector-Jacobian product.",
             where="section 6: a^T df/dx is the same kind of product as noise^T J in Hutchinson's estimator."),
        Hint(mistaken_adjoint(f, x0, n_steps, grad_x1, step=ode.euler_step),
             "that is Euler's method; solve the augmented state with RK4.",
             where="section 6: the augmented state [x, a] is solved with RK4."),
        Hint(grad_x1, "you returned grad_x1 unchanged."),
    ]


def expect_nll(sub, got, log_p: torch.Tensor, args: tuple, what: str) -> None:
    """cnf_nll's value is -mean(log_p) (the reference's log densities), or minus the mean of the
    learner's own cnf_log_prob on the same arguments: cnf_nll is judged on what it adds."""
    try:
        own = sub.call("cnf_log_prob", *args)
    except Exception:  # noqa: BLE001 - no usable cnf_log_prob: judge against the reference alone
        own = None
    own_ok = isinstance(own, torch.Tensor) and own.shape == log_p.shape
    if own_ok and matches(got, -own.double().mean(), rtol=1e-4, atol=1e-4):
        return
    hints = [Hint(-log_p.sum(), "you summed over the samples; the loss is their mean."),
             Hint(log_p.mean(), "the sign is flipped: the loss is minus the mean log-likelihood."),
             Hint(-log_p.mean() / args[1].shape[1],
                  "do not divide by the dimension: the loss is the mean over samples of -log p1(x).")]
    if own_ok:
        hints += [Hint(-own.sum(), "you summed over the samples; the loss is their mean."),
                  Hint(own.mean(), "the sign is flipped: the loss is minus the mean log-likelihood.")]
    expect_scalar(got, -float(log_p.mean()), what, rtol=1e-4, atol=1e-4, hints=hints)


# ---------------------------------------------------------------------------------------------
# Probes: run next to the learner's code, return plain data
# ---------------------------------------------------------------------------------------------
def probe_log_prob_no_grad(ns, A, x1, n_steps):
    """cnf_log_prob called inside torch.no_grad(), as the notebook does to evaluate a model."""
    with torch.no_grad():
        return ns["cnf_log_prob"](linear_field(A), x1, n_steps, flows.standard_normal_log_prob)


def _flat_gradient(loss, model) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise TypeError("the value carries no gradient to the model's parameters (computed under "
                        "torch.no_grad(), detached, or turned into a Python float?)")
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def probe_log_prob_gradient(ns, seed, x, n_steps):
    """The gradient of sum(cnf_log_prob) with respect to a TimeMLP's parameters, flattened."""
    model = mlp_field(seed)
    return _flat_gradient(ns["cnf_log_prob"](model, x, n_steps, flows.standard_normal_log_prob).sum(), model)


def probe_nll_gradient(ns, seed, x, n_steps):
    """The gradient of cnf_nll with respect to a TimeMLP's parameters, and that of minus the mean of
    the learner's own cnf_log_prob (None if it fails), flattened."""
    model = mlp_field(seed)
    nll = _flat_gradient(ns["cnf_nll"](model, x, n_steps, flows.standard_normal_log_prob), model)
    try:
        own = _flat_gradient(-ns["cnf_log_prob"](model, x, n_steps, flows.standard_normal_log_prob).mean(), model)
    except Exception:  # noqa: BLE001 - judged against the reference alone
        own = None
    return {"nll": nll, "own": own}


def probe_adjoint_times(ns, A, x0, n_steps, grad_x1):
    """The times at which adjoint_grad_x0 evaluates the field, in call order."""
    times = []
    field = linear_field(A)

    def recording_field(x, t):
        times.append(float(t))
        return field(x, t)

    ns["adjoint_grad_x0"](recording_field, x0, n_steps, grad_x1)
    return times


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
X3 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5]])
A_DIAG = [[0.5, 0.0], [0.0, -1.0]]  # e^A = diag(e^0.5, e^-1), tr A = -0.5


@exercise("hutchinson_divergence")
def test_hutchinson_linear(sub, rng):
    """hutchinson_divergence of a linear field is noise^T A noise"""
    A = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
    noise = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    got = sub.call("hutchinson_divergence", Ref(linear_field, A), X3, 0.0, noise)
    expect_close(got, ((noise @ A.T) * noise).sum(1), "hutchinson_divergence(f, x, t, noise) for f(x) = A x",
                 hints=hutchinson_hints(linear_field(A), X3, 0.0, noise))


@exercise("cnf_sample")
def test_cnf_sample_linear(sub, rng):
    """cnf_sample of dx/dt = A x ends at e^A z"""
    f = linear_field(A_DIAG)
    got = sub.call("cnf_sample", Ref(linear_field, A_DIAG), X3, 10)
    expect_close(got, X3 * torch.tensor([math.exp(0.5), math.exp(-1.0)]), "cnf_sample(f, z, n_steps=10)",
                 rtol=1e-4, atol=1e-5, hints=[
                     Hint(ode.integrate(f, X3, 1.0, 0.0, 10, step=ode.rk4_step)[-1],
                          "you integrated from t = 1 to t = 0; sampling runs from the base (t = 0) to the "
                          "data (t = 1)."),
                     Hint(ode.integrate(f, X3, 0.0, 1.0, 10, step=ode.euler_step)[-1],
                          "that is Euler's method; use RK4, like every solve in this notebook.",
                          where="section 1: RK4 from t = 0 to t = 1.")])


@exercise("cnf_log_prob")
def test_cnf_log_prob_linear(sub, rng):
    """cnf_log_prob of a linear flow is the Gaussian pushforward's log density"""
    got = sub.call("cnf_log_prob", Ref(linear_field, A_DIAG), X3, 10, Ref(standard_normal))
    expect_close(got, linear_flow_log_prob(A_DIAG, X3), "cnf_log_prob(f, x1, n_steps=10, base_log_prob)",
                 rtol=1e-4, atol=1e-4,
                 hints=log_prob_hints(linear_field(A_DIAG), X3, 10, flows.standard_normal_log_prob))


@exercise("cnf_nll")
def test_cnf_nll_linear(sub, rng):
    """cnf_nll is the mean negative log-likelihood"""
    args = (Ref(linear_field, A_DIAG), X3, 10, Ref(standard_normal))
    expect_nll(sub, sub.call("cnf_nll", *args), linear_flow_log_prob(A_DIAG, X3), args,
               "cnf_nll(f, x, n_steps=10, base_log_prob)")


FROZEN_DIVERGENCE = ("no gradient flows through the divergence term: it was computed without keeping its own "
                     "graph, so training cannot change the log-determinant (only where the points go).")
FROZEN_WHERE = ("section 2, last paragraph: the divergence is itself a derivative; its create_graph option must be on "
                "whenever gradients are.")


def flat_gradient(loss, model) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def expect_nll_gradient(got, seed: int, x, n_steps: int) -> None:
    """cnf_nll's gradient (``got`` from probe_nll_gradient) is that of the exact -mean log p1, through the
    divergence; or that of minus the mean of the learner's own cnf_log_prob (judged there)."""
    if got["own"] is not None and matches(got["nll"], got["own"], rtol=1e-4, atol=1e-5):
        return
    model = mlp_field(seed)
    base = flows.standard_normal_log_prob
    expected = flat_gradient(-mistaken_log_prob(model, x, n_steps, base, create_graph=True).mean(), model)
    frozen = flat_gradient(-mistaken_log_prob(model, x, n_steps, base).mean(), model)
    expect_close(got["nll"], expected, "the gradient of cnf_nll with respect to the network's parameters",
                 rtol=1e-3, atol=1e-4, hints=[Hint(frozen, FROZEN_DIVERGENCE, where=FROZEN_WHERE)])


@exercise("cnf_nll")
def test_cnf_nll_gradient(sub, rng):
    """cnf_nll is differentiable in the network's parameters, through the divergence too"""
    seed, x = int(torch.randint(0, 2 ** 30, (1,), generator=rng)), torch.randn(6, 2, generator=rng)
    expect_nll_gradient(sub.probe("probe_nll_gradient", seed, x, 2), seed, x, 2)


def expect_adjoint_backwards(times) -> None:
    expect(isinstance(times, list) and len(times) > 0, "adjoint_grad_x0 never evaluated the field f.")
    expect(times[-1] <= 0.25,
           f"the last evaluation of f was at t = {times[-1]:.3g}: the adjoint ODE is solved backwards, from "
           "t = 1 down to t = 0, so the field is last evaluated near t = 0.",
           "Hint: autograd through the forward solver gives the same numbers, but it is not the adjoint "
           "method: solve the augmented state [x, a] from t = 1 back to t = 0.",
           "Where to look: section 6, the augmented ODE for [x, a] and its direction in time.")


@exercise("adjoint_grad_x0")
def test_adjoint_solves_backwards(sub, rng):
    """adjoint_grad_x0 solves the adjoint ODE backwards in time (not autograd through the solver)"""
    A = 0.5 * torch.randn(2, 2, generator=rng)
    x0, g = torch.randn(3, 2, generator=rng), torch.randn(3, 2, generator=rng)
    expect_adjoint_backwards(sub.probe("probe_adjoint_times", A, x0, 4, g))


@exercise("adjoint_grad_x0")
def test_adjoint_linear(sub, rng):
    """adjoint_grad_x0 for dx/dt = A x is e^(A^T) dL/dx1"""
    A = torch.tensor([[0.5, 1.0], [0.0, -1.0]])
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -2.0]])
    got = sub.call("adjoint_grad_x0", Ref(linear_field, A), X3, 10, g)
    expect_close(got, g @ torch.linalg.matrix_exp(A), "adjoint_grad_x0(f, x0, n_steps=10, grad_x1)",
                 rtol=1e-4, atol=1e-4, hints=adjoint_hints(linear_field(A), X3, 10, g))


# ---------------------------------------------------------------------------------------------
# Questions (shared with the hidden tests)
# ---------------------------------------------------------------------------------------------
def hutchinson_variance_hints(jac) -> list[Hint]:
    sym = 0.5 * (jac + jac.transpose(1, 2))
    where = "Isserlis: E[e_i e_j e_k e_l] = d_ij d_kl + d_ik d_jl + d_il d_jk; and e^T J e = e^T S e."
    return [
        Hint(2 * (jac ** 2).sum((1, 2)), "e^T J e only sees the symmetric part S = (J + J^T) / 2 of J: "
                                         "the variance is a norm of S, not of J.", where=where),
        Hint((sym ** 2).sum((1, 2)), "you are missing a factor 2: two of the three pairings of Isserlis' "
                                     "theorem contribute ||S||_F^2 each.", where=where),
        Hint(2 * (sym ** 2).sum((1, 2)) - 2 * (jac.diagonal(dim1=1, dim2=2) ** 2).sum(1),
             "that is the variance for Rademacher noise (e_i^2 = 1 exactly); the question asks for Gaussian "
             "noise, whose fourth moment is 3.", where=where),
    ]


def expect_hutchinson_variance(got, jac, what: str) -> None:
    sym = 0.5 * (jac + jac.transpose(1, 2))
    expect_close(torch.as_tensor(got, dtype=torch.float32), 2 * (sym ** 2).sum((1, 2)), what, rtol=1e-4, atol=1e-5,
                 hints=hutchinson_variance_hints(jac))


def expect_hutchinson_noise(got) -> None:
    expect_choice(got, "b", "predict_hutchinson_noise()", why_not={
        "a": "Gaussian noise has random lengths: e_i^2 varies, which adds the diagonal's share to the variance.",
        "c": "the two have the same mean (both unbiased) but not the same fourth moment: e_i^2 = 1 exactly for "
             "Rademacher noise, so the diagonal of J adds no noise.",
    }, where="the derivation above: which terms of Var[e^T J e] come from E[e_i^4]?")


@exercise("derive_hutchinson_variance", weight=0.5)
def test_derive_hutchinson_variance(sub, rng):
    """the variance of a Hutchinson estimate with Gaussian noise, against the closed form 2 ||S||_F^2"""
    jac = torch.randn(4, 3, 3, generator=rng)
    expect_hutchinson_variance(sub.call("derive_hutchinson_variance", jac), jac, "derive_hutchinson_variance(J)")


@exercise("predict_hutchinson_noise", weight=0.5)
def test_predict_hutchinson_noise(sub, rng):
    """your prediction: which noise gives the lower variance"""
    expect_hutchinson_noise(sub.call("predict_hutchinson_noise"))

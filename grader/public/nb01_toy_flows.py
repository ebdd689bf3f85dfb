"""Notebook 01 (toy flows): its manifest, the argument factories, and the public checks.

Factories run inside the sandbox (they build the vector fields and maps handed to the learner's
functions) and in the grader (to compute the expected answers), so both sides use one definition.
"""
from __future__ import annotations

import math

import torch

from course import flows, ode
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_choice, expect_close, expect_scalar

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "euler_step": 1,
    "heun_step": 1,
    "rk4_step": 2,
    "integrate": 2,
    "convergence_order": 1,
    "divergence": 2,
    "jacobian_logdet": 2,
    "pushforward_log_prob": 2,
    "predict_euler_halving": 0.5,  # questions: predict, then run; derive, then run
    "derive_euler_rotation_radius": 0.5,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "euler_step": "course.ode:euler_step",
    "heun_step": "course.ode:heun_step",
    "rk4_step": "course.ode:rk4_step",
    "integrate": "course.ode:integrate",
    "convergence_order": "course.ode:convergence_order",
    "divergence": "course.flows:divergence",
    "jacobian_logdet": "course.flows:jacobian_logdet",
    "pushforward_log_prob": "course.flows:pushforward_log_prob",
}


# ---------------------------------------------------------------------------------------------
# Factories: vector fields f(x, t), maps g(x), log densities
# ---------------------------------------------------------------------------------------------
def rotation(omega: float = 1.0):
    """f(x, t) = omega (-x2, x1): circles around the origin."""
    return lambda x, t: omega * torch.stack([-x[:, 1], x[:, 0]], dim=1)


def linear_field(A):
    """f(x, t) = A x, for a matrix A (d, d)."""
    A = torch.as_tensor(A, dtype=torch.float32)
    return lambda x, t: x @ A.T


def tanh_field(W, b, c: float = 1.0):
    """f(x, t) = tanh(W x + b) (1 + c t) + cos(t): nonlinear and time-dependent."""
    W, b = torch.as_tensor(W, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return lambda x, t: torch.tanh(x @ W.T + b) * (1 + c * t) + math.cos(t)


def decay_field(k: float = 1.0):
    """f(x, t) = -k t x, with exact solution x(t) = x0 exp(-k t^2 / 2)."""
    return lambda x, t: -k * t * x


def linear_in_time(a: float, b: float):
    """f(x, t) = a + b t in every coordinate."""
    return lambda x, t: torch.full_like(x, a + b * t)


def affine_map(A, b):
    """g(x) = A x + b."""
    A, b = torch.as_tensor(A, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return lambda x: x @ A.T + b


def planar_map(u, w, b: float):
    """g(x) = x + u tanh(w . x + b) (Rezende & Mohamed 2015's planar flow)."""
    u, w = torch.as_tensor(u, dtype=torch.float32), torch.as_tensor(w, dtype=torch.float32)
    return lambda x: x + u * torch.tanh(x @ w + b)[:, None]


def standard_normal():
    return flows.standard_normal_log_prob


def midpoint_step(f, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """The explicit midpoint method (Runge 1895), no exercise of the course: integrate's tests hand it to
    the learner's integrate, so that none of 01's step exercises has to stay in the sandbox's library."""
    return x + dt * f(x + 0.5 * dt * f(x, t), t + 0.5 * dt)


def step_method(name: str):
    """A step function for integrate's tests (never the library's euler_step, heun_step or rk4_step: the
    exercises of this notebook are stubs in the sandbox while it is graded)."""
    return {"midpoint": midpoint_step}[name]



# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
X3 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5]])


@exercise("euler_step")
def test_euler_step_rotation(sub, rng):
    """euler_step on a rotation field"""
    got = sub.call("euler_step", Ref(rotation, 2.0), X3, 0.0, 0.1)
    expected = X3 + 0.1 * 2.0 * torch.stack([-X3[:, 1], X3[:, 0]], 1)
    expect_close(got, expected, "euler_step(f, x, t=0.0, dt=0.1)",
                 hints=[Hint(0.1 * 2.0 * torch.stack([-X3[:, 1], X3[:, 0]], 1),
                             "you returned dt f(x, t) alone: the step must add it to x.")])


@exercise("euler_step")
def test_euler_step_time_dependent(sub, rng):
    """euler_step on dx/dt = a + b t: the slope is taken at the start of the step"""
    a, b = (float(v) for v in torch.rand(2, generator=rng) * 2 - 1)
    x, t, dt = torch.randn(4, 2, generator=rng), 0.5, 0.25
    got = sub.call("euler_step", Ref(linear_in_time, a, b), x, t, dt)
    expect_close(got, x + dt * (a + b * t), f"euler_step(f, x, t={t}, dt={dt}) for f = a + b t", hints=[
        Hint(x + dt * (a + b * (t + dt)), "you evaluated f at t + dt, the end of the step: Euler uses the "
                                          "slope at its start.",
             where="the Euler update in section 2: which time does the slope f(x_n, t_n) use?"),
        Hint(x + (a + b * t), "the slope must be multiplied by dt.",
             where="the Euler update in section 2: the increment is the step size times the slope."),
    ])


@exercise("heun_step")
def test_heun_step_decay(sub, rng):
    """heun_step on dx/dt = -t x"""
    field = decay_field(1.0)
    got = sub.call("heun_step", Ref(decay_field, 1.0), X3, 0.5, 0.2)
    expect_close(got, ode.heun_step(field, X3, 0.5, 0.2), "heun_step(f, x, t=0.5, dt=0.2)")


@exercise("rk4_step")
def test_rk4_step_decay(sub, rng):
    """rk4_step on dx/dt = -t x"""
    got = sub.call("rk4_step", Ref(decay_field, 1.0), X3, 0.5, 0.2)
    expect_close(got, ode.rk4_step(decay_field(1.0), X3, 0.5, 0.2), "rk4_step(f, x, t=0.5, dt=0.2)")


@exercise("integrate")
def test_integrate_shape_and_start(sub, rng):
    """integrate returns the whole path, x0 first"""
    got = sub.call("integrate", Ref(rotation, 1.0), X3, 0.0, 1.0, 4, step=Ref(step_method, "midpoint"))
    expect(hasattr(got, "shape") and tuple(got.shape) == (5, 3, 2),
           f"integrate(f, x0, 0, 1, n_steps=4) should return a path of shape (5, 3, 2) "
           f"(n_steps + 1 points, x0 included); got {tuple(getattr(got, 'shape', ())) or type(got).__name__}.")
    expect_close(got[0], X3, "the first point of the path (it should be x0)")


def euler_path_linear_in_time(x0, a: float, b: float, t0: float, t1: float, n: int, times=None):
    """Euler's path for f = a + b t in closed form: x_i = x0 + sum_{j < i} dt (a + b s_j), s_j the step times."""
    dt = (t1 - t0) / n
    times = [t0 + j * dt for j in range(n)] if times is None else times
    increments = torch.tensor([0.0] + [dt * (a + b * s) for s in times]).cumsum(0)  # (n + 1,)
    return x0[None] + increments[:, None, None]


@exercise("integrate")
def test_integrate_time_grid(sub, rng):
    """integrate (midpoint steps) on dx/dt = a + b t: each step at its own time, steps of (t1 - t0) / n_steps"""
    a, b = (float(v) for v in torch.rand(2, generator=rng) + 0.5)
    x0, n, t0, t1 = torch.randn(3, 2, generator=rng), 5, 0.5, 2.0
    got = sub.call("integrate", Ref(linear_in_time, a, b), x0, t0, t1, n, step=Ref(step_method, "midpoint"))
    # the midpoint step on f = a + b t is Euler's with the slope taken half a step later
    dt, dt_wrong = (t1 - t0) / n, (t1 - t0) / (n + 1)
    expected = euler_path_linear_in_time(x0, a, b, t0, t1, n, times=[t0 + (j + 0.5) * dt for j in range(n)])
    expect_close(got, expected, f"integrate(f, x0, t0={t0}, t1={t1}, n_steps={n}, step=midpoint_step) for f = a + b t",
                 hints=[
                     Hint(euler_path_linear_in_time(x0, a, b, t0, t0 + n * dt_wrong, n,
                                                    times=[t0 + (j + 0.5) * dt_wrong for j in range(n)]),
                          "the path stops short of t1: dt should be (t1 - t0) / n_steps.",
                          where="section 3: n_steps steps of equal size cover [t0, t1] exactly."),
                     Hint(euler_path_linear_in_time(x0, a, b, t0, t1, n, times=[t0 + 0.5 * dt] * n),
                          "every step was given the start time t0: each step must get its own time t0 + i dt.",
                          where="section 3: the grid t_i = t0 + i dt; step i starts at t_i."),
                 ])


@exercise("convergence_order")
def test_convergence_order_exact_power(sub, rng):
    """convergence_order on errors exactly C h^3"""
    hs = [0.1, 0.05, 0.025, 0.0125]
    got = sub.call("convergence_order", hs, [2.0 * h ** 3 for h in hs])
    expect_scalar(got, 3.0, "convergence_order(h, 2 h^3)", rtol=1e-3)


@exercise("convergence_order")
def test_convergence_order_noisy_errors(sub, rng):
    """convergence_order fits a straight line through all the noisy log-log points"""
    hs = [0.2 / 2 ** i for i in range(5)]
    noise = (torch.rand(5, generator=rng) * 0.6 + 0.7).tolist()
    errors = [h ** 2 * e for h, e in zip(hs, noise)]
    u = torch.log(torch.tensor(hs, dtype=torch.float64))
    v = torch.log(torch.tensor(errors, dtype=torch.float64))
    slope = float(((u - u.mean()) * (v - v.mean())).sum() / ((u - u.mean()) ** 2).sum())  # least squares
    got = sub.call("convergence_order", hs, errors)
    expect_scalar(got, slope, "convergence_order(step_sizes, errors) on noisy errors", rtol=1e-3, hints=[
        Hint(math.log(errors[1] / errors[0]) / math.log(hs[1] / hs[0]),
             "you used the first two points only: with noisy errors the order is the least-squares slope "
             "through all of them.", where="section 4: the least-squares formula sums over every i."),
        Hint(1 / slope, "you regressed log(h) on log(error): the slope is d log(error) / d log(h).",
             where="section 4: u_i = log h_i is the x-axis, v_i = log e_i the y-axis."),
    ])


@exercise("divergence")
def test_divergence_linear(sub, rng):
    """divergence of a linear field is the trace of its matrix"""
    A = [[1.0, 2.0], [3.0, -4.0]]
    got = sub.call("divergence", Ref(linear_field, A), X3, 0.0)
    expect_close(got, torch.full((3,), -3.0), "divergence(f, x, t) for f(x) = A x",
                 hints=[Hint(torch.full((3,), 2.0), "you summed every entry of the Jacobian; "
                                                    "the divergence is its trace (diagonal only).")])


@exercise("jacobian_logdet")
def test_jacobian_logdet_affine(sub, rng):
    """log |det| of an affine map is log |det A| for every sample"""
    A = [[2.0, 1.0], [0.5, -1.0]]  # det = -2.5
    got = sub.call("jacobian_logdet", Ref(affine_map, A, [0.0, 1.0]), X3)
    expect_close(got, torch.full((3,), math.log(2.5)), "jacobian_logdet(g, x) for g(x) = A x + b",
                 hints=[Hint(torch.full((3,), -2.5), "you returned the determinant: take log |det|.")])


@exercise("pushforward_log_prob")
def test_pushforward_scaling(sub, rng):
    """a standard normal scaled by 2 has log density log N(y/2) - 2 log 2"""
    got = sub.call("pushforward_log_prob", X3, Ref(affine_map, [[0.5, 0.0], [0.0, 0.5]], [0.0, 0.0]),
                   Ref(standard_normal))
    expected = flows.standard_normal_log_prob(X3 / 2) - 2 * math.log(2)
    expect_close(got, expected, "pushforward_log_prob(y, g_inverse, base_log_prob)",
                 hints=[Hint(flows.standard_normal_log_prob(X3 / 2) + 2 * math.log(2),
                             "the log-determinant has the wrong sign: use the Jacobian of g_inverse at y, "
                             "and add it.")])


# ---------------------------------------------------------------------------------------------
# Questions (shared with the hidden tests)
# ---------------------------------------------------------------------------------------------
EULER_HALVING_WHY_NOT = {
    "b": "a quarter is what a second-order method gains (Heun's): Euler's global error is proportional to dt.",
    "c": "the error does depend on dt: each step's error is about dt^2, and there are 1/dt of them.",
    "d": "a factor 16 is what RK4, a fourth-order method, gains.",
}


def expect_euler_halving(got) -> None:
    expect_choice(got, "a", "predict_euler_halving()", why_not=EULER_HALVING_WHY_NOT,
                  where="section 2 (Euler is a first-order method) and section 4 (error ~ C h^p).")


def euler_rotation_radius_hints(r0, dt: float, n: int) -> list[Hint]:
    return [
        Hint(r0, "Euler does not keep the circle: each step moves along the tangent, which leaves the circle.",
             where="one Euler step on the rotation: the step dt (-x2, x1) is orthogonal to x (Pythagoras)."),
        Hint(r0 * (1 + dt ** 2) ** n, "(1 + dt^2) is the factor of the squared radius; the radius grows by its "
                                      "square root per step.", where="|x + dt (-x2, x1)|^2 = |x|^2 + dt^2 |x|^2."),
        Hint(r0 * (1 + dt) ** n, "the step is orthogonal to x, so the lengths add as in Pythagoras, not linearly.",
             where="|x + dt (-x2, x1)|^2 = |x|^2 + dt^2 |x|^2."),
    ]


@exercise("predict_euler_halving", weight=0.5)
def test_predict_euler_halving(sub, rng):
    """your prediction: Euler's error at a fixed time when dt is halved"""
    expect_euler_halving(sub.call("predict_euler_halving"))


@exercise("derive_euler_rotation_radius", weight=0.5)
def test_derive_euler_rotation_radius(sub, rng):
    """the radius after n Euler steps on a rotation, against the closed form"""
    r0 = 0.5 + torch.rand(4, generator=rng) * 2
    dt, n = 0.1 + 0.2 * float(torch.rand(1, generator=rng)), 7
    got = sub.call("derive_euler_rotation_radius", r0, dt, n)
    expect_close(torch.as_tensor(got, dtype=torch.float32), r0 * (1 + dt ** 2) ** (n / 2),
                 f"derive_euler_rotation_radius(r0, dt={dt:.3f}, n_steps={n})", rtol=1e-4,
                 hints=euler_rotation_radius_hints(r0, dt, n))

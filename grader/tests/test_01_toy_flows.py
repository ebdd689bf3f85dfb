"""Hidden tests of notebook 01 (toy flows). Inputs are drawn at grading time from ``rng``;
expected answers come from the course library (the reference) and closed forms."""
from __future__ import annotations

import math

import torch

from course import flows, ode
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close, expect_scalar
from grader.public.nb01_toy_flows import (affine_map, decay_field, euler_rotation_radius_hints, expect_euler_halving,
                                          linear_in_time, planar_map, rotation, standard_normal, step_method,
                                          tanh_field)


def random_tanh_field(rng, d=2):
    return Ref(tanh_field, torch.randn(d, d, generator=rng), torch.randn(d, generator=rng), 0.7)


def points(rng, n=32, d=2):
    return torch.randn(n, d, generator=rng)


# -- euler_step ------------------------------------------------------------------------------
@exercise("euler_step")
def test_euler_step_nonlinear(sub, rng):
    """euler_step on a random nonlinear, time-dependent field"""
    ref, x = random_tanh_field(rng), points(rng)
    t, dt = 0.3, 0.05
    f = build(ref)
    got = sub.call("euler_step", ref, x, t, dt)
    expect_close(got, x + dt * f(x, t), "euler_step(f, x, t, dt)", hints=[
        Hint(x + dt * f(x, t + dt), "you evaluated f at t + dt: Euler uses the slope at the start, f(x, t)."),
        Hint(x + f(x, t), "the slope must be multiplied by dt."),
        Hint(dt * f(x, t), "you returned only the increment dt f(x, t): add it to x."),
    ])


@exercise("euler_step")
def test_euler_step_negative_dt(sub, rng):
    """euler_step backwards in time (dt < 0) in 3 dimensions"""
    ref, x = random_tanh_field(rng, d=3), points(rng, d=3)
    got = sub.call("euler_step", ref, x, 1.0, -0.1)
    expect_close(got, x - 0.1 * build(ref)(x, 1.0), "euler_step(f, x, t=1, dt=-0.1)")


# -- heun_step --------------------------------------------------------------------------------
@exercise("heun_step")
def test_heun_step_nonlinear(sub, rng):
    """heun_step on a random nonlinear, time-dependent field"""
    ref, x = random_tanh_field(rng), points(rng)
    t, dt = 0.2, 0.1
    f = build(ref)
    k1 = f(x, t)
    k2 = f(x + dt * k1, t + dt)
    midpoint = x + dt * f(x + 0.5 * dt * k1, t + 0.5 * dt)
    expect_close(sub.call("heun_step", ref, x, t, dt), x + 0.5 * dt * (k1 + k2), "heun_step(f, x, t, dt)",
                 hints=[
                     Hint(x + 0.5 * dt * (k1 + f(x + dt * k1, t)),
                          "the second slope must be taken at time t + dt, not t."),
                     Hint(x + dt * (k1 + k2), "average the two slopes: multiply their sum by dt / 2."),
                     Hint(midpoint, "that is the midpoint method; Heun averages the slopes at both ends."),
                 ])


@exercise("heun_step")
def test_heun_is_second_order(sub, rng):
    """heun_step is exact for dx/dt = a + b t"""
    x = points(rng, 8)
    got = sub.call("heun_step", Ref(linear_in_time, 0.7, -1.3), x, 0.25, 0.5)
    expect_close(got, x + 0.7 * 0.5 - 1.3 * (0.75 ** 2 - 0.25 ** 2) / 2,
                 "heun_step(f, x, 0.25, 0.5) for f = a + b t (the trapezoid rule is exact here)")


# -- rk4_step --------------------------------------------------------------------------------
@exercise("rk4_step")
def test_rk4_step_nonlinear(sub, rng):
    """rk4_step on a random nonlinear, time-dependent field"""
    ref, x = random_tanh_field(rng), points(rng)
    t, dt = 0.4, 0.2
    f = build(ref)
    k1 = f(x, t)
    k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt)
    k3_wrong = f(x + 0.5 * dt * k1, t + 0.5 * dt)
    k4_wrong = f(x + dt * k3_wrong, t + dt)
    expect_close(sub.call("rk4_step", ref, x, t, dt), ode.rk4_step(f, x, t, dt), "rk4_step(f, x, t, dt)",
                 hints=[
                     Hint(x + dt / 6 * (k1 + 2 * k2 + 2 * k3_wrong + k4_wrong),
                          "k3 must use k2: x + dt/2 * k2."),
                     Hint(x + dt / 4 * (k1 + 2 * k2 + 2 * f(x + 0.5 * dt * k2, t + 0.5 * dt)
                                        + f(x + dt * f(x + 0.5 * dt * k2, t + 0.5 * dt), t + dt)),
                          "the weights 1, 2, 2, 1 are divided by 6, not 4."),
                 ])


@exercise("rk4_step")
def test_rk4_step_exact_solution(sub, rng):
    """rk4_step error on dx/dt = -t x is tiny (fourth order)"""
    x = points(rng, 16)
    got = sub.call("rk4_step", Ref(decay_field, 1.0), x, 0.3, 0.1)
    exact = x * math.exp(-(0.4 ** 2 - 0.3 ** 2) / 2)
    expect_close(got, exact, "rk4_step(f, x, 0.3, 0.1) against the exact solution", rtol=1e-5, atol=1e-6)


def frozen_time_path(f, x0, t0, t1, n, step):
    """What a loop that passes t0 to every step computes."""
    dt = (t1 - t0) / n
    path = [x0]
    for _ in range(n):
        path.append(step(f, path[-1], t0, dt))
    return torch.stack(path)


# -- integrate --------------------------------------------------------------------------------
@exercise("integrate")
def test_integrate_path(sub, rng):
    """integrate with the midpoint method on a time-dependent field: the whole path"""
    ref, x0 = random_tanh_field(rng), points(rng)
    n = int(torch.randint(3, 9, (1,), generator=rng))
    midpoint = step_method("midpoint")
    expected = ode.integrate(build(ref), x0, 0.25, 1.0, n, step=midpoint)
    got = sub.call("integrate", ref, x0, 0.25, 1.0, n, step=Ref(step_method, "midpoint"))
    expect_close(got, expected, f"integrate(f, x0, t0=0.25, t1=1.0, n_steps={n}, step=midpoint_step)", hints=[
        Hint(expected[1:], "the path should start with x0 itself: n_steps + 1 points."),
        Hint(ode.integrate(build(ref), x0, 0.25, 0.25 + n * 0.75 / (n + 1), n, step=midpoint),
             "dt should be (t1 - t0) / n_steps."),
        Hint(frozen_time_path(build(ref), x0, 0.25, 1.0, n, midpoint),
             "each step must get its own time t0 + i dt, not t0 every time."),
    ])


@exercise("integrate")
def test_integrate_backwards(sub, rng):
    """integrate from t0 = 1 back to t1 = 0 (dt < 0) with the midpoint method"""
    ref, x0 = random_tanh_field(rng), points(rng)
    midpoint = step_method("midpoint")
    expected = ode.integrate(build(ref), x0, 1.0, 0.0, 5, step=midpoint)
    got = sub.call("integrate", ref, x0, 1.0, 0.0, 5, step=Ref(step_method, "midpoint"))
    expect_close(got, expected, "integrate(f, x0, t0=1, t1=0, n_steps=5, step=midpoint_step)", hints=[
        Hint(ode.integrate(build(ref), x0, 0.0, 1.0, 5, step=midpoint),
             "time must run from t0 to t1, here backwards (dt < 0)."),
    ])


# -- convergence_order -----------------------------------------------------------------------
@exercise("convergence_order")
def test_convergence_order_noisy(sub, rng):
    """convergence_order is the least-squares slope on noisy log-log data"""
    p = float(torch.rand(1, generator=rng)) * 3 + 1
    hs = [0.2 / 2 ** i for i in range(6)]
    noise = (torch.rand(6, generator=rng) * 0.4 + 0.8).tolist()
    errors = [3.0 * h ** p * e for h, e in zip(hs, noise)]
    expected = ode.convergence_order(hs, errors)
    got = sub.call("convergence_order", hs, errors)
    expect_scalar(got, expected, "convergence_order(step_sizes, errors)", rtol=1e-3, hints=[
        Hint(1 / expected, "you regressed log(h) on log(error): the slope is d log(error) / d log(h)."),
        Hint(math.log(errors[1] / errors[0]) / math.log(hs[1] / hs[0]),
             "use a least-squares fit through all the points, not the first two."),
    ])


# -- divergence -------------------------------------------------------------------------------
@exercise("divergence")
def test_divergence_nonlinear(sub, rng):
    """divergence of a nonlinear field in 3 dimensions"""
    ref, x = random_tanh_field(rng, 3), points(rng, 16, 3)
    f = build(ref)
    expected = flows.divergence(f, x, 0.6)
    jac = flows.batch_jacobian(lambda z: f(z, 0.6), x)
    expect_close(sub.call("divergence", ref, x, 0.6), expected, "divergence(f, x, t)", rtol=1e-4, atol=1e-5,
                 hints=[Hint(jac.sum((1, 2)), "you summed every entry of the Jacobian; the divergence is its trace."),
                        Hint(jac[:, 0, 0], "sum d f_i / d x_i over every dimension i, not only the first.")])


@exercise("divergence")
def test_divergence_keeps_inputs(sub, rng):
    """divergence works on inputs that do not require grad, and returns shape (N,)"""
    x = points(rng, 5)
    got = sub.call("divergence", Ref(rotation, 3.0), x, 0.0)
    expect_close(got, torch.zeros(5), "divergence of a rotation (it is 0 everywhere)")


# -- jacobian_logdet -------------------------------------------------------------------------
@exercise("jacobian_logdet")
def test_jacobian_logdet_planar(sub, rng):
    """log |det| of a planar flow, some samples with negative determinant"""
    u = torch.randn(2, generator=rng) * 2
    w = torch.randn(2, generator=rng) * 2
    ref = Ref(planar_map, u, w, 0.3)
    x = points(rng)
    g = build(ref)
    expected = flows.jacobian_logdet(g, x)
    jac = flows.batch_jacobian(g, x)
    expect_close(sub.call("jacobian_logdet", ref, x), expected, "jacobian_logdet(g, x)", rtol=1e-4, atol=1e-4,
                 hints=[Hint(torch.det(jac), "you returned det; take log |det|."),
                        Hint(torch.log(jac.diagonal(dim1=1, dim2=2).abs()).sum(1),
                             "the sum of log |diagonal| is log |det| only for triangular Jacobians.")])


# -- pushforward_log_prob --------------------------------------------------------------------
@exercise("pushforward_log_prob")
def test_pushforward_affine(sub, rng):
    """the pushforward of a standard normal through a random affine map"""
    A = torch.randn(2, 2, generator=rng) + 2 * torch.eye(2)
    b = torch.randn(2, generator=rng)
    A_inv = torch.linalg.inv(A)
    inverse = Ref(affine_map, A_inv, -(A_inv @ b))
    y = points(rng) * 2
    g_inv = build(inverse)
    base = flows.standard_normal_log_prob
    logdet = torch.linalg.slogdet(A_inv).logabsdet
    expected = base(g_inv(y)) + logdet
    got = sub.call("pushforward_log_prob", y, inverse, Ref(standard_normal))
    expect_close(got, expected, "pushforward_log_prob(y, g_inverse, base_log_prob)", rtol=1e-4, atol=1e-4,
                 hints=[Hint(base(g_inv(y)) - logdet, "the log-determinant term has the wrong sign."),
                        Hint(base(g_inv(y)), "the log-determinant of the Jacobian of g_inverse is missing."),
                        Hint(base(y) + logdet, "evaluate the base density at x = g_inverse(y), not at y.")])


@exercise("pushforward_log_prob")
def test_pushforward_integrates_to_one(sub, rng):
    """a pushforward density through a planar flow still integrates to 1 (on a grid)"""
    lim, n = 7.0, 120
    xs = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    got = sub.call("pushforward_log_prob", grid, Ref(planar_map, [0.5, 0.0], [1.0, 0.0], 0.0),
                   Ref(standard_normal))
    expect(hasattr(got, "shape") and tuple(got.shape) == (n * n,),
           f"pushforward_log_prob should return one log density per point, shape ({n * n},).")
    mass = float(torch.exp(got.double()).sum() * (2 * lim / (n - 1)) ** 2)
    expect(abs(mass - 1) < 0.05, f"exp(log density) integrates to {mass:.3f} over the plane, not 1.",
           "Hint: check the sign of the log-determinant and where the base density is evaluated.")


# -- questions --------------------------------------------------------------------------------
@exercise("predict_euler_halving", weight=0.5)
def test_predict_euler_halving_hidden(sub, rng):
    """your prediction: Euler's error at a fixed time when dt is halved"""
    expect_euler_halving(sub.call("predict_euler_halving"))


@exercise("derive_euler_rotation_radius", weight=0.5)
def test_derive_euler_rotation_radius_hidden(sub, rng):
    """the radius after n Euler steps on a rotation, on other inputs (a backwards step too)"""
    r0 = 0.1 + torch.rand(6, generator=rng) * 3
    n = int(torch.randint(2, 30, (1,), generator=rng))
    dt = -(0.05 + 0.3 * float(torch.rand(1, generator=rng)))
    got = sub.call("derive_euler_rotation_radius", r0, dt, n)
    expect_close(torch.as_tensor(got, dtype=torch.float32), r0 * (1 + dt ** 2) ** (n / 2),
                 f"derive_euler_rotation_radius(r0, dt={dt:.3f}, n_steps={n})", rtol=1e-4,
                 hints=euler_rotation_radius_hints(r0, dt, n))

"""Continuous normalizing flows (notebook 02): densities, samples and gradients of an ODE flow.

Time convention: t runs from 0 (the base distribution, N(0, I)) to 1 (the data), as a Python
float. Sampling solves dx/dt = f(x, t) forwards from t = 0 to 1; the density of a data point
solves the same ODE backwards from t = 1 to 0. Every solve is RK4 on a uniform grid, through
``course.ode.integrate``.

The instantaneous change of variables (Chen et al. 2018, Theorem 1):
    d log p_t(x_t) / dt = -div f(x_t, t),   so   log p_1(x_1) = log p_0(x_0) - int_0^1 div f(x_t, t) dt.
Hutchinson's trace estimator (Grathwohl et al. 2019, FFJORD): div f = E[eps^T (df/dx) eps].
The adjoint method (Chen et al. 2018, Section 2): a(t) = dL/dx(t) solves da/dt = -a^T df/dx
backwards from a(1) = dL/dx(1).
"""
from __future__ import annotations

import torch

from course.flows import divergence
from course.ode import integrate, rk4_step


def field_and_vjp(f, x: torch.Tensor, t: float, v: torch.Tensor, create_graph: bool = False):
    """f(x, t) and the vector-Jacobian product v^T (df/dx), row by row: two (N, d) tensors.

    One forward and one backward pass, whatever d: the reason Hutchinson's estimator and the
    adjoint method scale to high dimensions.
    """
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        fx = f(x, t)
        # d(sum fx * v)/dx = v^T df/dx; the same as grad_outputs=v, without the lazy import of sympy
        # that a tensor grad_outputs costs on first use in torch 2.x
        (v_jac,) = torch.autograd.grad((fx * v).sum(), x, create_graph=create_graph)
    return fx, v_jac


def hutchinson_divergence(f, x: torch.Tensor, t: float, noise: torch.Tensor,
                          create_graph: bool = False) -> torch.Tensor:
    """The unbiased estimate noise^T (df/dx) noise of div f, one per row: (N,)."""
    _, noise_jac = field_and_vjp(f, x, t, noise, create_graph)
    return (noise_jac * noise).sum(-1)


def cnf_log_prob(f, x1: torch.Tensor, n_steps: int, base_log_prob) -> torch.Tensor:
    """log p_1(x1) = log p_0(x0) - int_0^1 div f dt: (N,).

    The augmented state [x, l] solves dx/dt = f(x, t), dl/dt = div f(x, t) from t = 1, where
    [x, l] = [x1, 0], back to t = 0, where l = int_1^0 div f dt = -int_0^1 div f dt. The result is
    differentiable in f's parameters whenever autograd is on (the training loss needs that).
    """
    d = x1.shape[1]
    create_graph = torch.is_grad_enabled()

    def augmented(state, t):  # (N, d + 1) -> (N, d + 1)
        x = state[:, :d]
        return torch.cat([f(x, t), divergence(f, x, t, create_graph=create_graph)[:, None]], dim=1)

    state1 = torch.cat([x1, torch.zeros_like(x1[:, :1])], dim=1)
    state0 = integrate(augmented, state1, 1.0, 0.0, n_steps, step=rk4_step)[-1]
    return base_log_prob(state0[:, :d]) + state0[:, d]


def cnf_sample(f, z: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Base samples z pushed from t = 0 to t = 1 with RK4: the end points (N, d)."""
    return integrate(f, z, 0.0, 1.0, n_steps, step=rk4_step)[-1]


def cnf_nll(f, x: torch.Tensor, n_steps: int, base_log_prob) -> torch.Tensor:
    """The mean negative log-likelihood of the data x under the CNF: the training loss, 0-dim."""
    return -cnf_log_prob(f, x, n_steps, base_log_prob).mean()


def adjoint_grad_x0(f, x0: torch.Tensor, n_steps: int, grad_x1: torch.Tensor) -> torch.Tensor:
    """dL/dx0 given dL/dx1 for x1 = the RK4 solution at t = 1 from x0 at t = 0: (N, d).

    Solve forwards for x1 without keeping a graph, then solve the augmented state [x, a] with
    dx/dt = f(x, t), da/dt = -a^T df/dx backwards from [x1, dL/dx1] at t = 1 to t = 0. No autograd
    graph outlives one step, so memory does not grow with n_steps (Chen et al. 2018, Algorithm 1,
    without the parameter gradients).
    """
    d = x0.shape[1]
    with torch.no_grad():
        x1 = cnf_sample(f, x0, n_steps)

    def augmented(state, t):  # (N, 2 d) -> (N, 2 d)
        fx, a_jac = field_and_vjp(f, state[:, :d], t, state[:, d:])
        return torch.cat([fx, -a_jac], dim=1)

    with torch.no_grad():
        state0 = integrate(augmented, torch.cat([x1, grad_x1], dim=1), 1.0, 0.0, n_steps, step=rk4_step)[-1]
    return state0[:, d:]

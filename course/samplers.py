"""ODE samplers for an EDM denoiser (notebook 09): Euler, Heun (EDM Algorithms 1-2) and DPM-Solver++(2M).

Time convention (``course.edm``): x = x0 + sigma n; a denoiser ``D(x, sigma)`` (sigma a float tensor
(B,)) predicts x0; the probability-flow ODE is dx/dsigma = (x - D(x, sigma)) / sigma. ``sigmas`` is a
decreasing 1-D tensor ending in 0 (``course.edm.karras_sigmas``); x starts as x0 + sigma_0 n, in
practice sigma_0 n.

The loop of every sampler is written once (:func:`sample_loop`, k-diffusion style): a sampler is a
*step* ``step(D, x, sigma_from, sigma_to, state) -> x`` walked over consecutive pairs of sigmas, with a
dict ``state`` that a multistep method uses to remember its previous prediction.

NFE (network evaluations) for n = len(sigmas) - 1 steps: Euler n, Heun 2n - 1 (no correction on the
last step, to sigma = 0, where the derivative is undefined), DPM-Solver++(2M) n.

Which diffusers scheduler (Karras sigmas, ``use_karras_sigmas=True``) matches which sampler:
Euler -> ``EulerDiscreteScheduler``; Heun -> ``HeunDiscreteScheduler``; DPM-Solver++(2M) ->
``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)`` (tests/test_edm_library.py).
"""
from __future__ import annotations

import math

import torch

from course.batching import append_dims, randn_like, time_batch
from course.edm import pf_ode_derivative


def sample_loop(step, D, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The one loop: x <- step(D, x, sigmas[i], sigmas[i + 1], state) for i = 0..n-1, without gradients."""
    state: dict = {}
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            x = step(D, x, sigmas[i], sigmas[i + 1], state)
    return x


def euler_step(D, x: torch.Tensor, sigma_from, sigma_to, state: dict | None = None) -> torch.Tensor:
    """One Euler step of the PF-ODE (EDM Algorithm 1 without the correction):
    x + (sigma_to - sigma_from) (x - D(x, sigma_from)) / sigma_from."""
    return x + (float(sigma_to) - float(sigma_from)) * pf_ode_derivative(D, x, time_batch(float(sigma_from), x))


def heun_step(D, x: torch.Tensor, sigma_from, sigma_to, state: dict | None = None) -> torch.Tensor:
    """One step of Heun's method on the PF-ODE (EDM Algorithm 1, lines 4-8): the one copy of Heun in the
    course (09's samplers and 10's consistency-distillation teacher, ``course.consistency.teacher_step``).

    d = (x - D(x, s)) / s;  x_E = x + (s' - s) d;  if s' > 0: d' = (x_E - D(x_E, s')) / s' and
    x' = x + (s' - s) (d + d') / 2, else x' = x_E (the derivative at sigma = 0 does not exist).
    ``sigma_from`` and ``sigma_to`` are floats, 0-dim or (B,) tensors: one pair of levels for the batch
    (a sampler) or one per sample (a distillation batch mixes pairs). Two NFE, one on a step to 0
    (samples whose sigma_to is 0 keep the Euler point).
    """
    s, s_next = time_batch(sigma_from, x), time_batch(sigma_to, x)  # (B,)
    step = append_dims(s_next - s, x)
    d = pf_ode_derivative(D, x, s)
    x_euler = x + step * d
    last = s_next == 0  # (B,)
    if bool(last.all()):
        return x_euler
    d_next = pf_ode_derivative(D, x_euler, torch.where(last, s, s_next))  # s on a step to 0: unused, finite
    return torch.where(append_dims(last, x), x_euler, x + step * 0.5 * (d + d_next))


def dpmpp_2m_step(D, x: torch.Tensor, sigma_from, sigma_to, state: dict) -> torch.Tensor:
    """One step of DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2) in lambda = -log sigma.

    With h = lambda' - lambda = log(s / s') and the denoised D_i = D(x, s):
    x' = (s' / s) x - expm1(-h) D_hat, where D_hat = D_i on the first step and on the step to sigma = 0
    (first order: DDIM), else D_hat = (1 + 1 / (2 r)) D_i - 1 / (2 r) D_{i-1} with r = h_{i-1} / h_i.
    ``state`` keeps D_{i-1} and h_{i-1}.
    """
    s, s_next = float(sigma_from), float(sigma_to)
    denoised = D(x, time_batch(s, x))
    old, h_last = state.get("denoised"), state.get("h")
    if s_next == 0:
        x_next = denoised  # h = inf: (s'/s) x -> 0, -expm1(-h) -> 1
    else:
        h = math.log(s / s_next)
        if old is None:
            d_hat = denoised
        else:
            r = h_last / h
            d_hat = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
        x_next = (s_next / s) * x - math.expm1(-h) * d_hat
        state["h"] = h
    state["denoised"] = denoised
    return x_next


def euler_sampler(D, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Euler's method on the PF-ODE over ``sigmas`` (EDM Algorithm 1 without Heun's correction); n NFE."""
    return sample_loop(euler_step, D, x, sigmas)


def churn_gamma(sigma: float, n_steps: int, s_churn: float, s_tmin: float = 0.0,
                s_tmax: float = float("inf")) -> float:
    """EDM Algorithm 2, line 4: gamma_i = min(S_churn / N, sqrt(2) - 1) for sigma_i in [S_tmin, S_tmax], else 0."""
    if s_churn <= 0 or not s_tmin <= sigma <= s_tmax:
        return 0.0
    return min(s_churn / n_steps, math.sqrt(2) - 1)


def heun_sampler(D, x: torch.Tensor, sigmas: torch.Tensor, s_churn: float = 0.0, *,
                 s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """EDM's Heun sampler: Algorithm 1 (s_churn = 0, deterministic) or Algorithm 2 (stochastic churn).

    With churn each step first raises the noise level to sigma_hat = sigma (1 + gamma) by adding fresh
    noise, x_hat = x + sqrt(sigma_hat^2 - sigma^2) S_noise eps, then takes a Heun step from sigma_hat
    to the next sigma: the added noise corrects errors accumulated earlier (EDM section 4). NFE 2n - 1.
    """
    n_steps = len(sigmas) - 1

    def step(D, x, sigma_from, sigma_to, state):
        s = float(sigma_from)
        gamma = churn_gamma(s, n_steps, s_churn, s_tmin, s_tmax)
        if gamma > 0:
            s_hat = s * (1 + gamma)
            x = x + math.sqrt(s_hat ** 2 - s ** 2) * s_noise * randn_like(x, generator)
            s = s_hat
        return heun_step(D, x, s, sigma_to)

    return sample_loop(step, D, x, sigmas)


def dpmpp_2m_sampler(D, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): second-order multistep in log sigma, one NFE per
    step, first step (and the step to sigma = 0) first order."""
    return sample_loop(dpmpp_2m_step, D, x, sigmas)


def ddim_sigma_sampler(D, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """DDIM (eta = 0) in EDM's variables: x' = D + (s' / s) (x - D), i.e. x0_hat plus the predicted noise
    rescaled to the next level (Song et al. 2020, eq. 12 divided by sqrt(alpha_bar)). Algebraically
    Euler's step and DPM-Solver++'s first-order step; kept separate so the notebook can measure that."""

    def step(D, x, sigma_from, sigma_to, state):
        x0 = D(x, time_batch(float(sigma_from), x))
        return x0 + (float(sigma_to) / float(sigma_from)) * (x - x0)

    return sample_loop(step, D, x, sigmas)


class CountingDenoiser:
    """Wraps D and counts its evaluations (NFE) and the samples it saw."""

    def __init__(self, D):
        self.D, self.nfe = D, 0

    def __call__(self, x, sigma):
        self.nfe += 1
        return self.D(x, sigma)


def nfe(sampler: str, n_steps: int) -> int:
    """Network evaluations of ``sampler`` ('euler', 'heun', 'dpmpp_2m', 'ddim') with n_steps steps."""
    return 2 * n_steps - 1 if sampler == "heun" else n_steps


def steps_for_nfe(sampler: str, budget: int) -> int:
    """The largest number of steps whose NFE fits ``budget`` (Heun: (budget + 1) // 2)."""
    return (budget + 1) // 2 if sampler == "heun" else budget


def reference_solution(D, x: torch.Tensor, sigma_from: float, sigma_to: float, n_steps: int = 2000) -> torch.Tensor:
    """The PF-ODE's solution from sigma_from to sigma_to > 0 in float64: n_steps // 2 classical RK4 steps
    (``course.ode.rk4_step``, 4th order; as many evaluations of D as n_steps Heun steps), evenly spaced in
    log sigma: the "exact" solution the orders are measured against. It uses none of notebook 09's own
    exercises (their implementations are stubs in 09's staged bundle and sandbox)."""
    from course.ode import rk4_step

    n_rk4 = max(1, n_steps // 2)
    sigmas = torch.exp(torch.linspace(math.log(sigma_from), math.log(sigma_to), n_rk4 + 1, dtype=torch.float64))
    f = lambda y, sigma: pf_ode_derivative(D, y, float(sigma))  # noqa: E731 - dx/dsigma (EDM eq. 3)
    x = x.double()
    with torch.no_grad():
        for i in range(n_rk4):
            x = rk4_step(f, x, float(sigmas[i]), float(sigmas[i + 1] - sigmas[i]))
    return x


__all__ = [
    "sample_loop", "euler_step", "heun_step", "dpmpp_2m_step", "euler_sampler", "churn_gamma", "heun_sampler",
    "dpmpp_2m_sampler", "ddim_sigma_sampler", "CountingDenoiser", "nfe", "steps_for_nfe", "reference_solution",
]

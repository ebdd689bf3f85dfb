"""Score SDEs (notebook 05): the VP and VE SDEs, their marginals, reverse-time samplers and the
probability-flow ODE (Song et al. 2021, "Score-Based Generative Modeling through Stochastic
Differential Equations", arXiv:2011.13456).

Time convention (Song et al.): t in [0, 1], t = 0 is data, t = 1 is noise. Times are float tensors
of shape (B,), one per sample of x (B, d). An ``sde(x, t)`` returns ``(drift, diffusion)``: the drift
f(x, t) with x's shape and the diffusion coefficient g(t) of shape (B,), for the forward SDE
    dx = f(x, t) dt + g(t) dw.
A ``score_fn(x, t)`` returns grad_x log p_t(x) with x's shape.

VP SDE (eq. 11 of Song et al.): f = -1/2 beta(t) x, g = sqrt(beta(t)), beta(t) = beta_min + t (beta_max - beta_min);
its marginal is x_t = mean_coef(t) x0 + std(t) z (eq. 29 / Appendix B).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from course import flows, ode
from course.batching import append_dims, randn_like, time_batch  # noqa: F401  (re-exported)
from course.gmm import noised_gmm_log_prob_and_score

SDE = Callable[[torch.Tensor, torch.Tensor], tuple]
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# The VP and VE SDEs
# ---------------------------------------------------------------------------------------------
def vp_beta(t, beta_min: float = 0.1, beta_max: float = 20.0):
    """beta(t) = beta_min + t (beta_max - beta_min): the VP noise rate."""
    return beta_min + t * (beta_max - beta_min)


def vp_marginal(t, beta_min: float = 0.1, beta_max: float = 20.0):
    """(mean_coef, std) of x_t | x0 under the VP SDE: x_t ~ N(mean_coef x0, std^2 I).

    mean_coef = exp(-1/2 int_0^t beta(s) ds), int_0^t beta = beta_min t + t^2 (beta_max - beta_min) / 2,
    std = sqrt(1 - mean_coef^2) (Song et al. 2021, eq. 29). Both have t's shape.
    """
    t = torch.as_tensor(t)
    log_mean_coef = -0.25 * t ** 2 * (beta_max - beta_min) - 0.5 * t * beta_min
    mean_coef = torch.exp(log_mean_coef)
    std = torch.sqrt(-torch.expm1(2.0 * log_mean_coef))  # sqrt(1 - mean_coef^2), accurate near t = 0
    return mean_coef, std


def vp_sde(x: torch.Tensor, t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0):
    """(drift, diffusion) of the VP SDE: f = -1/2 beta(t) x (x's shape), g = sqrt(beta(t)) (B,)."""
    beta = vp_beta(time_batch(t, x), beta_min, beta_max)  # (B,)
    return -0.5 * append_dims(beta, x) * x, torch.sqrt(beta)


def ve_sigma(t, sigma_min: float = 0.01, sigma_max: float = 50.0):
    """sigma(t) = sigma_min (sigma_max / sigma_min)^t: the VE noise scale (Song et al. 2021, eq. 9)."""
    return sigma_min * (sigma_max / sigma_min) ** torch.as_tensor(t)


def ve_sde(x: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.01, sigma_max: float = 50.0):
    """(drift, diffusion) of the VE SDE: f = 0, g = sigma(t) sqrt(2 log(sigma_max / sigma_min))."""
    sigma = ve_sigma(time_batch(t, x), sigma_min, sigma_max)  # (B,)
    return torch.zeros_like(x), sigma * math.sqrt(2 * math.log(sigma_max / sigma_min))


# ---------------------------------------------------------------------------------------------
# Reverse time: the reverse SDE, the probability-flow ODE, and the samplers built on them
# ---------------------------------------------------------------------------------------------
def reverse_sde_step(score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, dt: float, z: torch.Tensor,
                     sde: SDE) -> torch.Tensor:
    """One Euler-Maruyama step of the reverse SDE (Song et al. 2021, eq. 6) from t to t - dt (dt > 0):

        x_{t - dt} = x - [f(x, t) - g(t)^2 score(x, t)] dt + g(t) sqrt(dt) z.
    """
    t = time_batch(t, x)
    drift, g = sde(x, t)
    g = append_dims(g, x)  # (B, 1)
    return x - (drift - g ** 2 * score_fn(x, t)) * dt + g * math.sqrt(dt) * z


def pf_ode_drift(score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, sde: SDE) -> torch.Tensor:
    """dx/dt of the probability-flow ODE (Song et al. 2021, eq. 13): f(x, t) - 1/2 g(t)^2 score(x, t)."""
    t = time_batch(t, x)
    drift, g = sde(x, t)
    return drift - 0.5 * append_dims(g, x) ** 2 * score_fn(x, t)


def langevin_corrector_step_size(score: torch.Tensor, z: torch.Tensor, snr: float) -> torch.Tensor:
    """Song et al.'s corrector step eps = 2 (snr ||z|| / ||score||)^2, norms averaged over the batch
    (Algorithm 5 with alpha_i = 1)."""
    score_norm = score.flatten(1).norm(dim=1).mean()
    noise_norm = z.flatten(1).norm(dim=1).mean()
    return 2 * (snr * noise_norm / score_norm) ** 2


def pc_sample(score_fn: ScoreFn, x_T: torch.Tensor, sde: SDE, n_steps: int, snr: float, n_corrector: int,
              generator: torch.Generator | None = None, return_path: bool = False):
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1 / 5): on the grid t_i = 1 - i/n_steps,
    ``n_corrector`` Langevin steps at t_i (step size from ``snr``), then one reverse Euler-Maruyama
    step to t_i - 1/n_steps. The last predictor step adds no noise (it returns the mean, as Song et
    al.'s code does). ``n_corrector = 0`` is plain Euler-Maruyama. Score evaluations:
    n_steps (1 + n_corrector). Returns x_0 (and the path (n_steps + 1, N, d) if asked).
    """
    from course.score import langevin_step  # score.py holds Langevin dynamics

    dt = 1.0 / n_steps
    x = x_T
    path = [x]
    for i in range(n_steps):
        t = time_batch(1.0 - i * dt, x)  # (B,)
        for _ in range(n_corrector):
            z = randn_like(x, generator)
            score = score_fn(x, t)
            step_size = langevin_corrector_step_size(score, z, snr)
            x = langevin_step(lambda _x, s=score: s, x, step_size, z)
        z = randn_like(x, generator) if i < n_steps - 1 else torch.zeros_like(x)
        x = reverse_sde_step(score_fn, x, t, dt, z, sde)
        path.append(x)
    return (x, torch.stack(path)) if return_path else x


def em_sample(score_fn: ScoreFn, x_T: torch.Tensor, sde: SDE, n_steps: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain Euler-Maruyama on the reverse SDE: predictor-corrector with no corrector."""
    return pc_sample(score_fn, x_T, sde, n_steps, snr=0.0, n_corrector=0, generator=generator)


def pf_ode_sample(score_fn: ScoreFn, x_T: torch.Tensor, sde: SDE, n_steps: int, step=ode.rk4_step,
                  return_path: bool = False):
    """Integrate the probability-flow ODE from t = 1 (noise) to t = 0 (data) with a fixed-step solver."""
    field = lambda x, t: pf_ode_drift(score_fn, x, time_batch(t, x), sde)  # noqa: E731
    path = ode.integrate(field, x_T, 1.0, 0.0, n_steps, step=step)  # (n_steps + 1, N, d)
    return (path[-1], path) if return_path else path[-1]


def pf_ode_endpoint(score_fn: ScoreFn, x: torch.Tensor, sde: SDE, n_steps: int):
    """Integrate the augmented probability-flow ODE from t = 0 (x) to t = 1 with RK4.

    The state is [x_t, delta_t] (N, d + 1) with dx/dt = the PF-ODE drift and d delta/dt = its exact
    divergence (autograd). Returns (x_1 (N, d), delta_1 = int_0^1 div(drift) dt (N,)).
    """
    d = x.shape[1]
    drift_fn = lambda y, s: pf_ode_drift(score_fn, y, time_batch(s, y), sde)  # noqa: E731

    def field(state, t):  # (N, d + 1) -> (N, d + 1)
        xt = state[:, :d].detach()
        with torch.enable_grad():
            drift = drift_fn(xt, t).detach()
        div = flows.divergence(drift_fn, xt, t)  # (N,)
        return torch.cat([drift, div[:, None]], dim=1)

    state = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
    end = ode.integrate(field, state, 0.0, 1.0, n_steps, step=ode.rk4_step)[-1]
    return end[:, :d], end[:, d]


def pf_ode_log_prob(score_fn: ScoreFn, x: torch.Tensor, sde: SDE, n_steps: int) -> torch.Tensor:
    """log p_0(x) through the probability-flow ODE (Song et al. 2021, Appendix D.2), shape (N,):

        log p_0(x) = log N(x_1; 0, I) + int_0^1 div(drift)(x_t, t) dt,

    the instantaneous change of variables (d log p_t(x_t)/dt = -div drift) along the PF-ODE path
    from x_0 = x to x_1, integrated with RK4 (see :func:`pf_ode_endpoint`). The prior N(0, I) is the
    VP SDE's; ``score_fn`` must be finite at t = 0.
    """
    x1, delta = pf_ode_endpoint(score_fn, x, sde, n_steps)
    return flows.standard_normal_log_prob(x1) + delta


# ---------------------------------------------------------------------------------------------
# Oracles: exact scores and densities of a Gaussian mixture under the VP SDE
# ---------------------------------------------------------------------------------------------
def vp_gmm_log_prob_and_score(x: torch.Tensor, t: torch.Tensor, means, stds, weights,
                              beta_min: float = 0.1, beta_max: float = 20.0):
    """Exact (log p_t(x) (B,), score (B, d)) when x0 is a mixture: p_t is again a mixture, with the
    marginal's mean_coef m(t) = exp(-1/2 int_0^t beta) and std sqrt(1 - m^2) (eq. 29). An oracle: it
    does not call ``vp_marginal`` (an exercise of notebook 05, a stub in its staged bundle)."""
    t = time_batch(t, x)  # (B,)
    log_mean_coef = -0.25 * t ** 2 * (beta_max - beta_min) - 0.5 * t * beta_min
    return noised_gmm_log_prob_and_score(x, torch.exp(log_mean_coef), torch.sqrt(-torch.expm1(2.0 * log_mean_coef)),
                                         means, stds, weights)


def vp_gmm_score_fn(means, stds, weights, beta_min: float = 0.1, beta_max: float = 20.0) -> ScoreFn:
    """score_fn(x, t) = grad log p_t(x), exact at every noise level, for a mixture under the VP SDE."""
    return lambda x, t: vp_gmm_log_prob_and_score(x, t, means, stds, weights, beta_min, beta_max)[1]


def ve_gmm_score_fn(means, stds, weights, sigma_min: float = 0.01, sigma_max: float = 50.0) -> ScoreFn:
    """score_fn(x, t) = grad log p_t(x), exact, for a mixture under the VE SDE: x_t = x0 + sigma(t) z,
    so p_t is the mixture with variances s_k^2 + sigma(t)^2 (mean coefficient 1)."""

    def score_fn(x, t):
        sigma = ve_sigma(time_batch(t, x), sigma_min, sigma_max)  # (B,)
        return noised_gmm_log_prob_and_score(x, torch.ones_like(sigma), sigma, means, stds, weights)[1]

    return score_fn


def vp_gmm_log_prob_fn(means, stds, weights, beta_min: float = 0.1, beta_max: float = 20.0):
    """log_prob(x, t) = log p_t(x), exact, for a mixture under the VP SDE."""
    return lambda x, t: vp_gmm_log_prob_and_score(x, t, means, stds, weights, beta_min, beta_max)[0]

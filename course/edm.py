"""EDM's noise convention, preconditioning and loss (notebook 09): Karras et al. 2022, arXiv:2206.00364.

Time convention (notebooks 09-10): the noise level sigma itself. x = x0 + sigma n with n ~ N(0, I),
sigma running from sigma_max (pure noise, x ~ N(0, sigma_max^2 I) approximately) down to 0 (data).
A *denoiser* ``D(x, sigma)`` predicts x0; sigma is a float tensor of shape (B,), one level per sample.
Its probability-flow ODE (EDM eq. 3 with s(t) = 1, sigma(t) = t) is

    dx / dsigma = (x - D(x, sigma)) / sigma,

so every ODE sampler of ``course.samplers`` only needs D. Other parameterisations convert into it:
x_t = alpha x0 + sigma eps (DDPM's VP process has alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar))
is the same point as x_t / alpha = x0 + (sigma / alpha) eps in EDM's convention
(:func:`vp_eps_to_denoiser`); eps-, x0- and v-predictions convert with :func:`x0_to_eps`,
:func:`eps_to_x0`, :func:`v_target`, :func:`v_to_x0` (Salimans & Ho 2022, arXiv:2202.00512).

The exact denoiser of an isotropic Gaussian mixture (:func:`gmm_denoiser`, :class:`GMMDenoiser`)
is Tweedie's formula E[x0 | x] = x + sigma^2 grad log p_sigma(x) on ``course.gmm``'s exact noised
score: samplers and consistency functions are judged against it without training anything.
"""
from __future__ import annotations

import torch

from course.batching import append_dims, time_batch
from course.gmm import noised_gmm_log_prob_and_score


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5: n noise levels from sigma_max down to sigma_min, evenly spaced in sigma^(1/rho),
    followed by a final 0 (the data): a float32 tensor of shape (n + 1,).

    sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i < n.
    rho = 7 spends most steps at small sigma, where the ODE's curvature is (EDM section 3).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho  # (n,)
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]).float()


def edm_precond(sigma: torch.Tensor, sigma_data: float):
    """EDM Table 1 (and appendix B.6): the scalings that make the network's input and target unit-variance.

    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),  c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
    c_in = 1 / sqrt(sigma^2 + sigma_data^2),          c_noise = log(sigma) / 4.
    Each is shaped like sigma.
    """
    sigma = torch.as_tensor(sigma)
    total = sigma ** 2 + sigma_data ** 2
    c_skip = sigma_data ** 2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def edm_denoiser(F, x: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM eq. 7: D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)).

    ``F(x_in, c_noise)`` is the raw network (c_noise of shape (B,)); sigma a float, 0-dim or (B,).
    """
    sigma = time_batch(sigma, x)  # (B,)
    c_skip, c_out, c_in, c_noise = edm_precond(sigma, sigma_data)
    return append_dims(c_skip, x) * x + append_dims(c_out, x) * F(append_dims(c_in, x) * x, c_noise)


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2 (EDM Table 1)."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def edm_loss(F, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM eq. 8 for given levels and noise: mean over the batch of
    lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2 (the squared error summed over each sample's
    dimensions). ``sigma`` (B,), drawn by the caller (EDM: log sigma ~ N(-1.2, 1.2^2)). A scalar.
    With this weight the effective target of F, (x0 - c_skip x) / c_out, has unit variance.
    """
    x = x0 + append_dims(sigma, x0) * noise
    err = (edm_denoiser(F, x, sigma, sigma_data) - x0) ** 2
    per_sample = err.flatten(1).sum(1)  # (B,)
    return (edm_loss_weight(sigma, sigma_data) * per_sample).mean()


def lognormal_sigmas(n: int, p_mean: float = -1.2, p_std: float = 1.2,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Training noise levels of EDM (Table 1): ln sigma ~ N(p_mean, p_std^2): (n,)."""
    return (p_mean + p_std * torch.randn(n, generator=generator)).exp()


def gmm_denoiser(x: torch.Tensor, sigma: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    """The exact E[x0 | x] of an isotropic Gaussian mixture under x = x0 + sigma n: (B, d).

    Tweedie's formula, E[x0 | x] = x + sigma^2 grad log p_sigma(x), with the exact score of the noised
    mixture (means mu_k, variances s_k^2 + sigma^2) from ``course.gmm.noised_gmm_log_prob_and_score``
    (mean_coef 1, std sigma). Equal to sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)).
    ``sigma`` a float, 0-dim or (B,); must be > 0 (stds may be 0: a finite point set).
    """
    sigma = time_batch(sigma, x)  # (B,)
    means, stds, weights = means.to(x), stds.to(x), weights.to(x)
    _, score = noised_gmm_log_prob_and_score(x, torch.ones_like(sigma), sigma, means, stds, weights)
    return x + append_dims(sigma, x) ** 2 * score


class GMMDenoiser:
    """``D(x, sigma)``: the exact denoiser of the mixture sum_k w_k N(mu_k, s_k^2 I) (see :func:`gmm_denoiser`).

    Works in any floating dtype (float64 for reference ODE solutions) and on any device.
    """

    def __init__(self, means, stds, weights):
        self.means = torch.as_tensor(means, dtype=torch.float32)  # (K, d)
        self.stds = torch.as_tensor(stds, dtype=torch.float32)  # (K,)
        self.weights = torch.as_tensor(weights, dtype=torch.float32)  # (K,)

    @classmethod
    def from_mixture(cls, mixture) -> "GMMDenoiser":
        """From a ``course.gmm.GaussianMixture``."""
        return cls(mixture.means, mixture.stds, mixture.weights)

    @property
    def sigma_data(self) -> float:
        """The data's standard deviation per coordinate, sqrt(E||x0 - E x0||^2 / d)."""
        mean = (self.weights[:, None] * self.means).sum(0)  # (d,)
        d = self.means.shape[1]
        var = (self.weights * (((self.means - mean) ** 2).sum(1) + d * self.stds ** 2)).sum() / d
        return float(var.sqrt())

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        return gmm_denoiser(x, sigma, self.means, self.stds, self.weights)


def pf_ode_derivative(D, x: torch.Tensor, sigma) -> torch.Tensor:
    """dx/dsigma = (x - D(x, sigma)) / sigma: EDM eq. 3 with s(t) = 1, sigma(t) = t (also eq. 4's
    score form, since grad log p = (D - x) / sigma^2). sigma a float, 0-dim or (B,), > 0."""
    sigma = time_batch(sigma, x)  # (B,)
    return (x - D(x, sigma)) / append_dims(sigma, x)


def x0_to_eps(xt: torch.Tensor, x0: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """eps = (x_t - alpha x0) / sigma, for x_t = alpha x0 + sigma eps; alpha, sigma floats or (B,)."""
    return (xt - append_dims(alpha, xt) * x0) / append_dims(sigma, xt)


def eps_to_x0(xt: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """x0 = (x_t - sigma eps) / alpha, for x_t = alpha x0 + sigma eps; alpha, sigma floats or (B,)."""
    return (xt - append_dims(sigma, xt) * eps) / append_dims(alpha, xt)


def v_target(x0: torch.Tensor, eps: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """v = alpha eps - sigma x0 (Salimans & Ho 2022, section 4 and appendix D)."""
    return append_dims(alpha, x0) * eps - append_dims(sigma, x0) * x0


def v_to_x0(xt: torch.Tensor, v: torch.Tensor, alpha, sigma) -> torch.Tensor:
    """x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2): alpha x_t - sigma v = (alpha^2 + sigma^2) x0.
    On a variance-preserving path (alpha^2 + sigma^2 = 1) this is Salimans & Ho's x0 = alpha x_t - sigma v."""
    a, s = append_dims(alpha, xt), append_dims(sigma, xt)
    return (a * xt - s * v) / (a ** 2 + s ** 2)


def vp_sigmas(alpha_bar: torch.Tensor) -> torch.Tensor:
    """The EDM noise level of each DDPM step: sigma_t = sqrt((1 - alpha_bar[t]) / alpha_bar[t]): (T,)."""
    alpha_bar = alpha_bar.double()
    return ((1 - alpha_bar) / alpha_bar).sqrt().float()


def sigma_to_step(sigma: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The DDPM step t whose sigma_t is nearest to each sigma in log sigma: a LongTensor (B,)."""
    log_sig = vp_sigmas(alpha_bar).to(sigma.device).log()  # (T,), increasing in t
    return (sigma.float().log()[:, None] - log_sig[None]).abs().argmin(1)


def vp_eps_to_denoiser(eps_model, alpha_bar: torch.Tensor):
    """A DDPM eps-model (notebook 03: ``eps_model(x_t, t)``, t a LongTensor (B,)) as an EDM denoiser ``D(x, sigma)``.

    x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps is x_t / sqrt(alpha_bar) = x0 + sigma eps with
    sigma = sqrt((1 - alpha_bar) / alpha_bar). So D(x, sigma) = x - sigma eps_model(x / sqrt(1 + sigma^2), t),
    with the input scaled back to the VP process (sqrt(alpha_bar) = 1 / sqrt(1 + sigma^2) at the asked
    sigma) and t the *nearest* trained step in log sigma (k-diffusion's ``DiscreteEpsDDPMDenoiser``
    with quantize=True). Samplers should ask for sigmas inside [sigma_0, sigma_{T-1}] (``vp_sigmas``).
    """
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float32)

    def D(x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = time_batch(sigma, x)  # (B,)
        t = sigma_to_step(sigma, alpha_bar.to(x.device))  # (B,)
        s = append_dims(sigma, x)
        eps = eps_model(x / (1 + s ** 2).sqrt(), t)
        return x - s * eps

    D.sigma_min = float(vp_sigmas(alpha_bar)[0])
    D.sigma_max = float(vp_sigmas(alpha_bar)[-1])
    return D


__all__ = [
    "karras_sigmas", "edm_precond", "edm_denoiser", "edm_loss_weight", "edm_loss", "lognormal_sigmas",
    "gmm_denoiser", "GMMDenoiser", "pf_ode_derivative", "x0_to_eps", "eps_to_x0", "v_target", "v_to_x0",
    "vp_sigmas", "sigma_to_step", "vp_eps_to_denoiser", "EDMMLP",
]


class EDMMLP(torch.nn.Module):
    """A raw network F(x_in, c_noise) for 2D points: an MLP on [x_in, c_noise] (SiLU, ``depth`` hidden layers).

    c_noise = ln(sigma) / 4 enters as one more input, unembedded: EDM feeds it to a positional embedding
    of small arguments, which is this up to a linear map.

    Why not the course's ``TimeMLP`` (measured in notebook 09, section 7): its 32 time-feature inputs (random
    Fourier features, whether they vary with c_noise or hardly at all) drown the two coordinates at
    initialisation (fan-in 34, so each coordinate's weights are ~3x smaller than here).
    EDM's preconditioning has already removed the easy, linear part of the answer (c_skip x), so F's
    target is only weakly predictable from x; the fastest way down the loss is then to shrink F's output
    to 0 (loss = d, its value for F = 0), after which every earlier layer's gradient passes through a
    near-zero last layer: a saddle it did not leave in 600 steps (loss 2.00, mean |F| 0.01-0.03). With 4
    time features, or this network, F learns.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        layers: list[torch.nn.Module] = [torch.nn.Linear(dim + 1, hidden), torch.nn.SiLU()]
        for _ in range(depth - 1):
            layers += [torch.nn.Linear(hidden, hidden), torch.nn.SiLU()]
        layers.append(torch.nn.Linear(hidden, dim))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x_in: torch.Tensor, c_noise) -> torch.Tensor:
        c_noise = time_batch(c_noise, x_in)  # (B,)
        return self.net(torch.cat([x_in, c_noise[:, None]], dim=-1))

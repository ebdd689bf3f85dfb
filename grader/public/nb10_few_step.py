"""Notebook 10 (few-step generation: consistency models): its manifest, the argument factories, the
probes and the public checks.

Time convention (EDM, as notebook 09): x = x0 + sigma n; sigma from sigma_max (noise) down to
sigma_min (data). A denoiser ``D(x, sigma)`` and a consistency function ``f(x, sigma)`` take sigma as
a float tensor (B,). ``sigmas`` of the losses are ascending (sigmas[0] = sigma_min); the model sees
sigmas[n + 1], the target sigmas[n]. The "models" handed to the learner are closed forms (the exact
denoiser and consistency function of a Gaussian, the exact denoiser of a mixture) or small networks
with fixed weights, built by the factories below inside the sandbox and in the grader alike.
"""
from __future__ import annotations

import math

import torch

from course import consistency as cm
from course.batching import append_dims, time_batch
from course.edm import GMMDenoiser
from course.nets import TimeMLP
from grader.engine.api import Hint, Mismatch, Ref, expect_choice, expect_close, expect_scalar, exercise, generator

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "consistency_fn": 2,
    "pseudo_huber": 1,
    "teacher_step": 2,
    "cd_loss": 3,
    "ct_loss": 2,
    "consistency_sample": 2,
    "predict_one_step_ode": 0.5,  # questions: "predict, then run" (issue 13)
    "predict_boundary": 0.5,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "consistency_fn": "course.consistency:consistency_fn",
    "pseudo_huber": "course.consistency:pseudo_huber",
    "teacher_step": "course.consistency:teacher_step",
    "cd_loss": "course.consistency:cd_loss",
    "ct_loss": "course.consistency:ct_loss",
    "consistency_sample": "course.consistency:consistency_sample",
}

SIGMA_MIN = cm.SIGMA_MIN


# ---------------------------------------------------------------------------------------------
# Factories: raw networks F(x_in, c_noise), denoisers D(x, sigma), consistency functions f(x, sigma)
# ---------------------------------------------------------------------------------------------
def tanh_net(W, b, k: float):
    """F(u, c_noise) = tanh(u W^T + b) + k c_noise: nonlinear in its input, and it depends on c_noise."""
    W, b = torch.as_tensor(W, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return lambda u, c_noise: torch.tanh(u @ W.T + b) + k * append_dims(c_noise, u)


def tiny_net(seed: int, dim: int = 2, trainable: bool = False):
    """A small TimeMLP F(x_in, c_noise) with weights fixed by ``seed`` (a stand-in for a trained network).

    ``trainable`` leaves requires_grad on (for the gradient probes)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = TimeMLP(dim=dim, hidden=32, depth=2, emb_dim=16, time_scale=250.0)
    for p in net.parameters():
        p.requires_grad_(trainable)
    return net


def with_skip(net):
    """f(x, sigma) = x / (1 + sigma) + sigma / (1 + sigma) net(x / sqrt(1 + sigma^2), log(sigma) / 4): a
    consistency-shaped function of a network, written here (the sandbox hides the library's answers)."""
    def f(x, sigma):
        sigma = time_batch(sigma, x)
        skip, out = append_dims(1 / (1 + sigma), x), append_dims(sigma / (1 + sigma), x)
        return skip * x + out * net(x / append_dims((1 + sigma ** 2).sqrt(), x), sigma.log() / 4)

    return f


def consistency_model(seed: int, dim: int = 2):
    """A consistency-shaped f(x, sigma) around ``tiny_net(seed, dim)`` (fixed weights)."""
    return with_skip(tiny_net(seed, dim))


def gaussian_denoiser(mu, s: float):
    """The exact D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu) of data N(mu, s^2 I)."""
    mu = torch.as_tensor(mu, dtype=torch.float32)
    return lambda x, sigma: mu + append_dims(s ** 2 / (s ** 2 + time_batch(sigma, x) ** 2), x) * (x - mu)


def gaussian_consistency(mu, s: float):
    """The exact consistency function of data N(mu, s^2 I): the PF-ODE is linear, x - mu scales as
    sqrt(s^2 + sigma^2), so f(x, sigma) = mu + (x - mu) sqrt(s^2 + sigma_min^2) / sqrt(s^2 + sigma^2)."""
    mu = torch.as_tensor(mu, dtype=torch.float32)

    def f(x, sigma):
        scale = math.sqrt(s ** 2 + SIGMA_MIN ** 2) / (s ** 2 + time_batch(sigma, x) ** 2).sqrt()
        return mu + append_dims(scale, x) * (x - mu)

    return f


def affine_consistency(a: float, b: float):
    """A made-up f(x, sigma) = x / (1 + a sigma) + b sigma: which sigma each call used shows in the output."""
    return lambda x, sigma: (x / append_dims(1 + a * time_batch(sigma, x), x)
                             + b * append_dims(time_batch(sigma, x), x))


# ---------------------------------------------------------------------------------------------
# Probes (run next to the learner's code; they return raw numbers only)
# ---------------------------------------------------------------------------------------------
def probe_self_target_gradient(ns, exercise_name: str, seed: int, dim: int, *args):
    """Call the learner's loss with ONE trainable network as both f_model and f_target (theta^- = theta,
    as improved consistency training does) and return (loss, the gradient of the loss w.r.t. the
    network's parameters, flattened). A target that is not detached adds its own gradient."""
    net = tiny_net(seed, dim, trainable=True)
    f = with_skip(net)
    loss = ns[exercise_name](f, f, *args)
    loss.backward()
    grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in net.parameters()]
    return loss.detach(), torch.cat(grads)


def probe_sample_reproducible(ns, f_ref, x_T, sigmas_multistep, seed: int):
    """consistency_sample twice with equally seeded generators: (first, second)."""
    first = ns["consistency_sample"](f_ref, x_T, sigmas_multistep, torch.Generator().manual_seed(seed))
    second = ns["consistency_sample"](f_ref, x_T, sigmas_multistep, torch.Generator().manual_seed(seed))
    return first, second


# ---------------------------------------------------------------------------------------------
# Known mistakes (shared with the hidden tests)
# ---------------------------------------------------------------------------------------------
def consistency_fn_mistakes(F, x, sigma, sigma_data, sigma_min):
    """What the usual wrong parameterisations give, each with its hint."""
    s = append_dims(sigma, x)
    total = s ** 2 + sigma_data ** 2
    c_in, c_noise = 1 / total.sqrt(), sigma.log() / 4
    c_skip, c_out = cm.boundary_scalings(sigma, sigma_data, sigma_min)
    c_skip, c_out = append_dims(c_skip, x), append_dims(c_out, x)
    edm_skip, edm_out = sigma_data ** 2 / total, s * sigma_data / total.sqrt()
    return [
        Hint(edm_skip * x + edm_out * F(c_in * x, c_noise),
             "these are EDM's c_skip and c_out (notebook 09): with them f(x, sigma_min) != x, so the boundary "
             "condition is violated. Shift sigma by sigma_min: c_skip = sigma_data^2 / ((sigma - sigma_min)^2 "
             "+ sigma_data^2), c_out = (sigma - sigma_min) sigma_data / sqrt(sigma^2 + sigma_data^2)."),
        Hint(c_skip * x + c_out * F(x, c_noise),
             "the network's input is c_in x with c_in = 1 / sqrt(sigma^2 + sigma_data^2), not x itself."),
        Hint(c_skip * x + c_out * F(c_in * x, sigma),
             "the network's noise input is c_noise = log(sigma) / 4, not sigma."),
        Hint(edm_skip * x + c_out * F(c_in * x, c_noise),
             "c_skip must be shifted by sigma_min too: c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2) "
             "is 1 at sigma_min; EDM's sigma_data^2 / (sigma^2 + sigma_data^2) is not (boundary condition)."),
        Hint(c_skip * x + append_dims(sigma - sigma_min, x) * sigma_data / total * F(c_in * x, c_noise),
             "c_out divides by sqrt(sigma^2 + sigma_data^2), not by sigma^2 + sigma_data^2."),
    ]


def pseudo_huber_mistakes(a, b, c):
    diff = (a - b).flatten(1)
    sq = (diff ** 2).sum(1)
    return [
        Hint((sq + c ** 2).sqrt(), "subtract c: d(a, b) = sqrt(||a - b||^2 + c^2) - c is 0 when a = b."),
        Hint(sq + c ** 2 - c, "take the square root of ||a - b||^2 + c^2 before subtracting c."),
        Hint(((diff ** 2).mean(1) + c ** 2).sqrt() - c,
             "||a - b||^2 is the squared Euclidean norm: a sum over the coordinates, not a mean."),
        Hint(((diff ** 2 + c ** 2).sqrt() - c).sum(1),
             "the norm is taken over the whole sample: sqrt(||a - b||^2 + c^2) - c, not a pseudo-Huber of "
             "each coordinate summed."),
        Hint(((sq + c ** 2).sqrt() - c).mean(), "return one distance per sample (shape (B,)), not their mean."),
    ]


def expect_per_sample(got, batch: int, what: str) -> None:
    """A distance per sample: shape (B,), not one number for the whole batch."""
    if isinstance(got, (int, float)) or (isinstance(got, torch.Tensor) and got.dim() == 0):
        raise Mismatch([f"{what} returned a single number; expected one distance per sample, shape ({batch},).",
                        "Hint: return one value per sample (shape (B,)), not their mean: the losses average them."])


def heun_closed_form(D, x, s, s_next):
    """Heun's step for the grader's expectation, written from EDM Algorithm 1 (and its known mistakes)."""
    sc, snc = append_dims(s, x), append_dims(s_next, x)
    d = (x - D(x, s)) / sc
    x_euler = x + (snc - sc) * d
    d_next = (x_euler - D(x_euler, s_next)) / snc
    return x + (snc - sc) * 0.5 * (d + d_next), x_euler, d, d_next


def teacher_step_mistakes(D, x, s, s_next):
    sc, snc = append_dims(s, x), append_dims(s_next, x)
    heun, x_euler, d, d_next = heun_closed_form(D, x, s, s_next)
    d_same_sigma = (x_euler - D(x_euler, s)) / sc
    return [
        Hint(x_euler, "that is Euler's step alone: Heun corrects it with the derivative at the Euler point, "
                      "x' = x + (s' - s) (d + d') / 2 with d' = (x_E - D(x_E, s')) / s'."),
        Hint(x + (sc - snc) * 0.5 * (d + d_next), "the step is (sigma_to - sigma_from) (negative when denoising), "
                                                  "not (sigma_from - sigma_to)."),
        Hint(x + (snc - sc) * 0.5 * (d + d_same_sigma),
             "the corrector's derivative is evaluated at the *new* level sigma_to: d' = (x_E - D(x_E, sigma_to)) / sigma_to."),
        Hint(x_euler + (snc - sc) * d_next, "Heun averages the two derivatives from the same start x: "
                                            "x' = x + (s' - s) (d + d') / 2, not two Euler steps."),
        Hint(x + (snc - sc) * 0.5 * (d + d_next) * sc, "the PF-ODE derivative divides by sigma: d = (x - D(x, sigma)) / sigma."),
    ]


def loss_variants(kind: str, f_model, f_target, D, x0, sigmas, n, noise):
    """(reference, mistakes) for cd_loss / ct_loss, computed from the grader's copies."""
    s, s_next = sigmas[n], sigmas[n + 1]
    c = cm.huber_c(x0)
    x_next = x0 + append_dims(s_next, x0) * noise
    x_here = x0 + append_dims(s, x0) * noise
    with torch.no_grad():
        if kind == "cd":
            x_hat = cm.teacher_step(D, x_next, s_next, s)
            x_swapped = cm.teacher_step(D, x_here, s, s_next)
            ref = cm.cd_loss(f_model, f_target, D, x0, sigmas, n, noise)
        else:
            x_hat, x_swapped = x_here, x_next
            ref = cm.ct_loss(f_model, f_target, x0, sigmas, n, noise)
        pred = f_model(x_next, s_next)
        target = f_target(x_hat, s)
        ph = lambda a, b: cm.pseudo_huber(a, b, c)
        hints = [
            Hint(ph(f_model(x_here, s), f_target(x_swapped, s_next)).mean(),
                 "the adjacent levels are swapped: the model sees the noisier point x at sigmas[n + 1], the target "
                 "the less noisy one at sigmas[n] (sigmas are ascending)."),
            Hint(ph(pred, f_target(x_next, s)).mean() if kind == "cd" else ph(pred, f_target(x_next, s_next)).mean(),
                 "the target is evaluated at the wrong point: take the teacher's Heun step from x_{n+1} at "
                 "sigmas[n + 1] down to sigmas[n], and evaluate f_target there, at sigmas[n]." if kind == "cd" else
                 "the target is f_target at the *less* noisy point x0 + sigmas[n] noise, at sigmas[n]."),
            Hint(((pred - target) ** 2).flatten(1).sum(1).mean(),
                 "the distance is the pseudo-Huber sqrt(||a - b||^2 + c^2) - c, not the squared error."),
            Hint((((pred - target) ** 2).flatten(1).sum(1) + c ** 2).sqrt().mean(),
                 "the pseudo-Huber distance subtracts c: sqrt(||a - b||^2 + c^2) - c."),
            Hint(ph(pred, target).sum(), "take the mean over the batch, not the sum."),
            Hint(ph(pred, f_target(x_hat, s_next)).mean(), "f_target is evaluated at sigmas[n], the level of its input."),
        ]
    return float(ref), hints


def check_loss(got, kind, refs, x0, sigmas, n, noise, D=None, what=""):
    f_model, f_target = (r.function(*r.args, **r.kwargs) for r in refs)
    expected, hints = loss_variants(kind, f_model, f_target, D, x0, sigmas, n, noise)
    expect_scalar(got, expected, what, rtol=1e-4, atol=1e-6, hints=hints)


def self_target_loss(f, kind, D, x0, sigmas, n, noise, detach: bool):
    """The CD / CT loss with f as both model and target, written here from Song et al. 2023 (Algorithms 2
    and 3; not the library's exercises, which are stubs in a staged bundle): ``detach`` False is the
    mistake, a target that carries the graph."""
    c = cm.huber_c(x0)
    s, s_next = sigmas[n], sigmas[n + 1]
    x_next = x0 + append_dims(s_next, x0) * noise
    with torch.no_grad():
        x_hat = heun_closed_form(D, x_next, s_next, s)[0] if kind == "cd" else x0 + append_dims(s, x0) * noise
    target = f(x_hat, s)
    if detach:
        target = target.detach()
    sq = ((f(x_next, s_next) - target) ** 2).flatten(1).sum(1)  # (B,)
    return ((sq + c ** 2).sqrt() - c).mean()


def check_self_target_gradient(sub, exercise_name, kind, seed, dim, x0, sigmas, n, noise, D_ref=None):
    """The loss's gradient with theta^- = theta: only through f_model, never through the target."""
    args = (D_ref, x0, sigmas, n, noise) if kind == "cd" else (x0, sigmas, n, noise)
    got_loss, got_grad = sub.probe("probe_self_target_gradient", exercise_name, seed, dim, *args)
    D = D_ref.function(*D_ref.args, **D_ref.kwargs) if D_ref is not None else None
    grads = {}
    for detach in (True, False):
        net = tiny_net(seed, dim, trainable=True)
        loss = self_target_loss(with_skip(net), kind, D, x0, sigmas, n, noise, detach)
        grads[detach] = (loss, torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(net.parameters()))]))
    loss, grad = grads[True]
    grad_both = grads[False][1]
    what = f"the gradient of {exercise_name} with f_model and f_target the same network"
    expect_scalar(got_loss, float(loss.detach()), f"{exercise_name} with f_model = f_target", rtol=1e-4, atol=1e-6)
    expect_close(got_grad, grad, what, rtol=1e-3, atol=1e-5, hints=[
        Hint(grad_both, "the target is not detached: gradients flow into f_target too, so the network is also "
                        "pulled towards its own prediction. The target is a fixed regression goal, "
                        "theta^- = stopgrad(theta): no gradient may flow through it.",
             where="the loss's second argument, stopgrad f_target(...) (Song et al. 2023, Algorithm 2 for CD, "
                   "Algorithm 3 for CT): compute that value without recording a graph."),
    ])


def sample_variants(f, x_T, sigmas_multistep, seed):
    """(reference, mistakes) for consistency_sample, all drawing noise from a generator seeded ``seed``."""
    sig = [float(v) for v in sigmas_multistep]
    ref = cm.consistency_sample(f, x_T, sig, torch.Generator().manual_seed(seed))

    def run(noise_std, eval_sigma=lambda i, tau: tau, start=None, renoise_from_x_T=False):
        g = torch.Generator().manual_seed(seed)
        x = f(x_T, time_batch(sig[0], x_T)) if start is None else start
        for i, tau in enumerate(sig[1:]):
            z = torch.randn(x.shape, generator=g)
            base = x_T if renoise_from_x_T else x
            x = f(base + noise_std(tau) * z, time_batch(eval_sigma(i, tau), x))
        return x

    hints = [
        Hint(run(lambda tau: 0.0), "re-noise before each further step: x_tau = x + sqrt(tau^2 - sigma_min^2) z with "
                                   "fresh z ~ N(0, I), then x = f(x_tau, tau). Without noise, f(x, tau) only "
                                   "denoises an already clean sample again."),
        Hint(run(lambda tau: tau ** 2 - SIGMA_MIN ** 2),
             "the noise's standard deviation is sqrt(tau^2 - sigma_min^2); you used the variance tau^2 - sigma_min^2."),
        Hint(run(lambda tau: math.sqrt(tau ** 2 - SIGMA_MIN ** 2), eval_sigma=lambda i, tau: sig[i]),
             "evaluate f at the level you noised to, tau, not at the previous level."),
        Hint(run(lambda tau: math.sqrt(tau ** 2 - SIGMA_MIN ** 2), renoise_from_x_T=True),
             "re-noise the current sample x (the last output of f), not the starting noise x_T."),
        Hint(run(lambda tau: math.sqrt(tau ** 2 - SIGMA_MIN ** 2), start=x_T / sig[0]),
             "x_T is already noise at sigma_max (x_T = T z): the first step is f(x_T, T), without rescaling."),
    ]
    return ref, hints


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
X = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-1.0, 1.5], [0.3, 0.3]])
SIGMA_DATA = 0.8
W0, B0 = [[0.7, -0.4], [0.2, 1.1]], [0.1, -0.3]
GAUSS = dict(mu=[0.5, -0.25], s=0.6)


@exercise("consistency_fn")
def test_consistency_fn_boundary(sub, rng):
    """consistency_fn is the identity at sigma = sigma_min (the boundary condition)"""
    sigma = torch.full((4,), SIGMA_MIN)
    got = sub.call("consistency_fn", Ref(tanh_net, W0, B0, 0.5), X, sigma, SIGMA_DATA, SIGMA_MIN)
    F = tanh_net(W0, B0, 0.5)
    expect_close(got, X, "consistency_fn(F, x, sigma_min, sigma_data, sigma_min)", rtol=1e-5, atol=1e-6,
                 hints=consistency_fn_mistakes(F, X, sigma, SIGMA_DATA, SIGMA_MIN))


@exercise("consistency_fn")
def test_consistency_fn_values(sub, rng):
    """consistency_fn at a few noise levels"""
    sigma = torch.tensor([0.05, 0.5, 2.0, 20.0])
    F = tanh_net(W0, B0, 0.5)
    got = sub.call("consistency_fn", Ref(tanh_net, W0, B0, 0.5), X, sigma, SIGMA_DATA, SIGMA_MIN)
    expect_close(got, cm.consistency_fn(F, X, sigma, SIGMA_DATA, SIGMA_MIN), "consistency_fn(F, x, sigma, ...)",
                 hints=consistency_fn_mistakes(F, X, sigma, SIGMA_DATA, SIGMA_MIN))


@exercise("pseudo_huber")
def test_pseudo_huber_small(sub, rng):
    """pseudo_huber on three pairs of points"""
    a, b, c = X[:3], X[1:], 0.3
    got = sub.call("pseudo_huber", a, b, c)
    expect_per_sample(got, 3, f"pseudo_huber(a, b, c={c})")
    expected = ((a - b).pow(2).sum(1) + c ** 2).sqrt() - c
    expect_close(got, expected, f"pseudo_huber(a, b, c={c})", hints=pseudo_huber_mistakes(a, b, c))


@exercise("teacher_step")
def test_teacher_step_gaussian(sub, rng):
    """teacher_step on the exact denoiser of a Gaussian, one level for the batch"""
    D = gaussian_denoiser(**GAUSS)
    s, s_next = torch.full((4,), 2.0), torch.full((4,), 1.2)
    got = sub.call("teacher_step", Ref(gaussian_denoiser, **GAUSS), 3 * X, s, s_next)
    expect_close(got, heun_closed_form(D, 3 * X, s, s_next)[0], "teacher_step(D, x, 2.0, 1.2)",
                 hints=teacher_step_mistakes(D, 3 * X, s, s_next))


@exercise("cd_loss")
def test_cd_loss_fixed(sub, rng):
    """cd_loss on a fixed batch with small networks and the exact mixture denoiser"""
    refs = (Ref(consistency_model, 3), Ref(consistency_model, 4))
    teacher = Ref(GMMDenoiser, [[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.5], [0.4, 0.6])
    sigmas, n = cm.cm_sigmas(10), torch.tensor([0, 3, 8, 5])
    noise = torch.tensor([[0.3, -1.2], [1.0, 0.4], [-0.5, 0.8], [0.1, 0.1]])
    got = sub.call("cd_loss", *refs, teacher, X, sigmas, n, noise)
    check_loss(got, "cd", refs, X, sigmas, n, noise, GMMDenoiser(*teacher.args), "cd_loss(...) on a fixed batch")


@exercise("ct_loss")
def test_ct_loss_fixed(sub, rng):
    """ct_loss on a fixed batch with small networks"""
    refs = (Ref(consistency_model, 3), Ref(consistency_model, 4))
    sigmas, n = cm.cm_sigmas(10), torch.tensor([0, 3, 8, 5])
    noise = torch.tensor([[0.3, -1.2], [1.0, 0.4], [-0.5, 0.8], [0.1, 0.1]])
    got = sub.call("ct_loss", *refs, X, sigmas, n, noise)
    check_loss(got, "ct", refs, X, sigmas, n, noise, None, "ct_loss(...) on a fixed batch")


@exercise("cd_loss")
def test_cd_loss_no_gradient_into_the_target(sub, rng):
    """cd_loss with f_target = f_model: the gradient flows only through f_model (the target is detached)"""
    sigmas, n = cm.cm_sigmas(10), torch.tensor([0, 3, 8, 5])
    noise = torch.tensor([[0.3, -1.2], [1.0, 0.4], [-0.5, 0.8], [0.1, 0.1]])
    check_self_target_gradient(sub, "cd_loss", "cd", 3, 2, X, sigmas, n, noise,
                               Ref(GMMDenoiser, [[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.5], [0.4, 0.6]))


@exercise("ct_loss")
def test_ct_loss_no_gradient_into_the_target(sub, rng):
    """ct_loss with f_target = f_model: the gradient flows only through f_model (the target is detached)"""
    sigmas, n = cm.cm_sigmas(10), torch.tensor([0, 3, 8, 5])
    noise = torch.tensor([[0.3, -1.2], [1.0, 0.4], [-0.5, 0.8], [0.1, 0.1]])
    check_self_target_gradient(sub, "ct_loss", "ct", 3, 2, X, sigmas, n, noise)


@exercise("consistency_sample")
def test_consistency_sample_one_step(sub, rng):
    """consistency_sample with one step is f(x_T, T)"""
    x_T = 80.0 * X
    got = sub.call("consistency_sample", Ref(affine_consistency, 0.1, 0.01), x_T, [80.0], Ref(generator, 0))
    f = affine_consistency(0.1, 0.01)
    expect_close(got, f(x_T, torch.full((4,), 80.0)), "consistency_sample(f, x_T, [80.0], generator)", rtol=1e-4,
                 atol=1e-5, hints=[Hint(f(X, torch.full((4,), 80.0)),
                                        "x_T is already noise at sigma_max (x_T = T z): evaluate f(x_T, T) as it is.")])


@exercise("consistency_sample")
def test_consistency_sample_two_steps(sub, rng):
    """consistency_sample with two steps re-noises to tau and applies f again"""
    x_T = 80.0 * X
    f = affine_consistency(0.1, 0.01)
    got = sub.call("consistency_sample", Ref(affine_consistency, 0.1, 0.01), x_T, [80.0, 0.7], Ref(generator, 5))
    expected, hints = sample_variants(f, x_T, [80.0, 0.7], 5)
    expect_close(got, expected, "consistency_sample(f, x_T, [80.0, 0.7], generator)", rtol=1e-4, atol=1e-5,
                 hints=hints)


# ---------------------------------------------------------------------------------------------
# Questions: predict, then run (issue 13)
# ---------------------------------------------------------------------------------------------
ONE_STEP_WHY_NOT = {
    "a": "one step uses the slope at sigma = 80 only, and there D(x, 80) hardly depends on x: nothing in that one "
         "evaluation tells a point which mode to go to.",
    "c": "a step all the way to sigma = 0 removes all the noise: x = D(T z, T) is a denoised point, not a noisy one.",
    "d": "to land on the circle, D(x, 80) would have to know the direction of each mode from x; at sigma = 80 the "
         "noise hides it and D averages over all eight modes.",
}
ONE_STEP_WHERE = "section 1: D(x, sigma) is the average clean point given x (Tweedie's formula, notebook 09, section 4b)."

BOUNDARY_WHY_NOT = {
    "b": "that is EDM's denoiser (notebook 09): its c_out(sigma_min) is about 0.002. The consistency scalings are "
         "shifted by sigma_min.",
    "c": "at sigma_min the network's output is multiplied by c_out(sigma_min): look at that value.",
    "d": "f maps a point to the end of its trajectory; at sigma_min the point already is that end.",
}
BOUNDARY_WHERE = "section 1, the parameterisation: c_skip and c_out at sigma = epsilon (Song et al. 2023, eq. 7)."


@exercise("predict_one_step_ode")
def test_predict_one_step_ode(sub, rng):
    """predict_one_step_ode: where one solver step from T to 0 lands"""
    expect_choice(sub.call("predict_one_step_ode"), "b", "predict_one_step_ode()", ONE_STEP_WHY_NOT,
                  where=ONE_STEP_WHERE)


@exercise("predict_boundary")
def test_predict_boundary(sub, rng):
    """predict_boundary: an untrained consistency function at sigma_min"""
    expect_choice(sub.call("predict_boundary"), "a", "predict_boundary()", BOUNDARY_WHY_NOT, where=BOUNDARY_WHERE)

"""Notebook 08 (latent UNet): its manifest, the probes of the learner's networks, and the public checks.

The learner's ``ResBlock``, ``Attention2d`` and ``UNet`` are classes with their own random weights,
so they cannot be compared number by number with the reference. Probes build them inside the
sandbox, call them on inputs the grader chose and return the raw outputs (outputs for two
embeddings, times or labels, for permuted pixels and a changed batch neighbour, with every weight
zero; the input-output Jacobian; losses along a few optimiser steps). Every statistic and verdict
(relative changes, leaks, the Jacobian's rank) is computed by the tests, in the grader's process.
"""
from __future__ import annotations

import torch

from grader.engine.api import Hint, adam_losses, expect, expect_close, expect_scalar, exercise, relative_change  # noqa: F401  (relative_change: re-exported for the hidden tests)

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "timestep_embedding": 1,
    "ResBlock": 2,
    "Attention2d": 2,
    "UNet": 3,
    "reparameterize": 1,
    "vae_loss": 2,
    "latent_scale": 1,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "timestep_embedding": "course.embedding:timestep_embedding",
    "ResBlock": "course.unet:ResBlock",
    "Attention2d": "course.unet:Attention2d",
    "UNet": "course.unet:UNet",
    "reparameterize": "course.autoencoder:reparameterize",
    "vae_loss": "course.autoencoder:vae_loss",
    "latent_scale": "course.latent:latent_scale",
}


# ---------------------------------------------------------------------------------------------
# Helpers used by the probes (inside the sandbox)
# ---------------------------------------------------------------------------------------------
def _jiggle(module: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    """Add small noise to every parameter, so zero-initialised output layers do not hide anything."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _zero(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


def _n_params(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


# ---------------------------------------------------------------------------------------------
# Probes: probe_x(ns, ...) builds the learner's classes from namespace ``ns``, returns plain data
# ---------------------------------------------------------------------------------------------
def _output_or_error(build_and_run):
    """The output (detached), or the error it raised as text (so the test can add a hint)."""
    try:
        out = build_and_run()
        return out.detach() if isinstance(out, torch.Tensor) else out
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - a wrong architecture raises; report it as data
        return f"{type(exc).__name__}: {str(exc)[:300]}"


def probe_resblock_shapes(ns, configs, seed: int = 0):
    """Outputs of ResBlock(in_ch, out_ch, emb_dim)(x, emb) for (in_ch, out_ch, emb_dim, B, H, W)."""
    torch.manual_seed(seed)
    shapes = []
    for in_ch, out_ch, emb_dim, B, H, W in configs:
        shapes.append(_output_or_error(lambda: ns["ResBlock"](in_ch, out_ch, emb_dim)(
            torch.randn(B, in_ch, H, W), torch.randn(B, emb_dim))))
    return shapes


def probe_resblock_behaviour(ns, ch: int, emb_dim: int, seed: int = 0):
    """The outputs for two embeddings, and with every weight zero (and the input x)."""
    torch.manual_seed(seed)
    block = _jiggle(ns["ResBlock"](ch, ch, emb_dim))
    x = torch.randn(3, ch, 6, 6)
    emb_a, emb_b = torch.randn(3, emb_dim), torch.randn(3, emb_dim)
    with torch.no_grad():
        out_a, out_b = block(x, emb_a), block(x, emb_b)
        zeroed = _zero(block)(x, emb_a)
    return {"out_a": out_a.detach(), "out_b": out_b.detach(), "x": x, "zeroed": zeroed.detach()}


def probe_attention_shapes(ns, configs, seed: int = 0):
    """Outputs of Attention2d(ch, heads)(x) for (ch, heads, B, H, W)."""
    torch.manual_seed(seed)
    shapes = []
    for ch, heads, B, H, W in configs:
        shapes.append(_output_or_error(lambda: ns["Attention2d"](ch, heads=heads)(torch.randn(B, ch, H, W))))
    return shapes


def probe_attention_behaviour(ns, ch: int, heads: int, seed: int = 0):
    """The outputs for x, for x with image 1 replaced, for x with its pixels permuted by ``perm``,
    and with every weight zero (and x and perm). The tests judge permutation equivariance over
    pixels and batch independence from them."""
    torch.manual_seed(seed)
    attn = _jiggle(ns["Attention2d"](ch, heads=heads), 0.3)
    B, H, W = 2, 6, 6
    x = torch.randn(B, ch, H, W)
    x_other = x.clone()
    x_other[1] = torch.randn(ch, H, W)
    perm = torch.randperm(H * W)
    with torch.no_grad():
        out = attn(x)
        out_other = attn(x_other)
        out_of_permuted = attn(x.flatten(2)[:, :, perm].reshape(B, ch, H, W))
        zeroed = _zero(attn)(x)
    return {"x": x, "out": out.detach(), "out_other": out_other.detach(), "perm": perm,
            "out_of_permuted": out_of_permuted.detach(), "zeroed": zeroed.detach()}


def _unet_inputs(in_ch, n_classes, B, H):
    x = torch.randn(B, in_ch, H, H)
    t = torch.randint(0, 1000, (B,))
    y = torch.randint(0, n_classes, (B,)) if n_classes else None
    return x, t, y


def probe_unet_shapes(ns, configs, seed: int = 0):
    """Outputs of UNet(in_ch, base_ch, ch_mult, emb_dim, n_classes)(x, t, y) for (..., B, H)."""
    torch.manual_seed(seed)
    shapes = []
    for in_ch, base_ch, ch_mult, emb_dim, n_classes, B, H in configs:
        x, t, y = _unet_inputs(in_ch, n_classes, B, H)
        with torch.no_grad():
            shapes.append(_output_or_error(lambda: ns["UNet"](in_ch, base_ch, tuple(ch_mult), emb_dim, n_classes)(x, t, y)))
    return shapes


def probe_unet_conditioning(ns, seed: int = 0):
    """UNet(2, 8, (1, 2), 16, 10)'s outputs at (t_a, y_a), at another t, at another y, and at
    y=None and y = the null label (10)."""
    torch.manual_seed(seed)
    n_classes = 10
    net = _jiggle(ns["UNet"](2, 8, (1, 2), 16, n_classes))
    x = torch.randn(4, 2, 8, 8)
    t_a, t_b = torch.tensor([5, 100, 400, 900]), torch.tensor([700, 20, 950, 300])
    y_a, y_b = torch.tensor([0, 1, 2, 3]), torch.tensor([7, 8, 9, 4])
    with torch.no_grad():
        return {"out": net(x, t_a, y_a).detach(), "other_t": net(x, t_b, y_a).detach(),
                "other_y": net(x, t_a, y_b).detach(), "y_none": net(x, t_a, None).detach(),
                "y_null": net(x, t_a, torch.full((4,), n_classes)).detach()}


def probe_unet_jacobian(ns, seed: int = 0):
    """d output / d input of a UNet(1, 4, (1, 1, 1), 8) on one 8x8 image, flattened: (64, 64)."""
    torch.manual_seed(seed)
    net = _jiggle(ns["UNet"](1, 4, (1, 1, 1), 8))
    x = torch.randn(64)
    t = torch.tensor([300])
    jac = torch.autograd.functional.jacobian(lambda v: net(v.reshape(1, 1, 8, 8), t).reshape(-1), x)  # (64, 64)
    return jac.detach()


def probe_train_steps(ns, kind: str, steps: int = 25, seed: int = 0):
    """Losses along ``steps`` Adam steps fitting a fixed random target on a tiny batch; parameter count."""
    torch.manual_seed(seed)
    if kind == "ResBlock":
        module = ns["ResBlock"](3, 6, 8)
        x, emb, target = torch.randn(4, 3, 6, 6), torch.randn(4, 8), torch.randn(4, 6, 6, 6)
        loss_fn = lambda: ((module(x, emb) - target) ** 2).mean()  # noqa: E731
    else:  # UNet: fit the noise of a tiny batch, as in ddpm_loss
        module = ns["UNet"](1, 8, (1, 2), 16, 10)
        x, t, y = _unet_inputs(1, 10, 4, 8)
        target = torch.randn(4, 1, 8, 8)
        loss_fn = lambda: ((module(x, t, y) - target) ** 2).mean()  # noqa: E731
    losses = adam_losses(module.parameters(), loss_fn, steps, lr=1e-2 if kind == "ResBlock" else 3e-3)
    return {"losses": losses, "n_params": _n_params(module)}


# ---------------------------------------------------------------------------------------------
# Shared judgements (public and hidden tests)
# ---------------------------------------------------------------------------------------------
def judge_shapes(got, expected, what: str, hint: str) -> None:
    """``got``: the probe's outputs (or the error each raised, as text)."""
    for g, e, label in zip(got, expected, what):
        expect(not isinstance(g, str), f"{label} raised {g}", hint)
        expect(isinstance(g, torch.Tensor), f"{label} returned {type(g).__name__}, not a tensor.", hint)
        expect(list(g.shape) == list(e), f"{label}: expected output shape {tuple(e)}, got {tuple(g.shape)}.", hint)


def judge_zeroed_is_identity(report: dict, what: str) -> None:
    """With every weight zero, a residual block returns its input (the branch adds nothing)."""
    expect_close(report["zeroed"], report["x"], f"{what} with every parameter set to zero", atol=1e-5,
                 hints=[Hint(torch.zeros_like(report["x"]),
                             "with all weights zero your block returns 0: the residual connection is missing. "
                             "Return x + (what the branch computes), so the block starts close to the identity.")])


def judge_losses_decrease(report: dict, what: str) -> None:
    losses = report["losses"]
    expect(report["n_params"] > 0,
           f"{what} has no trainable parameters that model.parameters() can see.",
           "Hint: keep sub-layers as attributes, and lists of layers in nn.ModuleList (a Python list hides them "
           "from the optimiser).")
    expect(losses[-1] < 0.8 * losses[0],
           f"a few Adam steps on a tiny batch should lower the loss of {what}: it went from {losses[0]:.4g} to "
           f"{losses[-1]:.4g} ({report['n_params']} trainable parameters found).",
           "Hint: is every layer registered (attributes, or nn.ModuleList rather than a Python list), and does the "
           "output keep its gradient (no torch.no_grad(), .detach() or .data in forward)?")


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
@exercise("timestep_embedding")
def test_timestep_embedding_small(sub, rng):
    """timestep_embedding of t = 0 and t = 1 with dim 4"""
    got = sub.call("timestep_embedding", torch.tensor([0, 1]), 4)
    # half = 2, frequencies 1 and 1/100: [cos(t), cos(t/100), sin(t), sin(t/100)]
    t = torch.tensor([0.0, 1.0])[:, None]
    f = torch.tensor([1.0, 0.01])[None, :]
    expected = torch.cat([torch.cos(t * f), torch.sin(t * f)], dim=1)
    expect_close(got, expected, "timestep_embedding(t=[0, 1], dim=4)", hints=[
        Hint(torch.cat([torch.sin(t * f), torch.cos(t * f)], dim=1),
             "the halves are swapped: the cos half comes first, then the sin half.")])


@exercise("ResBlock")
def test_resblock_shapes(sub, rng):
    """ResBlock keeps the resolution and maps in_ch to out_ch channels"""
    configs = [(4, 4, 8, 2, 8, 8), (3, 8, 16, 1, 5, 7)]
    got = sub.probe("probe_resblock_shapes", configs)
    judge_shapes(got, [[b, o, h, w] for _, o, _, b, h, w in configs],
                 [f"ResBlock({i}, {o}, {e}) on x of shape {(b, i, h, w)}" for i, o, e, b, h, w in configs],
                 "Hint: use 3x3 convolutions with padding=1, and a 1x1 convolution on the skip path when "
                 "in_ch != out_ch.")


@exercise("Attention2d")
def test_attention_shapes(sub, rng):
    """Attention2d returns a tensor of its input's shape"""
    configs = [(8, 1, 2, 4, 4), (8, 2, 1, 3, 5)]
    got = sub.probe("probe_attention_shapes", configs)
    judge_shapes(got, [[b, c, h, w] for c, _, b, h, w in configs],
                 [f"Attention2d({c}, heads={n}) on x of shape {(b, c, h, w)}" for c, n, b, h, w in configs],
                 "Hint: flatten the H*W pixels into a sequence, attend, then reshape back to (B, C, H, W).")


@exercise("UNet")
def test_unet_shapes(sub, rng):
    """UNet returns an output of its input's shape"""
    configs = [(1, 8, (1, 2), 16, None, 2, 8), (2, 8, (1, 2), 16, 10, 2, 8)]
    got = sub.probe("probe_unet_shapes", configs)
    judge_shapes(got, [[b, c, h, h] for c, *_, b, h in configs],
                 [f"UNet{(c, bc, m, e, n)} on x of shape {(b, c, h, h)}" for c, bc, m, e, n, b, h in configs],
                 "Hint: every downsampling needs a matching upsampling, and the last convolution maps back "
                 "to in_ch channels.")


@exercise("reparameterize")
def test_reparameterize_small(sub, rng):
    """reparameterize with logvar = log 4 (std 2)"""
    mu = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    logvar = torch.full((2, 2), float(torch.log(torch.tensor(4.0))))
    eps = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    got = sub.call("reparameterize", mu, logvar, eps)
    expect_close(got, mu + 2 * eps, "reparameterize(mu, logvar = log 4, eps)", hints=[
        Hint(mu + 4 * eps, "exp(logvar) is the variance; the standard deviation is exp(logvar / 2)."),
        Hint(mu + logvar * eps, "logvar is the log-variance, not the standard deviation: use exp(logvar / 2)."),
    ])


@exercise("vae_loss")
def test_vae_loss_small(sub, rng):
    """vae_loss on a batch of two with a perfect reconstruction"""
    x = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.zeros(2, 2)
    got = sub.call("vae_loss", x, x.clone(), mu, logvar, 1.0)
    # KL per sample: 0.5 * sum(mu^2) = 0.5 and 2.0; mean 1.25
    expect_scalar(got, 1.25, "vae_loss(x, x_rec = x, mu, logvar = 0, beta = 1)", hints=[
        Hint(-1.25, "the KL term has the wrong sign: KL = -1/2 sum(1 + logvar - mu^2 - exp(logvar)) >= 0."),
        Hint(2.5, "the KL is summed over the batch: sum over dimensions per sample, then mean over the batch.")])


@exercise("latent_scale")
def test_latent_scale_small(sub, rng):
    """latent_scale of latents with standard deviation about 4"""
    z = 4 * torch.randn(8, 4, 16, 16, generator=torch.Generator().manual_seed(0)) + 1  # 8192 entries
    expected = 1 / float(z.std())
    got = sub.call("latent_scale", z)
    expect_scalar(got, expected, "latent_scale(latents)", rtol=1e-3,
                  hints=[Hint(float(z.std()), "return the inverse of the standard deviation, 1 / std.")])

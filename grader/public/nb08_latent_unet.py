"""Notebook 08 (latent UNet): its manifest, the probes of the learner's networks, and the public checks.

The learner's ``ResBlock``, ``Attention2d`` and ``UNet`` are classes with their own random weights,
so they cannot be compared number by number with the reference. Probes build them inside the
sandbox, call them on inputs the grader chose and return the raw outputs (outputs for two
embeddings, times or labels, for permuted pixels and a changed batch neighbour, with every weight
zero; the input-output Jacobian; losses along a few optimiser steps). Every statistic and verdict
(relative changes, leaks, the Jacobian's rank) is computed by the tests, in the grader's process.
"""
from __future__ import annotations

import math

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
    "derive_attention_params": 0.5,
    "predict_compression": 0.5,
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
    # the far pixels (H-1, W-1) and (H-1, W-2) of image 0 swap their channel-0 values: every per-channel
    # statistic (any normalisation's) is unchanged, and both are outside a 3x3 neighbourhood of (0, 0)
    x_far = x.clone()
    x_far[0, 0, H - 1, W - 1], x_far[0, 0, H - 1, W - 2] = x[0, 0, H - 1, W - 2], x[0, 0, H - 1, W - 1]
    with torch.no_grad():
        out = attn(x)
        out_far = attn(x_far)
        out_other = attn(x_other)
        out_of_permuted = attn(x.flatten(2)[:, :, perm].reshape(B, ch, H, W))
        zeroed = _zero(attn)(x)
    return {"x": x, "out": out.detach(), "out_far": out_far.detach(), "out_other": out_other.detach(), "perm": perm,
            "out_of_permuted": out_of_permuted.detach(), "zeroed": zeroed.detach()}


NEAR_UNIFORM_EPS = (1e-3, 2.5e-4, 1e-5, 2.5e-6)  # two pairs: for normalisations of any gain


def probe_attention_near_uniform(ns, ch: int, heads: int, seed: int = 0):
    """Attention2d (in float64) on images whose pixels are all nearly the same: x = u + eps * delta, with
    u one random vector of channels for every pixel and delta random per pixel, for each eps of
    NEAR_UNIFORM_EPS. Returns the inputs and outputs; the tests judge how the spread of the attention
    branch (output - input) over the pixels shrinks with eps (quadratically when each query's weights
    sum to one over the keys, linearly when they are normalised over the queries)."""
    torch.manual_seed(seed)
    attn = _jiggle(ns["Attention2d"](ch, heads=heads), 0.3).double()
    u = torch.randn(1, ch, 1, 1, dtype=torch.float64).expand(1, ch, 5, 5)
    delta = torch.randn(1, ch, 5, 5, dtype=torch.float64)
    xs = [u + eps * delta for eps in NEAR_UNIFORM_EPS]
    with torch.no_grad():
        return {"eps": list(NEAR_UNIFORM_EPS), "x": xs, "out": [attn(x).detach() for x in xs]}


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


def probe_unet_jacobian_batched(ns, seed: int = 0):
    """d output / d input (64, 64) of a UNet(1, 4, (1, 1, 1), 8) on one 8x8 image, in one pass: 64 copies of
    the image in a batch, row k the gradient of output pixel k of copy k (the images of a batch are
    independent)."""
    torch.manual_seed(seed)
    net = _jiggle(ns["UNet"](1, 4, (1, 1, 1), 8))
    x = torch.randn(1, 64).repeat(64, 1).requires_grad_(True)  # (64 copies, 64 pixels)
    out = net(x.reshape(64, 1, 8, 8), torch.full((64,), 300)).reshape(64, 64)
    (jac,) = torch.autograd.grad(out.diagonal().sum(), x)
    return jac.detach()  # (64, 64): [k, j] = d out_k / d x_j


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


def _hint(message: str, where: str = "") -> list[str]:
    """Feedback lines of a staged hint for ``expect``: what is wrong, then where to look."""
    return Hint(None, message, where).lines()


def judge_zeroed_is_identity(report: dict, what: str) -> None:
    """With every weight zero, a residual block returns its input (the branch adds nothing)."""
    expect_close(report["zeroed"], report["x"], f"{what} with every parameter set to zero", atol=1e-5,
                 hints=[Hint(torch.zeros_like(report["x"]),
                             "with all weights zero your block returns 0: the residual connection is missing. "
                             "The block must add its branch to its input, so that it starts close to the identity.",
                             where="the last step of the block's equation: the input (or its skip path) plus "
                                   "what the branch computes")])


def judge_resblock_behaviour(report: dict, what: str) -> None:
    """The embedding changes a ResBlock's output, and the block is residual."""
    emb_change = relative_change(report["out_a"], report["out_b"])
    expect(emb_change > 1e-3,
           f"changing emb changed {what}'s output by only {emb_change:.2g} (relative).",
           *_hint("the time embedding is ignored (or normalised away): it must shift each output channel by its "
                  "own amount, between the two convolutions. A shift that is the same for every channel (or "
                  "pixel) is subtracted again by the next GroupNorm.",
                  "section 2's first equation: the term W SiLU(emb), a learned projection to out_ch numbers, "
                  "one per channel, broadcast over H and W"))
    judge_zeroed_is_identity(report, what)


def judge_attention_reach(report: dict, what: str) -> None:
    """Attention is residual, a pixel sees a far pixel of its own image, and images do not mix."""
    out, x = report["out"], report["x"]
    expect(out.shape == x.shape and report["out_other"].shape == x.shape,
           f"{what} returned shape {tuple(out.shape)} for an input of shape {tuple(x.shape)}.",
           *_hint("the attended pixels must be reshaped back to the input's shape.",
                  "the last step: from the sequence of H*W pixels back to (B, C, H, W)"))
    judge_zeroed_is_identity(report, what)
    batch_leak = float((report["out_other"][0] - out[0]).abs().max())
    expect(batch_leak < 1e-4,
           f"changing image 1 of the batch changed {what}'s output for image 0 (by up to {batch_leak:.3g}).",
           *_hint("attention must stay within each image: the pixels of one image attend only to pixels of the "
                  "same image.", "the reshape into a sequence: the batch dimension stays separate from the "
                                 "H*W pixel dimension"))
    far = float((report["out_far"][0, :, 0, 0] - out[0, :, 0, 0]).abs().max())
    expect(far > 1e-4 * (1 + float(out[0, :, 0, 0].abs().max())),
           f"changing two pixels in the far corner of image 0 did not change {what}'s output at pixel (0, 0) "
           f"(change {far:.2g}).",
           *_hint("every pixel must attend to all H*W pixels of its image; a convolution only sees its neighbours.",
                  "section 3: queries, keys and values come from 1x1 projections, and the softmax runs over all "
                  "H*W pixels"))


def judge_attention_keys(report: dict, what: str) -> None:
    """Each query's attention weights sum to one over the keys, seen from outside: on an image whose pixels
    are nearly equal (x = u + eps delta), every pixel averages nearly the same values with nearly the same
    weights, so the branch's spread over the pixels shrinks like eps^2; weights normalised over the queries
    give each query its own total weight, a spread proportional to eps."""
    spreads = []
    for x, out in zip(report["x"], report["out"]):
        branch = (out - x).flatten(2)  # (1, C, HW): what the attention adds at each pixel
        spreads.append(float((branch - branch.mean(-1, keepdim=True)).abs().max()))
    eps = report["eps"]
    orders = [math.log(max(spreads[i], 1e-300) / max(spreads[i + 1], 1e-300)) / math.log(eps[i] / eps[i + 1])
              for i in (0, 2)]
    expect(max(orders) > 1.5,
           f"on an image whose pixels differ by eps, the output of {what} minus its input differs between pixels "
           f"in proportion to eps (measured order {max(orders):.2f}; correct attention: order 2). Each query's "
           "weights do not sum to one over the keys.",
           *_hint("the softmax normalises over the wrong axis (over the queries): for each query, its weights "
                  "over all keys must form a distribution (non-negative, summing to one).",
                  "section 3's equation: which axis of the (H*W) x (H*W) matrix Q K^T the softmax runs over "
                  "(rows are queries, columns are keys)"))


def judge_unet_conditioning(outputs: dict) -> None:
    """The time and the label change the UNet's output; y=None is the null label."""
    t_change = relative_change(outputs["out"], outputs["other_t"])
    y_change = relative_change(outputs["out"], outputs["other_y"])
    null_gap = relative_change(outputs["y_none"], outputs["y_null"])
    expect(t_change > 1e-3, f"changing t changed the UNet's output by only {t_change:.2g} (relative).",
           *_hint("the time is ignored: the network must be told t, through its sinusoidal embedding and the MLP, "
                  "in every ResBlock.", "section 4's first bullet (embedding): the embedding of t that every "
                                        "ResBlock receives"))
    expect(y_change > 1e-3, f"changing the label y changed the UNet's output by only {y_change:.2g} (relative).",
           *_hint("the label is ignored: its learned embedding must be added to the time embedding.",
                  "section 4's first bullet (embedding): the label embedding with n_classes + 1 rows"))
    expect(null_gap < 1e-4,
           f"y=None and y = n_classes (the null label) gave different outputs ({null_gap:.2g}).",
           *_hint("y=None means 'no label', which is the null label n_classes.",
                  "section 4's first bullet: the extra row n_classes of the label embedding"))


def judge_unet_rank(jac: torch.Tensor) -> None:
    """The Jacobian d output / d input (64, 64) of UNet(1, 4, (1, 1, 1), 8) has more rank than the bottleneck."""
    svals = torch.linalg.svdvals(jac.double())
    rank = int((svals > 1e-3 * svals.max().clamp(min=1e-12)).sum()) if float(svals.max()) > 0 else 0
    expect(rank > 32,
           f"the Jacobian d output / d input of UNet(1, 4, (1, 1, 1), 8) on an 8x8 image has rank {rank} of 64: "
           "everything passes through the 2x2 bottleneck (4 channels x 2 x 2 = 16 numbers).",
           *_hint("the skip connections are missing: the features kept at each level on the way down must be "
                  "joined to the upsampled features of the same resolution on the way up.",
                  "section 4's 'down' and 'up' bullets: what is kept, and where it is concatenated"))


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
def seed_from(rng) -> int:
    """A probe's seed, drawn from the test's generator."""
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=rng))


@exercise("timestep_embedding")
def test_timestep_embedding_small(sub, rng):
    """timestep_embedding of t = 0 and t = 1 with dim 4"""
    got = sub.call("timestep_embedding", torch.tensor([0, 1]), 4)
    # half = 2, frequencies 1 and 1/100: [cos(t), cos(t/100), sin(t), sin(t/100)]
    t = torch.tensor([0.0, 1.0])[:, None]
    f = torch.tensor([1.0, 0.01])[None, :]
    expected = torch.cat([torch.cos(t * f), torch.sin(t * f)], dim=1)
    where = "section 1's equation for emb(t): the order of its entries, and the exponent of f_i"
    f_by_dim = torch.tensor([1.0, 0.1])[None, :]  # exp(-log(10000) i / dim) with dim = 4
    interleaved = torch.stack([torch.cos(t * f), torch.sin(t * f)], dim=-1).reshape(2, 4)
    expect_close(got, expected, "timestep_embedding(t=[0, 1], dim=4)", hints=[
        Hint(torch.cat([torch.sin(t * f), torch.cos(t * f)], dim=1),
             "the halves are swapped: the cos half comes first, then the sin half.", where=where),
        Hint(interleaved, "cos and sin are interleaved (cos, sin, cos, sin, ...): all cosines come first, then all "
                          "sines.", where=where),
        Hint(torch.cat([torch.cos(t * f_by_dim), torch.sin(t * f_by_dim)], dim=1),
             "the frequencies divide i by half = dim // 2, not i / dim.", where=where)])


@exercise("ResBlock")
def test_resblock_shapes(sub, rng):
    """ResBlock keeps the resolution and maps in_ch to out_ch channels"""
    configs = [(4, 4, 8, 2, 8, 8), (3, 8, 16, 1, 5, 7)]
    got = sub.probe("probe_resblock_shapes", configs)
    judge_shapes(got, [[b, o, h, w] for _, o, _, b, h, w in configs],
                 [f"ResBlock({i}, {o}, {e}) on x of shape {(b, i, h, w)}" for i, o, e, b, h, w in configs],
                 "Hint: the 3x3 convolutions must keep H and W (pad by one pixel), and the skip path must change "
                 "the channels when in_ch != out_ch (section 2).")


@exercise("ResBlock")
def test_resblock_embedding_and_residual(sub, rng):
    """ResBlock: the output changes when the embedding does, and with every weight zero the block is the identity"""
    judge_resblock_behaviour(sub.probe("probe_resblock_behaviour", 8, 16, seed_from(rng)), "ResBlock(8, 8, 16)")


@exercise("Attention2d")
def test_attention_shapes(sub, rng):
    """Attention2d returns a tensor of its input's shape"""
    configs = [(8, 1, 2, 4, 4), (8, 2, 1, 3, 5)]
    got = sub.probe("probe_attention_shapes", configs)
    judge_shapes(got, [[b, c, h, w] for c, _, b, h, w in configs],
                 [f"Attention2d({c}, heads={n}) on x of shape {(b, c, h, w)}" for c, n, b, h, w in configs],
                 "Hint: flatten the H*W pixels into a sequence, attend, then reshape back to (B, C, H, W).")


@exercise("Attention2d")
def test_attention_residual_global_per_image(sub, rng):
    """Attention2d: residual, a pixel depends on a far pixel of its own image and on no pixel of another image"""
    judge_attention_reach(sub.probe("probe_attention_behaviour", 8, 2, seed_from(rng)), "Attention2d(8, heads=2)")


@exercise("Attention2d")
def test_attention_weights_over_keys(sub, rng):
    """Attention2d: each query's weights are a distribution over the keys (seen on nearly uniform images)"""
    judge_attention_keys(sub.probe("probe_attention_near_uniform", 8, 2, seed_from(rng)), "Attention2d(8, heads=2)")


@exercise("UNet")
def test_unet_shapes(sub, rng):
    """UNet returns an output of its input's shape"""
    configs = [(1, 8, (1, 2), 16, None, 2, 8), (2, 8, (1, 2), 16, 10, 2, 8)]
    got = sub.probe("probe_unet_shapes", configs)
    judge_shapes(got, [[b, c, h, h] for c, *_, b, h in configs],
                 [f"UNet{(c, bc, m, e, n)} on x of shape {(b, c, h, h)}" for c, bc, m, e, n, b, h in configs],
                 "Hint: every downsampling needs a matching upsampling, and the last convolution maps back "
                 "to in_ch channels.")


@exercise("UNet")
def test_unet_time_and_label(sub, rng):
    """UNet: the output changes with the time and with the label; y=None is the null label"""
    judge_unet_conditioning(sub.probe("probe_unet_conditioning", seed_from(rng)))


@exercise("UNet")
def test_unet_skip_connections(sub, rng):
    """UNet: the skip connections carry full-resolution information (the Jacobian's rank)"""
    judge_unet_rank(sub.probe("probe_unet_jacobian_batched", seed_from(rng)))


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
        Hint(-1.25, "the KL term has the wrong sign: a KL divergence is never negative.",
             where="the KL term of L: the factor -1/2 in front of the sum over k"),
        Hint(2.5, "the KL is summed over the batch: sum over dimensions per sample, then mean over the batch.",
             where="the 1/B in front of the sum over the batch b")])
    # with mu = 0 and logvar = 0 the KL is 0: the reconstruction term alone. Per-sample sums of squared
    # errors 0.25 and 1.0 over 2 pixels each; their batch mean is 0.625
    x_rec = x + torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    got = sub.call("vae_loss", x, x_rec, torch.zeros(2, 2), torch.zeros(2, 2), 1.0)
    expect_scalar(got, 0.625, "vae_loss(x, x_rec, mu = 0, logvar = 0, beta = 1)", hints=[
        Hint(0.3125, "the reconstruction error is a mean over all elements: it must be a sum over each sample's "
                     "pixels, averaged over the batch.",
             where="the reconstruction term of L: the sum over the pixels j of one sample, then the 1/B"),
        Hint(1.25, "the reconstruction error is summed over the batch: average the per-sample sums over the batch.",
             where="the 1/B in front of the sum over the batch b")])


@exercise("latent_scale")
def test_latent_scale_small(sub, rng):
    """latent_scale of latents with standard deviation about 4"""
    z = 4 * torch.randn(8, 4, 16, 16, generator=torch.Generator().manual_seed(0)) + 1  # 8192 entries
    expected = 1 / float(z.std())
    got = sub.call("latent_scale", z)
    expect_scalar(got, expected, "latent_scale(latents)", rtol=1e-3,
                  hints=[Hint(float(z.std()), "return the inverse of the standard deviation, 1 / std.",
                              where="section 6's equation for s"),
                         Hint(float(1 / z.var()), "that is 1 / variance: the scale divides by the standard deviation.",
                              where="section 6's equation for s"),
                         Hint(float(1 / z.pow(2).mean().sqrt()),
                              "that is 1 / root-mean-square: the standard deviation subtracts the mean first.",
                              where="section 6's equation for s: std(z) of all entries, around their mean")])


# -- questions (derive / predict, then run) ----------------------------------------------------------
def attention_params_mistakes(ch: int, heads: int) -> list[Hint]:
    where = "count each part of section 3's block: the GroupNorm, the 1x1 convolution to 3C channels, the projection"
    return [
        Hint(4 * ch * ch + 4 * ch, "the GroupNorm has parameters too: a scale and a shift per channel.", where=where),
        Hint(4 * ch * ch + 2 * ch, "the 1x1 convolutions have biases: one per output channel.", where=where),
        Hint(3 * ch * ch + 5 * ch, "the output projection (C to C channels) is missing from the count.", where=where),
        Hint(heads * (4 * ch * ch + 6 * ch), "heads add no weights: they split the C channels of Q, K and V "
                                             "into groups.", where=where),
        Hint(4 * ch * ch // heads + 6 * ch, "heads do not divide the weights either: each 1x1 convolution maps "
                                            "all C channels to all of its output channels.", where=where),
    ]


def judge_attention_params(got, ch: int, heads: int) -> None:
    expect_scalar(got, 4 * ch * ch + 6 * ch, f"derive_attention_params(ch={ch}, heads={heads})", rtol=1e-9,
                  hints=attention_params_mistakes(ch, heads))


COMPRESSION_WHERE = "the shape of the latent: what each stride-2 convolution does to H and W, and the latent's channels"


def judge_compression(got) -> None:
    expect_scalar(got, 8.0, "predict_compression()", reveal=False, rtol=1e-9, hints=[
        Hint(4.0, "that is the factor per side (16 to 4); the number of positions falls by its square.",
             where=COMPRESSION_WHERE),
        Hint(16.0, "the latent has 2 channels where the image has 1.", where=COMPRESSION_WHERE),
        Hint(2.0, "two stride-2 convolutions halve H and W twice each: 16x16 positions become 4x4.",
             where=COMPRESSION_WHERE),
        Hint(1 / 8, "the factor asked is (numbers in the image) / (numbers in the latent), more than 1.",
             where=COMPRESSION_WHERE),
    ])


@exercise("derive_attention_params", weight=0.5)
def test_derive_attention_params_small(sub, rng):
    """derive_attention_params for ch = 8 with 2 heads"""
    judge_attention_params(sub.call("derive_attention_params", 8, 2), 8, 2)


@exercise("predict_compression", weight=0.5)
def test_predict_compression(sub, rng):
    """predict_compression: numbers in a 16x16 digit / numbers in its latent"""
    judge_compression(sub.call("predict_compression"))

"""Notebook 12 (editing, control and personalisation): manifest, factories, probes and public checks.

Functions (``sdedit``, ``invert_then_edit``, ``dreambooth_loss``, ``in_context_tokens``) are
compared with the course library on inputs the grader draws. The learner's classes (``ZeroConv``,
``ControlAdapter``, ``LoRALinear``) and ``inject_lora`` have their own random weights: probes build
them in the sandbox around a base the grader chose and return raw outputs (before and after a few
optimiser steps, with weights the grader set); the tests judge those numbers in the grader's process.
"""
from __future__ import annotations

import torch
from torch import nn

from course import control, editing, in_context, lora, personalize
from course.ddim import ddim_timesteps
from course.nets import TimeMLP
from course.schedules import make_alpha_bar
from course.unet import UNet
from grader.engine.api import Hint, Ref, adam_losses, expect, expect_choice, expect_close, expect_scalar, exercise

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "sdedit": 2,
    "invert_then_edit": 3,
    "ZeroConv": 1,
    "ControlAdapter": 3,
    "LoRALinear": 3,
    "inject_lora": 2,
    "dreambooth_loss": 2,
    "in_context_tokens": 1,
    "predict_sdedit_tradeoff": 0.5,  # questions ("predict, then run"): half an answer cell's weight
    "derive_lora_params": 0.5,
}

# ControlAdapter and inject_lora are probed with the learner's own ZeroConv and LoRALinear (no reference of an
# exercise of 12 is reachable while 12 is graded, and its public checks run in a bundle through 12); a wrong
# ZeroConv or LoRALinear then costs points there too, and the feedback's dependency note names it.

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "sdedit": "course.editing:sdedit",
    "invert_then_edit": "course.editing:invert_then_edit",
    "ZeroConv": "course.control:ZeroConv",
    "ControlAdapter": "course.control:ControlAdapter",
    "LoRALinear": "course.lora:LoRALinear",
    "inject_lora": "course.lora:inject_lora",
    "dreambooth_loss": "course.personalize:dreambooth_loss",
    "in_context_tokens": "course.in_context:in_context_tokens",
}


# ---------------------------------------------------------------------------------------------
# Factories (built in the sandbox and, with api.build, in the grader)
# ---------------------------------------------------------------------------------------------
def random_eps_model(seed: int, n_classes: int = 4, side: int = 4):
    """A seeded, untrained conditional TimeMLP noise predictor on (B, 1, side, side) images:
    ``model(x, t, y=None)`` with t a LongTensor (B,) of steps."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = TimeMLP(dim=side * side, hidden=32, depth=2, emb_dim=16, n_classes=n_classes).eval()

    def model(x, t, y=None):
        with torch.no_grad():
            return net(x.reshape(x.shape[0], -1), t, y).reshape(x.shape)

    return model


def random_velocity_model(seed: int, n_classes: int = 4, side: int = 4):
    """A seeded, untrained conditional TimeMLP velocity ``model(x, t, c)`` with t float (B,) in [0, 1]."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = TimeMLP(dim=side * side, hidden=32, depth=2, emb_dim=16, time_scale=1000.0, n_classes=n_classes)

    def model(x, t, c):
        return net(x.reshape(x.shape[0], -1), t, c).reshape(x.shape)

    return model


def small_unet(seed: int, in_ch: int = 2, n_classes: int = 4) -> UNet:
    """A seeded ``course.unet.UNet(in_ch, 8, (1, 2), 16, n_classes)`` with its weights jiggled (so no
    layer is silent): the frozen base of the ControlAdapter checks."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = UNet(in_ch, 8, (1, 2), 16, n_classes=n_classes)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def seeded_linear(seed: int, d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Linear(d_in, d_out, bias=bias)


# ---------------------------------------------------------------------------------------------
# Probe helpers (inside the sandbox)
# ---------------------------------------------------------------------------------------------
def _n_trainable(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


# ---------------------------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------------------------
def probe_zeroconv(ns, ch_in: int, ch_out: int, x, weight, bias):
    """ZeroConv(ch_in, ch_out) on x when new, its trainable parameter count, the gradient of a loss with
    respect to its parameters at the start, and its output after setting weight (ch_out, ch_in, 1, 1) and
    bias (ch_out,) into the parameters of those shapes."""
    zc = ns["ZeroConv"](ch_in, ch_out)
    fresh = zc(x)
    target = torch.ones_like(fresh) if fresh.shape == x.shape[:1] + (ch_out,) + x.shape[2:] else None
    grad_norm = 0.0
    params = [p for p in zc.parameters() if p.requires_grad]
    if target is not None and params and fresh.requires_grad:
        grads = torch.autograd.grad((fresh * target).sum(), params, allow_unused=True)
        grad_norm = float(sum(g.abs().sum() for g in grads if g is not None))
    shapes = []
    with torch.no_grad():
        for p in zc.parameters():
            shapes.append(list(p.shape))
            if tuple(p.shape) == tuple(weight.shape):
                p.copy_(weight)
            elif tuple(p.shape) == tuple(bias.shape):
                p.copy_(bias)
        set_out = zc(x)
    return {"fresh": fresh.detach(), "n_trainable": _n_trainable(zc), "grad_norm": grad_norm,
            "shapes": shapes, "set_out": set_out.detach()}


def probe_control_adapter(ns, seed: int, cond_ch: int = 3, steps: int = 6):
    """A ControlAdapter around a frozen ``small_unet(seed)``: its output when new and the base's; whether
    any base parameter is left trainable; its trainable parameter count and that of the base's encoder;
    losses along a few Adam steps fitting a target that depends on the condition; afterwards, how much
    the base's weights moved and how much two conditions change the output."""
    torch.manual_seed(seed)
    base = small_unet(seed)
    x, t = torch.randn(4, 2, 8, 8), torch.randint(0, 1000, (4,))
    y = torch.randint(0, 4, (4,))
    cond_a, cond_b = torch.randn(4, cond_ch, 8, 8), torch.randn(4, cond_ch, 8, 8)
    with torch.no_grad():
        base_out = base(x, t, y)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    encoder = [base.stem, base.down_blocks, base.downsamples, base.mid1]
    n_encoder = int(sum(p.numel() for m in encoder for p in m.parameters()))
    adapter = ns["ControlAdapter"](base, cond_ch)  # with the learner's own ZeroConv
    with torch.no_grad():
        fresh = adapter(x, t, cond_a, y)
    base_trainable = any(p.requires_grad for p in base.parameters())
    n_trainable = _n_trainable(adapter)
    target = base_out + 0.5 * cond_a.mean(1, keepdim=True).expand_as(base_out)  # needs the condition
    losses = adam_losses(adapter.parameters(), lambda: ((adapter(x, t, cond_a, y) - target) ** 2).mean(), steps, 1e-2)
    with torch.no_grad():
        out_a, out_b = adapter(x, t, cond_a, y), adapter(x, t, cond_b, y)
    base_moved = max(float((base.state_dict()[k] - v).abs().max()) for k, v in before.items())
    return {"fresh": fresh, "base_out": base_out, "base_trainable": base_trainable, "n_trainable": n_trainable,
            "n_encoder": n_encoder, "losses": losses, "base_moved": base_moved,
            "cond_effect": float((out_a - out_b).abs().mean())}


def probe_lora(ns, seed: int, d_in: int, d_out: int, rank: int, alpha: float, x, A, B):
    """LoRALinear(seeded_linear, rank, alpha): outputs of the base and of the new LoRA on x; trainable
    parameter count; whether the base weight is trainable; the gradients of A and B at the start; then
    with A and B set to the given values, its output, and its merge()'s weight, bias and output."""
    base = seeded_linear(seed, d_in, d_out)
    with torch.no_grad():
        base_out = base(x)
    lora = ns["LoRALinear"](base, rank, alpha)
    fresh = lora(x)
    grad_A = grad_B = -1.0
    if isinstance(getattr(lora, "A", None), torch.Tensor) and isinstance(getattr(lora, "B", None), torch.Tensor):
        if fresh.requires_grad and lora.A.requires_grad and lora.B.requires_grad:
            gA, gB = torch.autograd.grad((fresh * torch.ones_like(fresh)).sum(), [lora.A, lora.B], allow_unused=True)
            grad_A = float(gA.abs().sum()) if gA is not None else 0.0
            grad_B = float(gB.abs().sum()) if gB is not None else 0.0
    result = {"base_out": base_out, "fresh": fresh.detach(), "n_trainable": _n_trainable(lora),
              "base_trainable": bool(base.weight.requires_grad), "grad_A": grad_A, "grad_B": grad_B,
              "A_shape": list(getattr(lora, "A", torch.empty(0)).shape),
              "B_shape": list(getattr(lora, "B", torch.empty(0)).shape)}
    with torch.no_grad():
        lora.A.copy_(A)
        lora.B.copy_(B)
        result["set_out"] = lora(x)
        merged = lora.merge()
        result["merged_weight"] = merged.weight.detach().clone()
        result["merged_bias"] = merged.bias.detach().clone()
        result["merged_out"] = merged(x)
    return result


def probe_inject_lora(ns, seed: int, rank: int, alpha: float, names):
    """inject_lora on ``small_unet(seed)``: the output before and after (same input); the qualified names
    of the modules that now hold an A and a B; the trainable parameters' names and count."""
    torch.manual_seed(seed)
    net = small_unet(seed)
    x, t, y = torch.randn(3, 2, 8, 8), torch.randint(0, 1000, (3,)), torch.randint(0, 4, (3,))
    with torch.no_grad():
        before = net(x, t, y)
    returned = ns["inject_lora"](net, rank, alpha, list(names))  # with the learner's own LoRALinear
    model = returned if isinstance(returned, nn.Module) else net
    with torch.no_grad():
        after = model(x, t, y)
    adapted = sorted(name for name, m in model.named_modules()
                     if isinstance(getattr(m, "A", None), nn.Parameter) and isinstance(getattr(m, "B", None), nn.Parameter))
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    return {"before": before, "after": after, "adapted": adapted, "trainable": trainable,
            "n_trainable": _n_trainable(model)}


# ---------------------------------------------------------------------------------------------
# Shared judgements (public and hidden tests)
# ---------------------------------------------------------------------------------------------
def hint(message: str, where: str = "") -> list[str]:
    """The feedback lines of a staged hint (what is wrong, then where to look) for ``expect``."""
    return Hint(None, message, where=where).lines()


def judge_zeroconv(r: dict, ch_in: int, ch_out: int, x, weight, bias) -> None:
    expect(r["n_trainable"] == ch_in * ch_out + ch_out,
           f"ZeroConv({ch_in}, {ch_out}) has {r['n_trainable']} trainable parameters; a 1x1 convolution with a "
           f"bias has {ch_in * ch_out + ch_out}.",
           *hint("a zero convolution is one trainable 1x1 convolution from ch_in to ch_out channels, with a bias.",
                 where="section 3: the ZeroConv paragraph (what it is, and that it learns)."))
    expect_close(r["fresh"], torch.zeros(x.shape[0], ch_out, *x.shape[2:]), "a new ZeroConv's output", atol=1e-7,
                 hints=[])
    expect(r["grad_norm"] > 0, "a new ZeroConv's weight gets no gradient: it could never learn.",
           *hint("its output must come from its (zero-initialised, trainable) weight and bias, not be a constant zero.",
                 where="section 3: ZeroConv starts at zero but is an ordinary convolution that training moves."))
    expected = torch.nn.functional.conv2d(x, weight, bias)
    expect_close(r["set_out"], expected, "ZeroConv with its weight and bias set", rtol=1e-4, atol=1e-5,
                 hints=[Hint(torch.nn.functional.conv2d(x, weight), "the bias is missing from the output.")])


def zeroconv_fresh_hint(r: dict) -> None:
    """A new ZeroConv that does not output zero: say why (the commonest mistake)."""
    expect(float(r["fresh"].abs().max()) < 1e-7,
           f"a new ZeroConv's output is not zero (largest entry {float(r['fresh'].abs().max()):.3g}): its "
           "weight or bias is not zero.",
           *hint("a new convolution starts with random weights and bias; a zero convolution starts with both at zero.",
                 where="section 3: the ZeroConv paragraph (Zhang et al. 2023, Sec. 3.1)."))


def judge_adapter_untrained(r: dict) -> None:
    gap = float((r["fresh"] - r["base_out"]).abs().max())
    expect(gap < 1e-5,
           f"an untrained ControlAdapter changed the base's output (by up to {gap:.3g}): it must start as the "
           "base model exactly.",
           *hint("every path from the copy (and from the condition) into the base must go through a zero "
                 "convolution, and the copy's features are added to the base's, not put in their place.",
                 where="section 3's equation for the controlled block: y_c = F(x) + Z(F_copy(x + Z(c)))."))


def judge_adapter_training(r: dict) -> None:
    expect(not r["base_trainable"] and r["base_moved"] == 0.0,
           f"the base model is not frozen (its weights moved by {r['base_moved']:.3g} during training).",
           *hint("ControlNet locks the base: only the copy and the zero convolutions train.",
                 where="section 3: which parameters are frozen, and where (when the adapter is built)."))
    expect(r["n_trainable"] >= r["n_encoder"],
           f"the adapter has {r['n_trainable']} trainable parameters, fewer than the base's encoder "
           f"({r['n_encoder']}): it is not a trainable copy of the encoder.",
           *hint("the adapter's encoder is a trainable copy (its own weights, starting from the base's) of the "
                 "base's encoder.", where="section 3: which parts of the base are copied, and that the copy trains."))
    expect(r["losses"][-1] < r["losses"][0],
           f"a few Adam steps did not lower the loss ({r['losses'][0]:.4g} -> {r['losses'][-1]:.4g}).",
           *hint("the zero convolutions and the copy must be trainable parameters that the adapter's parameters() sees.",
                 where="the adapter's __init__: how its parts are stored."))
    expect(r["cond_effect"] > 1e-4,
           "after training, changing the condition map does not change the adapter's output: the condition "
           "never reaches the network.",
           *hint("the condition map must enter the copy, through its own zero convolution.",
                 where="section 3's equation: the Z(c) term, added to the copy's input features."))


def judge_lora(r: dict, base_weight, base_bias, x, A, B, rank: int, alpha: float) -> None:
    d_out, d_in = base_weight.shape
    expect(r["A_shape"] == [rank, d_in] and r["B_shape"] == [d_out, rank],
           f"LoRALinear's A has shape {tuple(r['A_shape'])} and B {tuple(r['B_shape'])}; expected A "
           f"{(rank, d_in)} and B {(d_out, rank)} (the update is B @ A, of W's shape).",
           *hint("A and B must be parameters of the layer with those names and shapes.",
                 where="section 4's equation: A is r x d_in, B is d_out x r."))
    expect_close(r["fresh"], r["base_out"], "a new LoRALinear's output (it must equal the base's)", atol=1e-6,
                 hints=[])
    expect(not r["base_trainable"] and r["n_trainable"] == rank * (d_in + d_out),
           f"LoRALinear has {r['n_trainable']} trainable parameters (base weight trainable: {r['base_trainable']}); "
           f"only A and B, {rank * (d_in + d_out)} numbers, should train.",
           *hint("the base layer's weight and bias must be frozen: only A and B train.",
                 where="section 4: what LoRA trains and what it keeps fixed."))
    expect(r["grad_B"] > 0,
           "at the start, B gets no gradient: with A and B both zero (or A zero), LoRA can never learn.",
           *hint("Hu et al. initialise A with random numbers and only B with zeros, so B A = 0 but B's gradient "
                 "(which involves A x) is not.", where="section 4: the initialisation of A and B, and B's gradient."))
    scale = alpha / rank
    expected = x @ base_weight.T + base_bias + scale * (x @ A.T) @ B.T
    expect_close(r["set_out"], expected, "LoRALinear with A and B set", rtol=1e-4, atol=1e-5, hints=[
        Hint(x @ base_weight.T + base_bias + alpha * (x @ A.T) @ B.T,
             "the update is scaled by alpha / rank, not alpha."),
        Hint(x @ base_weight.T + base_bias + (x @ A.T) @ B.T, "the update is scaled by alpha / rank (you left it out)."),
        Hint(x @ base_weight.T + base_bias + rank / alpha * (x @ A.T) @ B.T, "the scale is alpha / rank, not rank / alpha."),
    ])
    merged = base_weight + scale * B @ A
    expect_close(r["merged_weight"], merged, "merge().weight (it must be W + (alpha / rank) B A)", rtol=1e-4,
                 atol=1e-5, hints=[Hint(base_weight, "merge() returned the base weight without the update."),
                                   Hint(base_weight + B @ A, "the merged update is scaled by alpha / rank.")])
    expect_close(r["merged_bias"], base_bias, "merge().bias (the base's bias)", atol=1e-6)
    expect_close(r["merged_out"], expected, "merge() applied to x (it must equal the LoRA layer's output)",
                 rtol=1e-4, atol=1e-5)


def judge_inject(r: dict, expected_adapted: list[str], expected_trainable: int) -> None:
    expect(r["adapted"] == sorted(expected_adapted),
           f"inject_lora adapted the modules {r['adapted']}; expected exactly {sorted(expected_adapted)}.",
           *hint("the wrapped layers must be exactly the linear layers whose qualified name is one of names or "
                 "ends with a dot and one of them, each replaced inside its parent module.",
                 where="the inject_lora paragraph: which layers are chosen, and where the wrapped layer goes."))
    expect(r["n_trainable"] == expected_trainable,
           f"after inject_lora the model has {r['n_trainable']} trainable parameters; expected "
           f"{expected_trainable} (only the A and B matrices).",
           *hint("every parameter of the model must be frozen before wrapping: only LoRA's A and B train.",
                 where="the inject_lora paragraph: its first step."))
    expect_close(r["after"], r["before"], "the model's output right after inject_lora (fresh LoRA changes nothing)",
                 atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Public checks (fixed seeds; also part of grading)
# ---------------------------------------------------------------------------------------------
T_SMALL = 100


@exercise("sdedit")
def test_sdedit_at_zero_returns_guide(sub, rng):
    """sdedit with t0 = 0 returns the guide"""
    g = torch.Generator().manual_seed(0)
    x_guide, noise = torch.randn(4, 1, 4, 4, generator=g), torch.randn(4, 1, 4, 4, generator=g)
    args = dict(alpha_bar=make_alpha_bar(T_SMALL), timesteps=ddim_timesteps(T_SMALL, 10), noise=noise)
    got = sub.call("sdedit", Ref(random_eps_model, 0), x_guide, 0.0, args)
    expect_close(got, x_guide, "sdedit(model, x_guide, t0 = 0, ...)", atol=1e-6,
                 hints=[Hint(make_alpha_bar(T_SMALL)[0].sqrt() * x_guide + (1 - make_alpha_bar(T_SMALL)[0]).sqrt() * noise,
                             "at t0 = 0 nothing is noised: start at step round(t0 T) - 1 = -1, the clean guide.")])


@exercise("sdedit")
def test_sdedit_half_way(sub, rng):
    """sdedit from t0 = 0.5 on a small model"""
    g = torch.Generator().manual_seed(1)
    x_guide, noise = torch.randn(4, 1, 4, 4, generator=g), torch.randn(4, 1, 4, 4, generator=g)
    args = dict(alpha_bar=make_alpha_bar(T_SMALL), timesteps=ddim_timesteps(T_SMALL, 10), noise=noise)
    model = random_eps_model(0)
    expected = editing.sdedit(model, x_guide, 0.5, args)
    got = sub.call("sdedit", Ref(random_eps_model, 0), x_guide, 0.5, args)
    expect_close(got, expected, "sdedit(model, x_guide, t0 = 0.5, ...)", rtol=1e-4, atol=1e-4)


@exercise("invert_then_edit")
def test_invert_then_edit_small(sub, rng):
    """invert_then_edit on a small conditional model"""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 1, 4, 4, generator=g)
    y_src, y_tgt = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0])
    ab, ts = make_alpha_bar(T_SMALL), ddim_timesteps(T_SMALL, 8)
    expected = editing.invert_then_edit(random_eps_model(0), x, y_src, y_tgt, 0.0, 2.0, ts, ab)
    got = sub.call("invert_then_edit", Ref(random_eps_model, 0), x, y_src, y_tgt, 0.0, 2.0, ts, ab)
    expect_close(got, expected, "invert_then_edit(model, x, y_src, y_tgt, w_invert=0, w_edit=2, ...)",
                 rtol=1e-4, atol=1e-4)


@exercise("ZeroConv")
def test_zeroconv_small(sub, rng):
    """ZeroConv(3, 5): zero when new, a 1x1 convolution once its weights are set"""
    g = torch.Generator().manual_seed(3)
    x, weight, bias = torch.randn(2, 3, 4, 4, generator=g), torch.randn(5, 3, 1, 1, generator=g), torch.randn(5, generator=g)
    r = sub.probe("probe_zeroconv", 3, 5, x, weight, bias)
    zeroconv_fresh_hint(r)
    judge_zeroconv(r, 3, 5, x, weight, bias)


@exercise("ControlAdapter")
def test_control_adapter_starts_as_base(sub, rng):
    """an untrained ControlAdapter leaves the base's output unchanged, and trains with the base frozen"""
    r = sub.probe("probe_control_adapter", 0, timeout=60)
    judge_adapter_untrained(r)
    judge_adapter_training(r)


@exercise("LoRALinear")
def test_lora_small(sub, rng):
    """LoRALinear(Linear(6, 4), rank 2, alpha 4): fresh, set, merged"""
    g = torch.Generator().manual_seed(4)
    x, A, B = torch.randn(5, 6, generator=g), torch.randn(2, 6, generator=g), torch.randn(4, 2, generator=g)
    r = sub.probe("probe_lora", 0, 6, 4, 2, 4.0, x, A, B)
    base = seeded_linear(0, 6, 4)
    judge_lora(r, base.weight.detach(), base.bias.detach(), x, A, B, 2, 4.0)


@exercise("inject_lora")
def test_inject_lora_small(sub, rng):
    """inject_lora on a small UNet's emb_proj layers"""
    r = sub.probe("probe_inject_lora", 0, 2, 1.0, ["emb_proj"])
    net = small_unet(0)
    expected = [n for n, m in net.named_modules() if isinstance(m, nn.Linear) and n.endswith("emb_proj")]
    n_train = sum(2 * (m.in_features + m.out_features) for n, m in net.named_modules() if n in expected)
    judge_inject(r, [n for n in expected], n_train)


@exercise("dreambooth_loss")
def test_dreambooth_loss_small(sub, rng):
    """dreambooth_loss on a small velocity model"""
    g = torch.Generator().manual_seed(5)
    x_inst, x_prior = torch.randn(3, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    c_inst, c_prior = torch.full((3,), 4), torch.full((5,), 2)
    noise, t = torch.randn(8, 1, 4, 4, generator=g), torch.rand(8, generator=g)
    model = random_velocity_model(0, n_classes=5)
    with torch.no_grad():
        expected = personalize.dreambooth_loss(model, x_inst, c_inst, x_prior, c_prior, 0.7, noise, t)
    got = sub.call("dreambooth_loss", Ref(random_velocity_model, 0, n_classes=5), x_inst, c_inst, x_prior, c_prior,
                   0.7, noise, t)
    expect_close(got, expected, "dreambooth_loss(..., prior_weight=0.7, ...)", rtol=1e-4, atol=1e-5)


@exercise("in_context_tokens")
def test_in_context_tokens_small(sub, rng):
    """in_context_tokens of 3 target and 2 context tokens"""
    g = torch.Generator().manual_seed(6)
    target, context = torch.randn(2, 3, 4, generator=g), torch.randn(2, 2, 4, generator=g)
    tokens, positions = in_context.in_context_tokens(target, context)
    got = sub.call("in_context_tokens", target, context)
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           "in_context_tokens should return a pair (tokens, positions).",
           *hint("the function returns two things.", where="section 6: what in_context_tokens returns."))
    expect_close(got[0], tokens, "the tokens (target first, then context)", atol=0)
    expect_close(got[1], positions, "the positions (frame, index)", atol=0)


# ---------------------------------------------------------------------------------------------
# Questions ("predict, then run"; "derive, then run")
# ---------------------------------------------------------------------------------------------
SDEDIT_WHY_NOT = {
    "b": "more noise cannot keep the sketch better: the larger t0, the more of the sketch the noise drowns and "
         "the model redraws.",
    "c": "that is the wrong way round: at t0 = 0 the sketch is returned unchanged (block error 0, far from real "
         "digits).",
    "d": "DDIM is deterministic given x_t0, but x_t0 itself changes with t0: how much of the sketch is left in it.",
}
SDEDIT_WHERE = "section 1: what noising to t0 keeps of the guide (its large-scale layout) and what it drowns."


def judge_predict_sdedit(answer) -> None:
    expect_choice(answer, "a", "predict_sdedit_tradeoff()", why_not=SDEDIT_WHY_NOT, where=SDEDIT_WHERE)


LORA_WHERE = "section 4: the shapes of A (r x d_in) and B (d_out x r), and which parameters stay frozen."


def lora_count_hints(d_in: int, d_out: int, rank: int) -> list[Hint]:
    """Realistic wrong counts of LoRA's trainable parameters, each with what it counted."""
    right = rank * (d_in + d_out)
    candidates = [
        (d_in * d_out, "that is the frozen weight's size: LoRA trains A and B, not W."),
        (d_in * d_out + d_out, "that is the full layer (weight and bias), which LoRA freezes."),
        (rank * d_in * d_out, "r d_in d_out is r copies of the full matrix: A and B are thin, r x d_in and d_out x r."),
        (right + d_out, "the base's bias is frozen too: only A and B train."),
        (2 * rank * max(d_in, d_out), "A and B have different shapes: one has d_in columns, the other d_out rows."),
        (rank * rank + rank * (d_in + d_out), "there is no r x r matrix in LoRA: only A and B."),
    ]
    return [Hint(torch.tensor(float(v)), msg, where=LORA_WHERE) for v, msg in candidates if v != right]


def judge_lora_count(sub, sizes) -> None:
    for d_in, d_out, rank in sizes:
        expect_scalar(sub.call("derive_lora_params", d_in, d_out, rank), rank * (d_in + d_out),
                      f"derive_lora_params(d_in={d_in}, d_out={d_out}, rank={rank})", rtol=0, atol=0.5,
                      hints=lora_count_hints(d_in, d_out, rank))


@exercise("predict_sdedit_tradeoff", weight=0.5)
def test_predict_sdedit_tradeoff(sub, rng):
    """how SDEdit's faithfulness and realism move as t0 grows"""
    judge_predict_sdedit(sub.call("predict_sdedit_tradeoff"))


@exercise("derive_lora_params", weight=0.5)
def test_derive_lora_params(sub, rng):
    """LoRA's trainable parameter count for a few layer sizes and ranks"""
    judge_lora_count(sub, [(6, 4, 2), (64, 384, 4)])

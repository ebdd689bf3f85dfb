"""Notebook 11 (DiT and text conditioning): its manifest, the probes of the learner's modules, and the public checks.

The learner's blocks and attention layers have their own random weights, so they are judged by
their *behaviour*: a new adaLN-Zero block is the identity; the condition and the time change the
output; attention mixes tokens; padded text tokens are ignored (the output equals attending to the
real tokens only); image tokens do not interact in cross-attention (keys come from the text); and
joint attention equals one softmax attention over the concatenated sequence, computed in the
grader's process from the weights the probe hands back. Probes return plain data only.
"""
from __future__ import annotations

import math

import torch

from grader.engine.api import (Hint, Mismatch, adam_losses, expect, expect_choice, expect_close, expect_scalar, exercise,
                               relative_change)

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "patchify": 1,
    "unpatchify": 1,
    "modulate": 1,
    "DiTBlock": 2,
    "DiT": 3,
    "tokenize": 1,
    "CrossAttention": 2,
    "JointAttention": 2,
    "predict_patch_tokens": 0.5,  # questions ("predict, then run"): half an answer cell's weight
    "predict_cfg_w0": 0.5,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "patchify": "course.dit:patchify",
    "unpatchify": "course.dit:unpatchify",
    "modulate": "course.dit:modulate",
    "DiTBlock": "course.dit:DiTBlock",
    "DiT": "course.dit:DiT",
    "tokenize": "course.text:tokenize",
    "CrossAttention": "course.text:CrossAttention",
    "JointAttention": "course.text:JointAttention",
}


# ---------------------------------------------------------------------------------------------
# Oracles and known mistakes (plain tensor arithmetic, used by the tests in the grader's process)
# ---------------------------------------------------------------------------------------------
def patch_layouts(x: torch.Tensor, p: int) -> dict[str, torch.Tensor]:
    """patchify's correct layout and the usual wrong ones, for (N, C, H, W) x."""
    N, C, H, W = x.shape
    six = x.reshape(N, C, H // p, p, W // p, p)
    T, D = (H // p) * (W // p), C * p * p
    return {
        "right": six.permute(0, 2, 4, 1, 3, 5).reshape(N, T, D),
        "channels_last": six.permute(0, 2, 4, 3, 5, 1).reshape(N, T, D),
        "column_major": six.permute(0, 4, 2, 1, 3, 5).reshape(N, T, D),
        "no_permute": x.reshape(N, T, D),
    }


PATCH_HINTS = {  # known layout -> (what is wrong, where to look)
    "channels_last": ("inside each patch the values are in the wrong order: you put the channel last (row, column, "
                      "channel); the convention is channel first (channel, row, column), as F.unfold.",
                      "section 1's second bullet: the order of the values inside a token."),
    "column_major": ("the patches are in column-major order: token i (W/p) + j must be the patch in patch-row i, "
                     "patch-column j (row-major).", "section 1's first bullet: the order of the tokens over the grid."),
    "no_permute": ("a plain reshape does not cut patches: it groups consecutive pixels of a row, not p x p squares.",
                   "split each image axis into (which patch, where inside the patch) and bring the two patch-grid "
                   "axes in front of the within-patch axes before flattening; write the shape at each step."),
}


def patch_hints(layouts: dict[str, torch.Tensor]) -> list[Hint]:
    """The staged hints for patchify's known wrong layouts (from :func:`patch_layouts`)."""
    return [Hint(layouts[k], message, where=where) for k, (message, where) in PATCH_HINTS.items()]


UNPATCH_HINT_TEXT = ("a plain reshape does not put the patches back: each token holds a p x p square, not p "
                     "consecutive pixels of a row.",
                     "undo patchify's steps in reverse order: first the token axis into the patch grid and the "
                     "within-patch values, then the axes back to (channel, patch-row, row in patch, patch-column, "
                     "column in patch), then one image.")


def split_heads(z: torch.Tensor, heads: int) -> torch.Tensor:
    B, T, D = z.shape
    return z.reshape(B, T, heads, D // heads).transpose(1, 2)


def attend(q, k, v, key_mask=None, axis: int = -1):
    """softmax(q k^T / sqrt d) v, keys with key_mask True excluded: (B, h, N, d). ``axis=-2`` is the
    known mistake: the softmax over the queries instead of the keys."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(key_mask[:, None, None, :], float("-inf"))
    return scores.softmax(axis) @ v


def joint_attention_oracle(report: dict, heads: int, variant: str = "right"):
    """MM-DiT attention from the learner's own weights (``report["weights"]``) and inputs.

    variant: "right"; "separate" (each modality attends only to itself); "no_mask" (padding ignored);
    "inverted_mask" (the real text tokens masked instead of the padded ones); "query_softmax" (the
    softmax over the queries instead of the keys)."""
    w = report["weights"]
    x, c, mask = report["x"], report["c"], report["mask"]
    B, N, D = x.shape
    qkv_x = x @ w["qkv_x.weight"].T + w["qkv_x.bias"]
    qkv_c = c @ w["qkv_c.weight"].T + w["qkv_c.bias"]
    key_mask = torch.cat([torch.zeros(B, N, dtype=torch.bool), mask], 1)
    if variant == "separate":
        qx, kx, vx = (split_heads(z, heads) for z in qkv_x.chunk(3, -1))
        qc, kc, vc = (split_heads(z, heads) for z in qkv_c.chunk(3, -1))
        ox, oc = attend(qx, kx, vx), attend(qc, kc, vc, mask)
        out = torch.cat([ox, oc], 2)
    else:
        if variant == "no_mask":
            key_mask = None
        elif variant == "inverted_mask":
            key_mask = torch.cat([torch.zeros(B, N, dtype=torch.bool), ~mask], 1)
        q, k, v = (split_heads(z, heads) for z in torch.cat([qkv_x, qkv_c], 1).chunk(3, -1))
        out = attend(q, k, v, key_mask, axis=-2 if variant == "query_softmax" else -1)
    out = out.transpose(1, 2).reshape(B, out.shape[2], D)
    x_out = out[:, :N] @ w["proj_x.weight"].T + w["proj_x.bias"]
    c_out = out[:, N:] @ w["proj_c.weight"].T + w["proj_c.bias"]
    return x_out, c_out


# ---------------------------------------------------------------------------------------------
# Helpers used by the probes (inside the sandbox)
# ---------------------------------------------------------------------------------------------
def _jiggle(module: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    """Add small noise to every parameter, so zero-initialised layers do not hide anything."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _n_params(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


CHANGE_KEYS = ("c_change", "other_tokens_change", "t_change", "y_change", "null_gap", "far_change", "ctx_change")


def _pair(a: torch.Tensor, b: torch.Tensor) -> list:
    """Sandbox side: the two raw outputs whose difference a test will judge (no reduction here)."""
    return [a, b]


def reduced(report):
    """Grader side: each raw pair a probe returned under CHANGE_KEYS, as its relative change."""
    if not isinstance(report, dict):
        return report
    return {k: relative_change(*v) if k in CHANGE_KEYS and isinstance(v, list) and len(v) == 2 else v
            for k, v in report.items()}


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


# ---------------------------------------------------------------------------------------------
# Probes: probe_x(ns, ...) builds the learner's classes from namespace ``ns``, returns plain data
# ---------------------------------------------------------------------------------------------
def _probe_ditblock(ns, dim: int, heads: int, cond_dim: int, seed: int = 0):
    """A new block's output and input; after jiggling: outputs for two conditions, with one token
    changed, and with the tokens permuted; losses along a few Adam steps."""
    torch.manual_seed(seed)
    try:
        block = ns["DiTBlock"](dim, heads, cond_dim)
        x, c = torch.randn(3, 6, dim), torch.randn(3, cond_dim)
        with torch.no_grad():
            fresh = block(x, c)
        target = torch.randn(3, 6, dim)
        losses = adam_losses(block.parameters(), lambda: ((block(x, c) - target) ** 2).mean(), 15, 1e-2)
        torch.manual_seed(seed + 1)
        block = _jiggle(ns["DiTBlock"](dim, heads, cond_dim), 0.2)
        with torch.no_grad():
            out = block(x, c)
            out_c2 = block(x, torch.randn(3, cond_dim))
            x_tok = x.clone()
            x_tok[:, 0] = torch.randn(3, dim)
            out_tok = block(x_tok, c)
            perm = torch.randperm(6)
            out_perm = block(x[:, perm], c)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - report a broken block as data
        return {"error": _error_text(exc)}
    return {"x": x, "fresh": fresh, "losses": losses, "n_params": _n_params(block),
            "c_change": _pair(out, out_c2),
            "other_tokens_change": _pair(out[:, 1:], out_tok[:, 1:]),
            "out_perm": out_perm, "perm_out": out[:, perm]}


def _probe_dit_shapes(ns, configs, seed: int = 0):
    """Output shapes (or the error) of DiT(in_ch, size, patch, dim, depth, heads, n_classes)(x, t, y)."""
    torch.manual_seed(seed)
    shapes = []
    for in_ch, size, patch, dim, depth, heads, n_classes, B in configs:
        try:
            net = ns["DiT"](in_ch, size, patch, dim, depth, heads, n_classes)
            y = torch.randint(0, n_classes, (B,)) if n_classes else None
            with torch.no_grad():
                shapes.append(list(net(torch.randn(B, in_ch, size, size), torch.randint(0, 1000, (B,)), y).shape))
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001
            shapes.append(_error_text(exc))
    return shapes


def _probe_dit_conditioning(ns, seed: int = 0):
    """Relative output changes of a jiggled DiT when t changes, when y changes, between y=None and
    the null label, and when one patch of the input changes (far patches must feel it: attention)."""
    torch.manual_seed(seed)
    n_classes = 10
    net = _jiggle(ns["DiT"](2, 8, 2, 32, 2, 4, n_classes), 0.1)
    x = torch.randn(4, 2, 8, 8)
    t_a, t_b = torch.tensor([5, 100, 400, 900]), torch.tensor([700, 20, 950, 300])
    y_a, y_b = torch.tensor([0, 1, 2, 3]), torch.tensor([7, 8, 9, 4])
    with torch.no_grad():
        out = net(x, t_a, y_a)
        x_far = x.clone()
        x_far[:, :, :2, :2] = torch.randn(4, 2, 2, 2)
        out_far = net(x_far, t_a, y_a)
        return {"t_change": _pair(out, net(x, t_b, y_a)), "y_change": _pair(out, net(x, t_a, y_b)),
                "null_gap": _pair(net(x, t_a, torch.full((4,), n_classes)), net(x, t_a, None)),
                "far_change": _pair(out[:, :, 4:, 4:], out_far[:, :, 4:, 4:])}


def _probe_dit_train(ns, steps: int = 20, seed: int = 0):
    """Losses along a few Adam steps of a small DiT fitting a fixed target; its parameter count."""
    torch.manual_seed(seed)
    net = ns["DiT"](1, 8, 2, 32, 2, 4, 10)
    x, t, y = torch.randn(8, 1, 8, 8), torch.randint(0, 1000, (8,)), torch.randint(0, 10, (8,))
    target = torch.randn(8, 1, 8, 8)
    losses = adam_losses(net.parameters(), lambda: ((net(x, t, y) - target) ** 2).mean(), steps, 3e-3)
    return {"losses": losses, "n_params": _n_params(net)}


def probe_ditblock(ns, *args, **kwargs):
    """_probe_ditblock with the learner's own modulate (a wrong modulate costs points here too, and the
    feedback names it: fix modulate first). The reference modulate is never shipped in this module."""
    return _probe_ditblock(ns, *args, **kwargs)


def probe_dit_shapes(ns, *args, **kwargs):
    """_probe_dit_shapes with the learner's own modulate (a wrong modulate costs points here too, and the
    feedback names it: fix modulate first). The reference modulate is never shipped in this module."""
    return _probe_dit_shapes(ns, *args, **kwargs)


def probe_dit_conditioning(ns, *args, **kwargs):
    """_probe_dit_conditioning with the learner's own modulate (a wrong modulate costs points here too, and the
    feedback names it: fix modulate first). The reference modulate is never shipped in this module."""
    return _probe_dit_conditioning(ns, *args, **kwargs)


def probe_dit_train(ns, *args, **kwargs):
    """_probe_dit_train with the learner's own modulate (a wrong modulate costs points here too, and the
    feedback names it: fix modulate first). The reference modulate is never shipped in this module."""
    return _probe_dit_train(ns, *args, **kwargs)


def probe_cross_attention(ns, dim: int, ctx_dim: int, heads: int, lengths, M: int, seed: int = 0):
    """Outputs of a CrossAttention with padding, per row the output on the real tokens alone (no
    mask) and on the padded tokens alone; with one image token changed; with the real tokens permuted;
    with a text token changed; on one text token and on M copies of it (no mask)."""
    torch.manual_seed(seed)
    try:
        attn = ns["CrossAttention"](dim, ctx_dim, heads)
        B, N = len(lengths), 5
        x, ctx = torch.randn(B, N, dim), torch.randn(B, M, ctx_dim)
        mask = torch.arange(M)[None, :] >= torch.tensor(lengths)[:, None]  # True = padding
        with torch.no_grad():
            out = attn(x, ctx, mask)
            real_only = torch.cat([attn(x[b:b + 1], ctx[b:b + 1, :n]) for b, n in enumerate(lengths)])
            pads_only = torch.cat([attn(x[b:b + 1], ctx[b:b + 1, n:]) if n < M else out[b:b + 1]
                                   for b, n in enumerate(lengths)])
            x_tok = x.clone()
            x_tok[:, 0] = torch.randn(B, dim)
            out_tok = attn(x_tok, ctx, mask)
            ctx_perm = ctx.clone()
            for b, n in enumerate(lengths):
                ctx_perm[b, :n] = ctx[b, torch.randperm(n)]
            out_perm = attn(x, ctx_perm, mask)
            ctx_new = ctx.clone()
            ctx_new[:, 0] = torch.randn(B, ctx_dim)
            out_new = attn(x, ctx_new, mask)
            one_key = attn(x, ctx[:, :1])  # one text token ...
            same_keys = attn(x, ctx[:, :1].expand(B, M, ctx_dim).contiguous())  # ... and M copies of it
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        return {"error": _error_text(exc)}
    return {"out": out, "real_only": real_only, "pads_only": pads_only,
            "other_tokens_change": _pair(out[:, 1:], out_tok[:, 1:]), "out_perm": out_perm,
            "ctx_change": _pair(out, out_new), "padded_rows": [n < M for n in lengths],
            "one_key": one_key, "same_keys": same_keys}


def probe_joint_attention(ns, dim: int, heads: int, N: int, lengths, M: int, seed: int = 0):
    """A JointAttention's outputs on (x, c, mask) and the weights of its four layers."""
    torch.manual_seed(seed)
    try:
        attn = ns["JointAttention"](dim, heads)
        B = len(lengths)
        x, c = torch.randn(B, N, dim), torch.randn(B, M, dim)
        mask = torch.arange(M)[None, :] >= torch.tensor(lengths)[:, None]
        with torch.no_grad():
            x_out, c_out = attn(x, c, mask)
        weights = {f"{layer}.{kind}": getattr(getattr(attn, layer), kind).detach().clone()
                   for layer in ("qkv_x", "qkv_c", "proj_x", "proj_c") for kind in ("weight", "bias")}
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        return {"error": _error_text(exc)}
    return {"x": x, "c": c, "mask": mask, "x_out": x_out, "c_out": c_out, "weights": weights}


# ---------------------------------------------------------------------------------------------
# Shared judgements (public and hidden tests)
# ---------------------------------------------------------------------------------------------
def expect_close_or(actual, expected, what: str, fallback: str, where: str = "", **kwargs) -> None:
    """expect_close; when no known mistake's hint fires, end the feedback with ``fallback`` (and ``where``)."""
    try:
        expect_close(actual, expected, what, **kwargs)
    except Mismatch as mismatch:
        if not any(line.startswith("Hint:") for line in mismatch.lines):
            mismatch.lines.extend(Hint(None, fallback.removeprefix("Hint: "), where=where).lines())
            mismatch.args = ("\n".join(mismatch.lines),)
        raise


def hint(message: str, where: str = "") -> list[str]:
    """The feedback lines of a staged hint (what is wrong, then where to look) for ``expect``."""
    return Hint(None, message, where=where).lines()


def judge_no_error(report, what: str, hint_text: str) -> None:
    expect(not (isinstance(report, dict) and "error" in report),
           f"{what} raised {report.get('error') if isinstance(report, dict) else ''}", hint_text)


def judge_shapes(got, expected, labels, hint_text: str) -> None:
    for g, e, label in zip(got, expected, labels):
        expect(not isinstance(g, str), f"{label} raised {g}", hint_text)
        expect(list(g) == list(e), f"{label}: expected output shape {tuple(e)}, got {tuple(g)}.", hint_text)


def modulate_hints(x, shift, scale) -> list[Hint]:
    """modulate's known mistakes on (x (B, T, D), shift (B, D), scale (B, D))."""
    where = "section 2's equation, and which axis of x the (B, D) shift and scale belong to"
    hints = [
        Hint(x * (1 + shift[:, None]) + scale[:, None], "shift and scale are swapped.", where=where),
        Hint(x * scale[:, None] + shift[:, None], "the scale multiplies x directly: scale = 0 must leave x unchanged.",
             where=where),
        Hint(x * (1 + scale[:, None]), "the shift is missing.", where=where),
        Hint((x + shift[:, None]) * (1 + scale[:, None]), "the shift is added before the scaling, so it is "
             "scaled too: the scale applies to x alone.", where=where),
    ]
    if x.shape[0] == x.shape[1]:  # (B, D) against (B, T, D) also broadcasts when T = B, over the wrong axis
        hints.insert(0, Hint(x * (1 + scale) + shift,
                             "shift and scale are applied per token, not per sample: sample b's shift went to "
                             "token b of every sample.",
                             where="the shapes: shift and scale are (B, D), x is (B, T, D); give them the token "
                                   "axis they lack, so each sample's vector is shared by all its tokens."))
    return hints


def judge_fresh_block_is_identity(report: dict) -> None:
    judge_no_error(report, "DiTBlock", "Hint: forward(x, c) takes tokens (B, T, dim) and a condition (B, cond_dim).")
    expect_close_or(report["fresh"], report["x"], "a new DiTBlock(x, c) (adaLN-Zero: every gate starts at 0)",
                    atol=1e-5, rtol=1e-5,
                    hints=[Hint(torch.zeros_like(report["x"]), "a new block returns 0: the residual x is lost.",
                                where="section 3's two update equations: x plus the gated branch.")],
                    fallback="a new block changes its input: with adaLN-Zero both gates start at 0, so the block "
                             "is the identity.",
                    where="section 3's **Zero** bullet: which layer starts with weight and bias zero, and does the "
                          "gate multiply the branch?")


def judge_block_uses_c(report: dict) -> None:
    expect(report["c_change"] > 1e-3,
           f"changing the condition c changed DiTBlock's output by {report['c_change']:.2g} (relative): c is ignored.",
           *hint("the six modulation vectors (shifts, scales, gates) must be computed from c.",
                 where="section 3: the linear layer after a SiLU that maps c to six vectors of size dim."))


def judge_losses_decrease(report: dict, what: str, factor: float = 0.8) -> None:
    losses = report["losses"]
    expect(report["n_params"] > 0, f"{what} has no trainable parameters that model.parameters() can see.",
           *hint("sub-layers that are not attributes of the module (or lists that are not nn.ModuleList) are "
                 "invisible to the optimiser.", where="__init__: how each layer and the list of blocks are stored."))
    expect(losses[-1] < factor * losses[0],
           f"a few Adam steps on a tiny batch should lower the loss of {what}: it went from {losses[0]:.4g} to "
           f"{losses[-1]:.4g}.",
           *hint("in adaLN-Zero only the modulation layer starts at zero; if the attention and MLP outputs are zero "
                 "too, the gates get no gradient and the block never learns. Also check that nothing is detached.",
                 where="section 3's **Zero** bullet: which single layer is zero-initialised."))


def judge_dit_conditioning(report: dict, far: bool = True) -> None:
    """DiT's output depends on t and on y; y=None is the null label; (far) distant patches interact."""
    expect(report["t_change"] > 1e-3, f"changing t changed the DiT's output by {report['t_change']:.2g}: "
                                      "the time is ignored.",
           *hint("the condition c must be made from the time t (its sinusoidal embedding through t_embed).",
                 where="section 4, step 2 (condition), and that c reaches every block and the final layer."))
    expect(report["y_change"] > 1e-3, f"changing the label changed the output by {report['y_change']:.2g}: "
                                      "the label is ignored.",
           *hint("the label embedding must be added to the time embedding to make c.",
                 where="section 4, step 2: c = MLP(time embedding) plus the label's embedding."))
    expect(report["null_gap"] < 1e-5, f"y=None and the null label n_classes gave different outputs "
                                      f"(relative gap {report['null_gap']:.2g}).",
           *hint("y=None must mean the null label (row n_classes of the label embedding), not 'no label term'.",
                 where="section 4, step 2: the null label of classifier-free guidance (notebooks 07-08)."))
    if far:
        expect(report["far_change"] > 1e-3,
               "changing the top-left patch left the bottom-right quarter of the output unchanged: the patches do "
               "not interact.", *hint("every block must attend over all tokens of the image.",
                                      where="section 4, step 3: the blocks, each applied to the whole sequence."))


CROSS_SHAPES_HINT = ("Hint: forward(x, ctx, pad_mask) with x (B, N, dim), ctx (B, M, ctx_dim), pad_mask (B, M) bool "
                     "returns (B, N, dim). The keys and values come from the text tokens (ctx, ctx_dim wide), only "
                     "the queries from the image tokens x.")

KEYS_AXIS = ("each query's attention weights must sum to 1 over the keys (the text tokens): the softmax is "
             "taken over the wrong axis of the scores, the queries instead of the keys.",
             "the attention equation: which axis of the (queries x keys) score matrix the softmax normalises.")


def judge_weights_over_keys(report: dict, what: str) -> None:
    """Attention is a weighted average of the values: M copies of one text token give what one gives."""
    judge_no_error(report, what, CROSS_SHAPES_HINT)
    expect_close_or(report["same_keys"], report["one_key"],
                    f"{what}(x, ctx) with ctx = M copies of one text token, against ctx = that one token",
                    atol=1e-5, rtol=1e-4, fallback=KEYS_AXIS[0], where=KEYS_AXIS[1])


def judge_padding_ignored(report: dict, what: str) -> None:
    judge_no_error(report, what, CROSS_SHAPES_HINT)
    finite = torch.isfinite(report["out"]).flatten(1).all(1)  # (B,)
    expect(bool(finite.all()),
           f"{what} returned NaN or inf for {int((~finite).sum())} of {len(finite)} captions.",
           *hint("NaN comes from a softmax over entries that are all -inf: either the mask is inverted (pad_mask "
                 "is True at the *padded* positions, and only those get -inf), or the softmax runs over the "
                 "queries, where a padded key's whole column is -inf.",
                 where="the attention equation: the mask's sign and the axis of the softmax (the keys)."))
    hints = []
    rows = torch.tensor(report["padded_rows"])
    if rows.any():
        inverted = report["out"].clone()
        inverted[rows] = report["pads_only"][rows]
        hints.append(Hint(inverted, "the mask is inverted: the real text tokens were masked, not the padded ones.",
                          where="pad_mask's convention (section 7): True marks the padding."))
    expect_close_or(report["out"], report["real_only"],
                    f"{what}(x, ctx, pad_mask) against attending to each row's real tokens only", atol=1e-5, rtol=1e-4,
                    hints=hints, fallback="padded text tokens still get attention weight.",
                    where="section 8's equation: the mask is -inf at padded keys, added before the softmax.")


JOINT_LAYERS_HINT = ("Hint: use the layers qkv_x, qkv_c (Linear(dim, 3 dim)) and proj_x, proj_c (Linear(dim, dim)), "
                     "and return (x_out, c_out).")


def joint_hints(report: dict, heads: int) -> list[Hint]:
    where = "section 9's equation: one sequence [image; text], one softmax over all its keys, padded text keys -inf."
    return [
        Hint(joint_attention_oracle(report, heads, "separate")[0],
             "each modality attends only to itself: the image and text tokens must attend to one another.", where=where),
        Hint(joint_attention_oracle(report, heads, "query_softmax")[0], KEYS_AXIS[0], where=KEYS_AXIS[1]),
        Hint(joint_attention_oracle(report, heads, "inverted_mask")[0],
             "the mask is inverted: the real text tokens were masked, not the padded ones.", where=where),
        Hint(joint_attention_oracle(report, heads, "no_mask")[0],
             "padded text tokens are attended to: they must never be keys.", where=where),
    ]


def judge_joint(report: dict, heads: int, what: str) -> None:
    judge_no_error(report, "JointAttention", JOINT_LAYERS_HINT)
    x_out, c_out = joint_attention_oracle(report, heads)
    expect_close(report["x_out"], x_out, f"{what}'s image output", atol=1e-5, rtol=1e-4,
                 hints=joint_hints(report, heads))
    expect_close_or(report["c_out"], c_out, f"{what}'s text output", atol=1e-5, rtol=1e-4,
                    fallback="the text part of the one attention's output must go through proj_c, the image part "
                             "through proj_x.", where="section 9's last equation: how O is split back.")


# ---------------------------------------------------------------------------------------------
# Questions ("predict, then run"): the answers and why the other choices are wrong
# ---------------------------------------------------------------------------------------------
PATCH_TOKENS_WHERE = "section 1: T = (H/p)(W/p), one token per p x p patch."
PATCH_TOKENS_WRONG = {  # a realistic wrong answer -> what it counts
    4: "4 is the number of patches along one side (H/p): the tokens cover the whole grid.",
    64: "64 is the number of pixels: each token is a whole p x p patch, not one pixel.",
    32: "32 is H W / p: a patch is p x p, so divide by p twice.",
}

CFG_W0_WHY_NOT = {
    "a": "at w = 0 the unconditional prediction gets weight w = 0: it drops out entirely.",
    "c": "the weights (1 + w) and -w always sum to 1, so w = 0 does not average the two predictions.",
    "d": "at w = 0 the guided velocity is still a trained model's velocity, which carries noise to digits.",
}
CFG_W0_WHERE = "section 10: the guided velocity (1 + w) v(x, t, caption) - w v(x, t, \"\") at w = 0."


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
@exercise("patchify")
def test_patchify_small(sub, rng):
    """patchify of a 2-channel 4x4 image into 2x2 patches"""
    x = torch.arange(32, dtype=torch.float32).reshape(1, 2, 4, 4)
    layouts = patch_layouts(x, 2)
    got = sub.call("patchify", x, 2)
    expect_close(got, layouts["right"], "patchify(x of shape (1, 2, 4, 4), p=2)", hints=patch_hints(layouts))


@exercise("unpatchify")
def test_unpatchify_small(sub, rng):
    """unpatchify undoes patchify on a 2-channel 4x6 image"""
    x = torch.arange(48, dtype=torch.float32).reshape(1, 2, 4, 6)
    tokens = patch_layouts(x, 2)["right"]
    got = sub.call("unpatchify", tokens, 2, 2, 4, 6)
    expect_close(got, x, "unpatchify(patchify(x, 2), 2, C=2, H=4, W=6)",
                 hints=[Hint(tokens.reshape(1, 2, 4, 6), *UNPATCH_HINT_TEXT)])


@exercise("modulate")
def test_modulate_small(sub, rng):
    """modulate of two tokens with a known shift and scale"""
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, 2, 2)
    shift, scale = torch.tensor([[10.0, 20.0]]), torch.tensor([[1.0, -0.5]])
    got = sub.call("modulate", x, shift, scale)
    expected = torch.tensor([[[12.0, 21.0], [16.0, 22.0]]])
    expect_close(got, expected, "modulate(x, shift, scale)", hints=modulate_hints(x, shift, scale))


@exercise("modulate")
def test_modulate_per_sample(sub, rng):
    """modulate with three samples of three tokens: each sample's shift and scale go to all its tokens"""
    x = torch.randn(3, 3, 4, generator=rng)
    shift, scale = torch.randn(3, 4, generator=rng), torch.randn(3, 4, generator=rng)
    got = sub.call("modulate", x, shift, scale)
    expect_close(got, x * (1 + scale[:, None, :]) + shift[:, None, :],
                 "modulate(x (3 samples, 3 tokens, 4), shift (3, 4), scale (3, 4))", hints=modulate_hints(x, shift, scale))


@exercise("DiTBlock")
def test_ditblock_new_is_identity(sub, rng):
    """a new DiTBlock returns its input (adaLN-Zero)"""
    judge_fresh_block_is_identity(reduced(sub.probe("probe_ditblock", 16, 4, 8)))


@exercise("DiTBlock")
def test_ditblock_uses_c_and_learns(sub, rng):
    """a DiTBlock responds to its condition and lowers a loss in a few Adam steps"""
    report = reduced(sub.probe("probe_ditblock", 16, 4, 8, int(torch.randint(0, 2 ** 31 - 1, (1,), generator=rng))))
    judge_no_error(report, "DiTBlock", "Hint: forward(x, c) takes tokens (B, T, dim) and a condition (B, cond_dim).")
    judge_block_uses_c(report)
    judge_losses_decrease(report, "DiTBlock", factor=0.9)


@exercise("DiT")
def test_dit_shapes(sub, rng):
    """DiT returns an output of its input's shape"""
    configs = [(1, 8, 2, 32, 2, 4, 10, 2), (3, 8, 4, 16, 1, 2, None, 3)]
    got = sub.probe("probe_dit_shapes", configs)
    judge_shapes(got, [[b, c, s, s] for c, s, *_, b in configs],
                 [f"DiT{tuple(cfg[:7])} on x of shape {(cfg[7], cfg[0], cfg[1], cfg[1])}" for cfg in configs],
                 "Hint: follow section 4's four steps (tokens, condition, blocks, decoder) and write the shape "
                 "after each.")


@exercise("DiT")
def test_dit_uses_time_and_label(sub, rng):
    """DiT's output depends on the time and the label, and y=None is the null label"""
    report = reduced(sub.probe("probe_dit_conditioning", int(torch.randint(0, 2 ** 31 - 1, (1,), generator=rng))))
    judge_dit_conditioning(report, far=False)


@exercise("tokenize")
def test_tokenize_small(sub, rng):
    """tokenize pads to max_len, marks the padding and maps unknown words to <unk>"""
    vocab = {"<pad>": 0, "<unk>": 1, "a": 2, "thick": 3, "seven": 4}
    got_ids, got_mask = sub.call("tokenize", ["a thick seven", "a purple seven"], vocab, 4)
    expected_ids = torch.tensor([[2, 3, 4, 0], [2, 1, 4, 0]])
    expect_close(got_ids, expected_ids, "ids of tokenize(['a thick seven', 'a purple seven'], vocab, 4) "
                                        "('purple' is not in vocab)", hints=[
        Hint(torch.tensor([[2, 3, 4, 0], [2, 0, 4, 0]]),
             "the unknown word 'purple' got the padding id: padding would then hide a real word from attention.",
             where="section 7: the id of a word that is not in vocab.")])
    expected_mask = torch.tensor([[False, False, False, True], [False, False, False, True]])
    expect_close(got_mask, expected_mask, "pad_mask of tokenize(...)",
                 hints=[Hint(~expected_mask, "the mask is inverted.",
                             where="section 7: pad_mask is True at the padding (PyTorch's key_padding_mask).")])


@exercise("CrossAttention")
def test_cross_attention_weights_over_keys(sub, rng):
    """CrossAttention averages the values: M copies of one text token act as that one token"""
    judge_weights_over_keys(reduced(sub.probe("probe_cross_attention", 16, 12, 2, [3, 5], 5)), "CrossAttention")


@exercise("CrossAttention")
def test_cross_attention_ignores_padding(sub, rng):
    """CrossAttention with padded captions equals attending to the real tokens only"""
    judge_padding_ignored(reduced(sub.probe("probe_cross_attention", 16, 12, 2, [3, 5], 5)), "CrossAttention")


@exercise("JointAttention")
def test_joint_attention_is_one_attention(sub, rng):
    """JointAttention equals one attention over [image; text], from its own weights (no padding, then padding)"""
    judge_joint(sub.probe("probe_joint_attention", 16, 2, 4, [3, 3], 3), 2, "JointAttention without padding")
    judge_joint(sub.probe("probe_joint_attention", 16, 2, 4, [3, 2], 3), 2, "JointAttention with padding")


@exercise("predict_patch_tokens", weight=0.5)
def test_predict_patch_tokens(sub, rng):
    """the number of tokens of an 8x8 image cut into 2x2 patches"""
    expect_scalar(sub.call("predict_patch_tokens"), 16, "predict_patch_tokens()", reveal=False, rtol=0, atol=0.01,
                  hints=[Hint(torch.tensor(float(k)), msg, where=PATCH_TOKENS_WHERE)
                         for k, msg in PATCH_TOKENS_WRONG.items()])


@exercise("predict_cfg_w0", weight=0.5)
def test_predict_cfg_w0(sub, rng):
    """what classifier-free guidance at w = 0 samples"""
    expect_choice(sub.call("predict_cfg_w0"), "b", "predict_cfg_w0()", why_not=CFG_W0_WHY_NOT, where=CFG_W0_WHERE)

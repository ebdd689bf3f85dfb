"""Diffusion transformers: patches as tokens, adaLN-Zero conditioning, and a text-conditioned DiT.

Peebles & Xie 2023, *Scalable Diffusion Models with Transformers* (arXiv:2212.09748): the image is
cut into p x p patches, each a token; a stack of transformer blocks conditioned on the time (and the
label) through adaptive layer norm with zero-initialised gates (adaLN-Zero, Sec. 3.2); a linear
decoder turns each token back into its patch. ``TextDiT`` conditions on a caption instead, by
cross-attention to the caption's tokens (Rombach et al. 2022; Saharia et al. 2022) or by MM-DiT's
joint attention (Esser et al. 2024, arXiv:2403.03206), with a pooled text vector added to the
time embedding in both cases.

Time convention: as ``course.unet.UNet``, the networks take ``t`` of shape ``(B,)`` embedded as a
step number in 0..1000 (``1000 * t`` for flow matching's t in [0, 1], t = 0 noise, t = 1 data).
With ``n_classes`` the label embedding has ``n_classes + 1`` rows; row ``n_classes`` (or
``y=None``) is the null label of classifier-free guidance. For ``TextDiT`` the null condition is
the empty caption (every token padding).

Token layout (``patchify``): patches in row-major order over the (H/p, W/p) grid; within a patch,
the values in the order (C, p, p) (channel, then row, then column), as ``torch.nn.functional.unfold``.

How to build and call the text model (also for an in-context editor)::

    from course.captions import VOCAB, MAX_LEN
    from course.text import tokenize
    model = TextDiT(in_ch=1, image_size=8, patch=2, dim=64, depth=4, heads=4,
                    vocab_size=len(VOCAB), max_len=MAX_LEN, attention="cross")  # or "joint"
    ids, pad = tokenize(["a thick seven"], VOCAB, MAX_LEN)
    out = model(x, 1000 * t, ids, pad)                          # (B, C, H, W), like x
    out = model(x, 1000 * t, *tokenize([""] * B, VOCAB, MAX_LEN))  # the unconditional prediction
    ctx = model.embed_image(x_source, frame=1)                 # (B, N, dim): tokens of a context image
    out = model(x, 1000 * t, ids, pad, extra_tokens=ctx)       # they join the sequence; output is x's part

Notebook 11 builds these from the learner's exercises, never the library's (stubs in its staged
bundle): ``TextDiT(..., parts=dict(patchify=..., unpatchify=..., modulate=..., CrossAttention=...,
JointAttention=...))``, and DiT's conditioning ablation as ``conditioning_variant(their_dit,
"adaln" or "in_context", their DiTBlock class, modulate=their_modulate)``, which swaps the blocks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course.embedding import timestep_embedding
from course.text import CrossAttention, JointAttention, attention, merge_heads, split_heads


# ---------------------------------------------------------------------------------------------
# Patches and modulation
# ---------------------------------------------------------------------------------------------
def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, (H/p)(W/p), C p^2): patches row-major over the grid, values (C, p, p)."""
    N, C, H, W = x.shape
    x = x.reshape(N, C, H // p, p, W // p, p)  # (N, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (N, gh, gw, C, p, p)
    return x.reshape(N, (H // p) * (W // p), C * p * p)


def unpatchify(tokens: torch.Tensor, p: int, C: int, H: int, W: int) -> torch.Tensor:
    """The inverse of ``patchify``: (N, (H/p)(W/p), C p^2) -> (N, C, H, W)."""
    N = tokens.shape[0]
    x = tokens.reshape(N, H // p, W // p, C, p, p)  # (N, gh, gw, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (N, C, gh, p, gw, p)
    return x.reshape(N, C, H, W)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (1 + scale) + shift, with shift and scale (B, D) broadcast over the tokens of x (B, T, D)."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def sincos_pos_embed(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding of a grid x grid of patches (row-major): (grid^2, dim).

    Half the channels encode the row, half the column, each with ``timestep_embedding``'s frequencies
    (as DiT, after MAE). ``dim`` must be divisible by 4.
    """
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([timestep_embedding(rows.flatten(), dim // 2, max_period=100),
                      timestep_embedding(cols.flatten(), dim // 2, max_period=100)], dim=1)


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens (B, T, dim); optional key padding mask (B, T), True = padding."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = (split_heads(z, self.heads) for z in self.qkv(x).chunk(3, dim=-1))  # (B, h, T, d)
        return self.proj(merge_heads(attention(q, k, v, pad_mask)))


def mlp(dim: int, ratio: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(ratio * dim, dim))


def layer_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm without its own scale and shift: adaLN supplies them from the condition."""
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def zero_(module: nn.Module) -> nn.Module:
    """Set a layer's weights and biases to zero in place (adaLN-Zero's initialisation)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class DiTBlock(nn.Module):
    """A transformer block with adaLN-Zero (Peebles & Xie 2023, Sec. 3.2 and Fig. 3):

        shift1, scale1, gate1, shift2, scale2, gate2 = Linear(SiLU(c))
        x = x + gate1 * Attn(modulate(LN(x), shift1, scale1))
        x = x + gate2 * MLP(modulate(LN(x), shift2, scale2))

    The modulation layer starts at zero, so every gate is 0 and a new block is the identity.
    """

    def __init__(self, dim: int, heads: int, cond_dim: int):
        super().__init__()
        self.norm1, self.attn = layer_norm(dim), SelfAttention(dim, heads)
        self.norm2, self.mlp = layer_norm(dim), mlp(dim)
        self.adaLN = nn.Sequential(nn.SiLU(), zero_(nn.Linear(cond_dim, 6 * dim)))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=-1)  # each (B, dim)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class AdaLNBlock(nn.Module):
    """Plain adaLN (DiT's ablation, Peebles & Xie 2023, Sec. 3.2): shift and scale from the
    condition, no gates, default init. ``modulate``: the modulation function to use (notebook 11
    passes the learner's); None, the library's (looked up when the block runs)."""

    def __init__(self, dim: int, heads: int, cond_dim: int, modulate=None):
        super().__init__()
        self.norm1, self.attn = layer_norm(dim), SelfAttention(dim, heads)
        self.norm2, self.mlp = layer_norm(dim), mlp(dim)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 4 * dim))
        self.modulate_fn = modulate

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mod = self.modulate_fn or modulate
        shift1, scale1, shift2, scale2 = self.adaLN(c).chunk(4, dim=-1)
        x = x + self.attn(mod(self.norm1(x), shift1, scale1))
        return x + self.mlp(mod(self.norm2(x), shift2, scale2))


class PlainBlock(nn.Module):
    """A pre-LN transformer block (Vaswani et al. 2017 with LN first); the condition is ignored:
    in-context conditioning puts it into the sequence instead. Also the text encoder's block."""

    def __init__(self, dim: int, heads: int, cond_dim: int | None = None):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), mlp(dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, pad_mask: torch.Tensor | None = None):
        x = x + self.attn(self.norm1(x), pad_mask)
        return x + self.mlp(self.norm2(x))


class InContextBlock(PlainBlock):
    """A ``PlainBlock`` at an end of an in-context stack (DiT's in-context conditioning, Peebles & Xie
    2023, Sec. 3.2): ``first`` appends the condition c (B, dim) to the sequence as one more token
    before its layers, ``last`` drops that token after them; so c enters once and every block between
    attends to it. Its parameters (and state-dict keys) are a ``PlainBlock``'s."""

    def __init__(self, dim: int, heads: int, first: bool = False, last: bool = False):
        super().__init__(dim, heads)
        self.first, self.last = first, last

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, pad_mask: torch.Tensor | None = None):
        if self.first:
            x = torch.cat([x, c[:, None]], dim=1)  # (B, T + 1, dim)
        x = super().forward(x)
        return x[:, :-1] if self.last else x  # (B, T, dim) after the last block


class FinalLayer(nn.Module):
    """LN, adaptive shift and scale, then a linear map of each token to its patch; all starting at
    zero (DiT's decoder), so a new DiT predicts 0. ``adaptive=False``: a plain LN (in-context)."""

    def __init__(self, dim: int, cond_dim: int, out_dim: int, adaptive: bool = True, zero: bool = True):
        super().__init__()
        self.norm = layer_norm(dim) if adaptive else nn.LayerNorm(dim)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim)) if adaptive else None
        self.linear = nn.Linear(dim, out_dim)
        if zero:
            zero_(self.linear)
            if self.adaLN is not None:
                zero_(self.adaLN[1])

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        if self.adaLN is not None:
            shift, scale = self.adaLN(c).chunk(2, dim=-1)
            # modulate(h, shift, scale) written out: notebook 11 gives this layer to learners, whose
            # grading forbids calling the library's modulate (an exercise there)
            h = h * (1 + scale[:, None, :]) + shift[:, None, :]
        return self.linear(h)


def time_mlp(dim: int) -> nn.Sequential:
    """The MLP applied to ``timestep_embedding(t, dim)``: Linear, SiLU, Linear."""
    return nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))


BLOCKS = {"adaln_zero": DiTBlock, "adaln": AdaLNBlock, "in_context": PlainBlock}


# ---------------------------------------------------------------------------------------------
# DiT
# ---------------------------------------------------------------------------------------------
class DiT(nn.Module):
    """A class-conditional diffusion transformer (Peebles & Xie 2023, Fig. 3).

    patchify -> Linear embedding + fixed 2D sin-cos positions -> ``depth`` blocks conditioned on
    c = time embedding + label embedding -> final layer -> unpatchify. ``conditioning`` picks
    DiT's variants (Sec. 3.2, Fig. 5): "adaln_zero" (the default), "adaln" (no gates, default
    init) or "in_context" (c appended to the sequence as one more token, plain blocks).
    """

    def __init__(self, in_ch: int, image_size: int, patch: int, dim: int, depth: int, heads: int,
                 n_classes: int | None = None, conditioning: str = "adaln_zero"):
        super().__init__()
        self.in_ch, self.image_size, self.patch, self.n_classes = in_ch, image_size, patch, n_classes
        self.conditioning = conditioning
        self.x_embed = nn.Linear(in_ch * patch * patch, dim)
        self.register_buffer("pos_embed", sincos_pos_embed(image_size // patch, dim), persistent=False)
        self.dim = dim
        self.t_embed = time_mlp(dim)
        self.y_embed = nn.Embedding(n_classes + 1, dim) if n_classes else None
        self.blocks = nn.ModuleList([BLOCKS[conditioning](dim, heads, dim) for _ in range(depth)])
        adaptive = conditioning != "in_context"
        self.final = FinalLayer(dim, dim, in_ch * patch * patch, adaptive=adaptive,
                                zero=conditioning != "adaln")

    def condition(self, t: torch.Tensor, y: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        """c = t_embed(t) + y_embed(y) (null label when y is None): (B, dim)."""
        t = torch.as_tensor(t, device=device)
        c = self.t_embed(timestep_embedding(t.expand(batch) if t.dim() == 0 else t, self.dim))
        if self.y_embed is not None:
            if y is None:
                y = torch.full((batch,), self.n_classes, dtype=torch.long, device=device)
            c = c + self.y_embed(y)
        return c

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.x_embed(patchify(x, self.patch)) + self.pos_embed  # (B, T, dim)
        c = self.condition(t, y, B, x.device)  # (B, dim)
        T = h.shape[1]
        if self.conditioning == "in_context":
            h = torch.cat([h, c[:, None]], dim=1)  # (B, T + 1, dim)
        for block in self.blocks:
            h = block(h, c)
        return unpatchify(self.final(h[:, :T], c), self.patch, C, H, W)


# ---------------------------------------------------------------------------------------------
# The conditioning ablation, by module surgery on any DiT
# ---------------------------------------------------------------------------------------------
def _first_param(module: nn.Module) -> torch.Tensor | None:
    return next(module.parameters(), None)


def _heads_of(block: nn.Module) -> int | None:
    """The number of attention heads a block declares (``heads``, or ``num_heads`` of nn.MultiheadAttention)."""
    for m in block.modules():
        for name in ("heads", "num_heads"):
            value = getattr(m, name, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


def conditioning_variant(model: nn.Module, conditioning: str, block_type: type, heads: int | None = None,
                         modulate=None) -> nn.Module:
    """``model`` (a DiT) with another of DiT's ways of conditioning (Peebles & Xie 2023, Sec. 3.2 and
    Fig. 5), made by swapping its modules in place; returns ``model``.

    Nothing of the model's own code or attribute names is assumed, only that its transformer blocks
    are instances of ``block_type``, each called as ``block(h, c)`` with c (B, cond_dim), in the
    order the model registers them (an ``nn.ModuleList``), and that its decoder is a ``FinalLayer``
    called as ``final(h, c)``. Sizes are read from the ``FinalLayer``'s linear layers (dim, cond_dim,
    out_dim); ``heads`` from the blocks (an attribute ``heads`` or ``num_heads``) unless given.

    - ``"adaln"``: every block becomes an ``AdaLNBlock(dim, heads, cond_dim, modulate)`` (shift and
      scale from c, no gates, default initialisation) and the ``FinalLayer`` a new one without the
      zero initialisation;
    - ``"in_context"``: every block becomes a ``PlainBlock``; the first appends c to the sequence as
      one more token and the last drops it (``InContextBlock``), so the token enters once and persists
      through every block; the ``FinalLayer`` becomes a non-adaptive one (``adaptive=False``).

    ``modulate``: the modulation function of the adaLN blocks (None: the library's, looked up when
    they run). The new modules get the device and dtype of the ones they replace.
    """
    if conditioning not in ("adaln", "in_context"):
        raise ValueError(f"conditioning must be 'adaln' or 'in_context', not {conditioning!r}")
    owners = {id(m): (parent, name) for parent in model.modules() for name, m in parent.named_children()}
    blocks = [m for m in model.modules() if isinstance(m, block_type)]
    finals = [m for m in model.modules() if isinstance(m, FinalLayer)]
    kind = getattr(block_type, "__name__", str(block_type))
    if not blocks:
        raise ValueError(f"the conditioning ablation swaps the transformer blocks of your {type(model).__name__}, "
                         f"but it holds no {kind} instance: build its blocks as {kind}(dim, heads, dim), "
                         f"kept in the model (an nn.ModuleList), each called as block(h, c)")
    if not finals:
        raise ValueError(f"the conditioning ablation replaces the decoder of your {type(model).__name__}, but it "
                         "holds no FinalLayer: use the given FinalLayer(dim, dim, in_ch * patch**2) (from "
                         "course.dit, in the setup cell) as its decoder, called as final(h, c)")
    if any(m is model for m in blocks + finals):
        raise ValueError("conditioning_variant converts a whole DiT, not a single block or FinalLayer")
    final = finals[-1]
    if final.adaLN is None:
        raise ValueError("the model's FinalLayer is not adaptive: the model is already an in-context variant")
    dim, cond_dim = final.linear.in_features, final.adaLN[1].in_features
    heads = heads if heads is not None else _heads_of(blocks[0])
    if heads is None:
        raise ValueError(f"cannot tell how many attention heads your {kind} has (no attribute 'heads' or "
                         "'num_heads'): pass heads=...")
    if conditioning == "in_context" and cond_dim != dim:
        raise ValueError(f"in-context conditioning puts c into the sequence as a token: it needs cond_dim == dim "
                         f"(here {cond_dim} and {dim})")

    def swap(old: nn.Module, new: nn.Module) -> None:
        parent, name = owners[id(old)]
        ref = _first_param(old)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        setattr(parent, name, new)

    for i, block in enumerate(blocks):
        if conditioning == "adaln":
            swap(block, AdaLNBlock(dim, heads, cond_dim, modulate=modulate))
        elif i == 0 or i == len(blocks) - 1:
            swap(block, InContextBlock(dim, heads, first=i == 0, last=i == len(blocks) - 1))
        else:
            swap(block, PlainBlock(dim, heads))
    for f in finals:
        f_cond = f.adaLN[1].in_features if f.adaLN is not None else cond_dim
        swap(f, FinalLayer(f.linear.in_features, f_cond, f.linear.out_features,
                           adaptive=conditioning != "in_context", zero=conditioning != "adaln"))
    return model


# ---------------------------------------------------------------------------------------------
# Text-conditioned DiT
# ---------------------------------------------------------------------------------------------
PARTS = ("patchify", "unpatchify", "modulate", "CrossAttention", "JointAttention")


def check_parts(parts) -> dict:
    """``parts`` as a dict (None: empty); a name outside :data:`PARTS` is refused (a typo would
    otherwise fall back to the library's silently)."""
    parts = dict(parts or {})
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown parts {unknown}: TextDiT takes {', '.join(PARTS)}")
    return parts


def part(parts: dict | None, name: str):
    """``parts[name]`` when given, else the library's own (looked up now, when called, not at import:
    notebook 11 hands the text model the learner's patchify, unpatchify, modulate, CrossAttention and
    JointAttention)."""
    if parts and name in parts:
        return parts[name]
    return {"patchify": patchify, "unpatchify": unpatchify, "modulate": modulate,
            "CrossAttention": CrossAttention, "JointAttention": JointAttention}[name]


class CrossDiTBlock(nn.Module):
    """adaLN-Zero block with a cross-attention sub-layer to the text tokens (PixArt-alpha style,
    Chen et al. 2023, with its own zero-initialised gate):

        x = x + gate1 * Attn(modulate(LN(x), shift1, scale1))
        x = x + gate2 * CrossAttn(modulate(LN(x), shift2, scale2), text, pad_mask)
        x = x + gate3 * MLP(modulate(LN(x), shift3, scale3))
    """

    def __init__(self, dim: int, heads: int, cond_dim: int, parts: dict | None = None):
        super().__init__()
        self.parts = check_parts(parts)
        self.norm1, self.attn = layer_norm(dim), SelfAttention(dim, heads)
        self.norm2, self.cross = layer_norm(dim), part(self.parts, "CrossAttention")(dim, dim, heads)
        self.norm3, self.mlp = layer_norm(dim), mlp(dim)
        self.adaLN = nn.Sequential(nn.SiLU(), zero_(nn.Linear(cond_dim, 9 * dim)))

    def forward(self, x, text, pad_mask, c):
        modulate = part(self.parts, "modulate")
        s1, a1, g1, s2, a2, g2, s3, a3, g3 = self.adaLN(c).chunk(9, dim=-1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), s1, a1))
        x = x + g2[:, None] * self.cross(modulate(self.norm2(x), s2, a2), text, pad_mask)
        x = x + g3[:, None] * self.mlp(modulate(self.norm3(x), s3, a3))
        return x, text


class MMDiTBlock(nn.Module):
    """MM-DiT block (Esser et al. 2024, Fig. 2b): two streams, image and text, each with its own
    adaLN-Zero modulation and MLP, meeting in one joint attention."""

    def __init__(self, dim: int, heads: int, cond_dim: int, parts: dict | None = None):
        super().__init__()
        self.parts = check_parts(parts)
        self.norm1_x, self.norm1_c = layer_norm(dim), layer_norm(dim)
        self.attn = part(self.parts, "JointAttention")(dim, heads)
        self.norm2_x, self.norm2_c = layer_norm(dim), layer_norm(dim)
        self.mlp_x, self.mlp_c = mlp(dim), mlp(dim)
        self.adaLN_x = nn.Sequential(nn.SiLU(), zero_(nn.Linear(cond_dim, 6 * dim)))
        self.adaLN_c = nn.Sequential(nn.SiLU(), zero_(nn.Linear(cond_dim, 6 * dim)))

    def forward(self, x, text, pad_mask, c):
        modulate = part(self.parts, "modulate")
        sx1, ax1, gx1, sx2, ax2, gx2 = self.adaLN_x(c).chunk(6, dim=-1)
        sc1, ac1, gc1, sc2, ac2, gc2 = self.adaLN_c(c).chunk(6, dim=-1)
        hx, hc = self.attn(modulate(self.norm1_x(x), sx1, ax1), modulate(self.norm1_c(text), sc1, ac1), pad_mask)
        x, text = x + gx1[:, None] * hx, text + gc1[:, None] * hc
        x = x + gx2[:, None] * self.mlp_x(modulate(self.norm2_x(x), sx2, ax2))
        text = text + gc2[:, None] * self.mlp_c(modulate(self.norm2_c(text), sc2, ac2))
        return x, text


class TextDiT(nn.Module):
    """A DiT conditioned on a caption: ``forward(x, t, tokens, pad_mask, extra_tokens=None)``.

    Text: token embeddings + learned positions, after one learned token that is never masked (so the
    empty caption, classifier-free guidance's null condition, still has a key), through ``text_layers``
    transformer blocks (a tiny text encoder trained with the model). The masked mean of the text
    tokens, through a linear layer, is added to the time embedding for adaLN (as Imagen and SD3
    add a pooled text vector); the tokens themselves enter every block by cross-attention
    (``attention="cross"``) or joint attention (``"joint"``, MM-DiT).

    ``embed_image(x, frame)`` gives an image's tokens (patches, positions, plus ``frame`` times a
    learned frame vector, FLUX.1 Kontext's offset for context images); pass them as
    ``extra_tokens`` (B, K, dim) to put them into the sequence: they are attended to, and dropped
    from the output, which is x's prediction (B, C, H, W).

    ``parts``: a dict naming the building blocks to use, any of ``patchify``, ``unpatchify``,
    ``modulate``, ``CrossAttention``, ``JointAttention`` (notebook 11 passes the learner's); the others
    are the library's own, looked up when the model is built or run.
    """

    def __init__(self, in_ch: int, image_size: int, patch: int, dim: int, depth: int, heads: int,
                 vocab_size: int, max_len: int, attention: str = "cross", text_layers: int = 1,
                 parts: dict | None = None):
        super().__init__()
        self.parts = check_parts(parts)
        self.in_ch, self.image_size, self.patch, self.attention = in_ch, image_size, patch, attention
        self.x_embed = nn.Linear(in_ch * patch * patch, dim)
        self.register_buffer("pos_embed", sincos_pos_embed(image_size // patch, dim), persistent=False)
        self.frame_embed = nn.Parameter(0.02 * torch.randn(dim))
        self.dim = dim
        self.t_embed = time_mlp(dim)
        self.tok_embed = nn.Embedding(vocab_size, dim)
        self.text_pos = nn.Parameter(0.02 * torch.randn(max_len + 1, dim))
        self.null_token = nn.Parameter(0.02 * torch.randn(dim))
        self.text_encoder = nn.ModuleList([PlainBlock(dim, heads) for _ in range(text_layers)])
        self.pooled = nn.Linear(dim, dim)
        block = {"cross": CrossDiTBlock, "joint": MMDiTBlock}[attention]
        self.blocks = nn.ModuleList([block(dim, heads, dim, parts=self.parts) for _ in range(depth)])
        self.final = FinalLayer(dim, dim, in_ch * patch * patch)

    def embed_image(self, x: torch.Tensor, frame: int = 0) -> torch.Tensor:
        """(B, C, H, W) -> tokens (B, (H/p)(W/p), dim) with positions (and the frame offset)."""
        return self.x_embed(part(self.parts, "patchify")(x, self.patch)) + self.pos_embed + frame * self.frame_embed

    def encode_text(self, tokens: torch.Tensor, pad_mask: torch.Tensor):
        """(tokens (B, M), pad_mask (B, M)) -> text (B, M + 1, dim), mask (B, M + 1), pooled (B, dim)."""
        B, M = tokens.shape
        text = torch.cat([self.null_token.expand(B, 1, -1), self.tok_embed(tokens)], dim=1)  # (B, M + 1, dim)
        text = text + self.text_pos[: M + 1]
        mask = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=tokens.device), pad_mask.bool()], dim=1)
        for block in self.text_encoder:
            text = block(text, pad_mask=mask)
        keep = (~mask).float()[..., None]  # (B, M + 1, 1)
        pooled = (text * keep).sum(1) / keep.sum(1)
        return text, mask, pooled

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, pad_mask: torch.Tensor,
                extra_tokens: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.embed_image(x)  # (B, T, dim)
        T = h.shape[1]
        if extra_tokens is not None:
            h = torch.cat([h, extra_tokens], dim=1)  # (B, T + K, dim)
        text, mask, pooled = self.encode_text(tokens, pad_mask)
        t = torch.as_tensor(t, device=x.device)
        c = self.t_embed(timestep_embedding(t.expand(B) if t.dim() == 0 else t, self.dim)) + self.pooled(pooled)
        for block in self.blocks:
            h, text = block(h, text, mask, c)
        return part(self.parts, "unpatchify")(self.final(h[:, :T], c), self.patch, C, H, W)


def n_params(module: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

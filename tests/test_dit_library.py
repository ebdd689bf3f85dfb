"""The library of notebook 11: course.dit (patches, adaLN-Zero, DiT, TextDiT), course.text
(tokenize, cross- and joint attention) and course.captions (the measured caption data set)."""
from __future__ import annotations

import math

import pytest
import torch

from course import captions as cap
from course import dit as dit_lib
from course.dit import (DiT, DiTBlock, FinalLayer, SelfAttention, TextDiT, conditioning_variant, modulate,
                        n_params, patchify, unpatchify)
from course.embedding import timestep_embedding
from course.text import CrossAttention, JointAttention, tokenize


def jiggle(module, scale=0.1):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


# -- patches ----------------------------------------------------------------------------------
def test_patchify_order_and_inverse():
    """Are patches row-major over the grid, values (C, p, p) within a patch, and is unpatchify its inverse?"""
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    tokens = patchify(x, 2)
    assert tokens.shape == (1, 4, 8)
    # token 1 is the top-right patch: channel 0 rows 0-1 cols 2-3, then channel 1
    assert tokens[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]
    assert tokens[0, 2].tolist()[:4] == [8, 9, 12, 13]  # bottom-left patch
    y = torch.randn(3, 3, 8, 12)
    assert torch.equal(unpatchify(patchify(y, 4), 4, 3, 8, 12), y)


def test_modulate_broadcasts_over_tokens():
    """Is modulate x (1 + scale) + shift with (B, D) shift and scale applied to every token?"""
    x = torch.randn(2, 5, 3)
    shift, scale = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.allclose(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])


# -- blocks and DiT ---------------------------------------------------------------------------
def test_fresh_dit_block_is_identity_and_condition_matters_after_training():
    """Is a new adaLN-Zero block the identity, and does the condition change a trained block's output?"""
    torch.manual_seed(0)
    block = DiTBlock(16, 4, 8)
    x, c = torch.randn(3, 6, 16), torch.randn(3, 8)
    assert torch.allclose(block(x, c), x)
    jiggle(block)
    with torch.no_grad():
        assert (block(x, c) - block(x, torch.randn(3, 8))).abs().mean() > 1e-3


@pytest.mark.parametrize("conditioning", ["adaln_zero", "adaln", "in_context"])
def test_dit_shapes_and_conditioning(conditioning):
    """Does every DiT variant keep the image's shape and respond to the time and the label?"""
    torch.manual_seed(0)
    net = jiggle(DiT(2, 8, 2, 32, 2, 4, n_classes=10, conditioning=conditioning))
    x = torch.randn(4, 2, 8, 8)
    t = torch.tensor([1, 200, 500, 900])
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        out = net(x, t, y)
        assert out.shape == x.shape
        assert (out - net(x, t.flip(0), y)).abs().mean() > 1e-3
        assert (out - net(x, t, y + 4)).abs().mean() > 1e-3
        assert torch.allclose(net(x, t), net(x, t, torch.full((4,), 10)))


def test_new_dit_predicts_zero():
    """With adaLN-Zero, a new DiT's output is zero (zero-initialised decoder)."""
    net = DiT(1, 8, 2, 32, 2, 4, n_classes=10)
    assert net(torch.randn(2, 1, 8, 8), torch.tensor([3, 4])).abs().max() == 0


# -- the conditioning ablation by module surgery -----------------------------------------------
class LearnerBlock(torch.nn.Module):
    """A learner's adaLN-Zero block with its own names (fused modulation layer, SiLU inside forward)."""

    def __init__(self, dim, heads, cond_dim):
        super().__init__()
        self.ln_a = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ln_b = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.att = SelfAttention(dim, heads)
        self.ff = torch.nn.Sequential(torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(approximate="tanh"),
                                      torch.nn.Linear(4 * dim, dim))
        self.to_mod = torch.nn.Linear(cond_dim, 6 * dim)
        torch.nn.init.zeros_(self.to_mod.weight)
        torch.nn.init.zeros_(self.to_mod.bias)

    def forward(self, x, c):
        b1, s1, g1, b2, s2, g2 = self.to_mod(torch.nn.functional.silu(c)).unsqueeze(1).chunk(6, dim=-1)
        x = x + g1 * self.att(self.ln_a(x) * (1 + s1) + b1)
        return x + g2 * self.ff(self.ln_b(x) * (1 + s2) + b2)


class LearnerDiT(torch.nn.Module):
    """A learner's DiT with other attribute names than the library's (embed, time, labels, stack, head)."""

    def __init__(self, in_ch, image_size, patch, dim, depth, heads, n_classes=None):
        super().__init__()
        self.p, self.d, self.k = patch, dim, n_classes
        self.embed = torch.nn.Linear(in_ch * patch * patch, dim)
        self.register_buffer("pos", dit_lib.sincos_pos_embed(image_size // patch, dim), persistent=False)
        self.time = dit_lib.time_mlp(dim)
        self.labels = torch.nn.Embedding(n_classes + 1, dim)
        self.stack = torch.nn.ModuleList(LearnerBlock(dim, heads, dim) for _ in range(depth))
        self.head = FinalLayer(dim, dim, in_ch * patch * patch)

    def forward(self, x, t, y=None):
        B, C, H, W = x.shape
        h = self.embed(patchify(x, self.p)) + self.pos
        y = torch.full((B,), self.k) if y is None else y
        c = self.time(timestep_embedding(t, self.d)) + self.labels(y)
        for block in self.stack:
            h = block(h, c)
        return unpatchify(self.head(h, c), self.p, C, H, W)


LEARNER_TO_LIBRARY = {"embed.": "x_embed.", "time.": "t_embed.", "labels.": "y_embed.", "stack.": "blocks.",
                      "head.": "final."}


def _as_learner(state):
    back = {v: k for k, v in LEARNER_TO_LIBRARY.items()}
    return {next(back[p] + k[len(p):] for p in back if k.startswith(p)): v for k, v in state.items()}


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("conditioning", ["adaln", "in_context"])
def test_conditioning_variant_of_a_dit_computes_the_library_variant(conditioning, depth):
    """Does swapping the blocks of a DiT (the library's, and a learner's with other names) give DiT's
    adaLN / in-context variant: as many parameters, and the output of course.dit.DiT(conditioning=...)
    given the same weights? (depth 1: one block appends and drops the condition token.)"""
    torch.manual_seed(0)
    lib = jiggle(DiT(1, 8, 2, 32, depth, 4, n_classes=10, conditioning=conditioning))
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 900]), torch.tensor([1, 2, 10])
    with torch.no_grad():
        want = lib(x, t, y)
    for model, block_type, state in [(DiT(1, 8, 2, 32, depth, 4, n_classes=10), DiTBlock, lib.state_dict()),
                                     (LearnerDiT(1, 8, 2, 32, depth, 4, n_classes=10), LearnerBlock,
                                      _as_learner(lib.state_dict()))]:
        converted = conditioning_variant(model, conditioning, block_type)
        assert converted is model and n_params(converted) == n_params(lib)
        assert not [m for m in converted.modules() if isinstance(m, block_type)]
        converted.load_state_dict(state)  # strict: the same entries, the same shapes
        with torch.no_grad():
            assert torch.allclose(converted(x, t, y), want, atol=1e-5), type(model).__name__


def test_conditioning_variant_starts_like_the_library_variant():
    """adaLN: no zero initialisation anywhere (a new model's output is not 0); in-context: the decoder
    starts at zero, as the library's in-context DiT."""
    torch.manual_seed(0)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        assert conditioning_variant(DiT(1, 8, 2, 32, 2, 4, 10), "adaln", DiTBlock)(x, t).abs().max() > 1e-3
        assert conditioning_variant(DiT(1, 8, 2, 32, 2, 4, 10), "in_context", DiTBlock)(x, t).abs().max() == 0


def test_the_adaln_variant_calls_the_modulate_it_is_given():
    """The adaLN blocks use the modulate function handed to conditioning_variant (notebook 11: the
    learner's), twice per block per call."""
    calls = []

    def my_modulate(x, shift, scale):
        calls.append(x.shape)
        return x * (1 + scale[:, None, :]) + shift[:, None, :]

    model = conditioning_variant(DiT(1, 8, 2, 32, 3, 4, 10), "adaln", DiTBlock, modulate=my_modulate)
    with torch.no_grad():
        model(torch.randn(2, 1, 8, 8), torch.tensor([3, 700]))
    assert len(calls) == 6


def test_conditioning_variant_says_what_it_needs():
    """A DiT without DiTBlock instances, or without the given FinalLayer, gets a clear message."""
    with pytest.raises(ValueError, match="holds no DiTBlock instance"):
        conditioning_variant(LearnerDiT(1, 8, 2, 32, 2, 4, 10), "adaln", DiTBlock)
    no_final = LearnerDiT(1, 8, 2, 32, 2, 4, 10)
    no_final.head = torch.nn.Linear(32, 4)
    with pytest.raises(ValueError, match="holds no FinalLayer"):
        conditioning_variant(no_final, "in_context", LearnerBlock)
    with pytest.raises(ValueError, match="'adaln' or 'in_context'"):
        conditioning_variant(DiT(1, 8, 2, 32, 2, 4, 10), "cross_attention", DiTBlock)


# -- text -------------------------------------------------------------------------------------
def test_tokenize_pads_and_masks():
    """Does tokenize pad with id 0, cut at max_len, map unknown words to <unk>, and mark padding True?"""
    vocab = {"<pad>": 0, "<unk>": 1, "a": 2, "seven": 3}
    ids, mask = tokenize(["a seven", "a purple seven a a", ""], vocab, 4)
    assert ids.dtype == torch.long and ids.tolist() == [[2, 3, 0, 0], [2, 1, 3, 2], [0, 0, 0, 0]]
    assert mask.tolist() == [[False, False, True, True], [False] * 4, [True] * 4]


def test_cross_attention_ignores_padding_and_takes_keys_from_text():
    """Is cross-attention with a padding mask the same as attending to the real tokens only, and does
    each image token's output depend on no other image token?"""
    torch.manual_seed(0)
    attn = CrossAttention(16, 12, 4)
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 3:] = True
    mask[1, 6:] = True
    out = attn(x, ctx, mask)
    assert torch.allclose(out[0], attn(x[:1], ctx[:1, :3])[0], atol=1e-6)
    assert torch.allclose(out[1], attn(x[1:], ctx[1:, :6])[0], atol=1e-6)
    x2 = x.clone()
    x2[:, 0] = torch.randn(2, 16)
    assert torch.allclose(attn(x2, ctx, mask)[:, 1:], out[:, 1:], atol=1e-6)


def test_joint_attention_is_one_attention_over_the_concatenation():
    """Does JointAttention equal one softmax attention over [image; text] with per-modality weights?"""
    torch.manual_seed(0)
    dim, heads = 16, 2
    attn = JointAttention(dim, heads)
    x, c = torch.randn(2, 5, dim), torch.randn(2, 3, dim)
    out_x, out_c = attn(x, c)
    qkv = torch.cat([attn.qkv_x(x), attn.qkv_c(c)], 1)  # (B, 8, 3 dim)
    q, k, v = (z.reshape(2, 8, heads, dim // heads).transpose(1, 2) for z in qkv.chunk(3, -1))
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim // heads), -1)
    o = (w @ v).transpose(1, 2).reshape(2, 8, dim)
    assert torch.allclose(out_x, attn.proj_x(o[:, :5]), atol=1e-6)
    assert torch.allclose(out_c, attn.proj_c(o[:, 5:]), atol=1e-6)


@pytest.mark.parametrize("attention", ["cross", "joint"])
def test_text_dit_follows_the_caption_and_takes_extra_tokens(attention):
    """Does TextDiT keep shapes, respond to the caption, accept the empty caption and extra tokens?"""
    torch.manual_seed(0)
    net = jiggle(TextDiT(1, 8, 2, 32, 2, 4, len(cap.VOCAB), cap.MAX_LEN, attention=attention))
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([10, 500, 900])
    ids, pad = tokenize(["a thick seven", "a thin upright small one", "an eight"], cap.VOCAB, cap.MAX_LEN)
    ids_b, pad_b = tokenize(["a thin seven", "a thin upright small four", "a two"], cap.VOCAB, cap.MAX_LEN)
    empty = tokenize([""] * 3, cap.VOCAB, cap.MAX_LEN)
    with torch.no_grad():
        out = net(x, t, ids, pad)
        assert out.shape == x.shape
        assert (out - net(x, t, ids_b, pad_b)).abs().mean() > 1e-3
        assert torch.isfinite(net(x, t, *empty)).all()
        ctx = net.embed_image(torch.randn(3, 1, 8, 8), frame=1)
        with_ctx = net(x, t, ids, pad, extra_tokens=ctx)
        assert with_ctx.shape == x.shape and (with_ctx - out).abs().mean() > 1e-4
    assert n_params(net) > 0


@pytest.mark.parametrize("attention", ["cross", "joint"])
def test_text_dit_uses_the_parts_it_is_given(attention):
    """TextDiT(parts=...) builds and runs with the given patchify, unpatchify, modulate and attention
    class (notebook 11: the learner's); without parts, the library's, with the same state-dict keys
    (notebook 12's editor checkpoint); an unknown part is refused."""
    used = set()

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            used.add(name)
            return fn(*args, **kwargs)
        return wrapped

    class MyCross(CrossAttention):
        pass

    class MyJoint(JointAttention):
        pass

    parts = dict(patchify=spy("patchify", patchify), unpatchify=spy("unpatchify", unpatchify),
                 modulate=spy("modulate", modulate), CrossAttention=MyCross, JointAttention=MyJoint)
    torch.manual_seed(0)
    mine = TextDiT(1, 8, 2, 32, 2, 4, len(cap.VOCAB), cap.MAX_LEN, attention=attention, parts=parts)
    torch.manual_seed(0)
    lib = TextDiT(1, 8, 2, 32, 2, 4, len(cap.VOCAB), cap.MAX_LEN, attention=attention)
    assert list(mine.state_dict()) == list(lib.state_dict())
    jiggle(lib)
    mine.load_state_dict(lib.state_dict())
    attn_type = MyCross if attention == "cross" else MyJoint
    assert sum(isinstance(m, attn_type) for m in mine.modules()) == 2
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 900])
    ids, pad = tokenize(["a thick seven", ""], cap.VOCAB, cap.MAX_LEN)
    with torch.no_grad():
        assert torch.allclose(mine(x, t, ids, pad), lib(x, t, ids, pad), atol=1e-6)
    assert used == {"patchify", "unpatchify", "modulate"}
    with pytest.raises(ValueError, match="unknown parts"):
        TextDiT(1, 8, 2, 32, 2, 4, len(cap.VOCAB), cap.MAX_LEN, parts=dict(patchfy=patchify))


# -- captions ---------------------------------------------------------------------------------
def _blank(n=1):
    return -torch.ones(n, 1, 8, 8)


def test_measurements_on_drawn_images():
    """Ink counts inked pixels; a right-leaning stroke has positive slant; a bigger square, a larger size."""
    x = _blank(3)
    x[0, 0, 2:6, 3] = 1  # an upright bar: 4 of 64 pixels
    for r in range(6):  # a stroke leaning right going up: column 6 - r at row r + 1
        x[1, 0, r + 1, 6 - r] = 1
    x[2, 0, 1:7, 1:7] = 1  # a big square
    assert torch.allclose(cap.ink(x)[0], torch.tensor(4 / 64))
    assert abs(float(cap.slant(x)[0])) < 1e-6 and float(cap.slant(x)[1]) > 0.9
    small = _blank()
    small[0, 0, 3:5, 3:5] = 1
    assert float(cap.size(x[2:])) > float(cap.size(small))
    assert cap.measure(torch.nn.functional.interpolate(x, size=16)).shape == (3, 3)


def test_every_caption_is_checked_by_the_measurements():
    """Does every word of every data-set caption agree with the image's own measurements?"""
    x, y, captions = cap.caption_dataset()
    assert len(captions) == len(x) == 1797
    for attribute in cap.ATTRIBUTES:
        matches = cap.attribute_matches(x, captions, attribute)
        present = ~matches.isnan()
        assert 0.25 < present.float().mean() < 0.8, attribute  # about two thirds get a word
        assert matches[present].min() == 1.0, attribute
    digits = [cap.parse_caption(c)[0] for c in captions]
    assert digits == y.tolist()
    assert cap.caption_images(x[:5], y[:5]) == captions[:5]


def test_vocab_covers_every_caption_and_thresholds_are_class_statistics():
    """Are all caption words in VOCAB (pad 0), within MAX_LEN, and the class statistics those of the data?"""
    x, y, captions = cap.caption_dataset()
    assert cap.VOCAB["<pad>"] == 0
    assert all(w in cap.VOCAB for c in captions for w in c.split())
    assert max(len(c.split()) for c in captions) <= cap.MAX_LEN
    means, stds = cap.class_statistics()
    assert torch.allclose(means[7], cap.measure(x[y == 7]).mean(0))
    z = cap.zscores(x, y)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-4)
    assert cap.make_caption(8, {"ink": "thick"}) == "a thick eight" and cap.make_caption(8, {}) == "an eight"

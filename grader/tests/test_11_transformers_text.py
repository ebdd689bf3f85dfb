"""Hidden tests of notebook 11 (DiT and text conditioning). Inputs and seeds are drawn at grading time from ``rng``.

Functions are compared with the course library (the reference) or closed forms; the learner's modules
are judged through the probes of the public module, by their behaviour, and joint attention against
one attention over the concatenation computed here from the learner's own weights.
"""
from __future__ import annotations

import torch

from course.dit import modulate, patchify
from course.text import tokenize
from grader.engine.api import Hint, expect, expect_close, exercise
from grader.public.nb11_transformers_text import (CROSS_SHAPES_HINT, UNPATCH_HINT_TEXT, expect_close_or, hint,
                                                   judge_block_uses_c, judge_dit_conditioning,
                                                   judge_fresh_block_is_identity, judge_joint, judge_losses_decrease,
                                                   judge_no_error, judge_padding_ignored, judge_shapes,
                                                   judge_weights_over_keys, modulate_hints, patch_hints,
                                                   patch_layouts, reduced)


def seed_from(rng) -> int:
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=rng))


def randint(rng, lo, hi) -> int:
    return int(torch.randint(lo, hi, (1,), generator=rng))


# -- patchify / unpatchify --------------------------------------------------------------------
def _random_image(rng):
    p = randint(rng, 2, 4)
    C = randint(rng, 2, 4)
    gh, gw = randint(rng, 2, 4), randint(rng, 2, 5)
    return torch.randn(3, C, gh * p, gw * p, generator=rng), p


@exercise("patchify")
def test_patchify_random(sub, rng):
    """patchify of random multi-channel images, patch sizes and non-square grids"""
    x, p = _random_image(rng)
    layouts = patch_layouts(x, p)
    got = sub.call("patchify", x, p)
    expect_close(got, patchify(x, p), f"patchify(x of shape {tuple(x.shape)}, p={p})",
                 hints=patch_hints(layouts))


@exercise("unpatchify")
def test_unpatchify_inverts_patchify(sub, rng):
    """unpatchify(patchify(x)) returns x for random shapes"""
    x, p = _random_image(rng)
    N, C, H, W = x.shape
    got = sub.call("unpatchify", patchify(x, p), p, C, H, W)
    hints = [Hint(patchify(x, p).reshape(N, C, H, W), *UNPATCH_HINT_TEXT)]
    expect_close_or(got, x, f"unpatchify(patchify(x, {p}), {p}, C={C}, H={H}, W={W})", hints=hints,
                    fallback="unpatchify does not undo patchify: patches are row-major over the grid, values "
                             "(channel, row, column) inside each token.",
                    where=UNPATCH_HINT_TEXT[1])


@exercise("unpatchify")
def test_unpatchify_token_order(sub, rng):
    """unpatchify puts token i * (W/p) + j at patch-row i, patch-column j"""
    p, C, gh, gw = 2, 2, 2, 3
    tokens = torch.zeros(1, gh * gw, C * p * p)
    i, j = randint(rng, 0, gh), randint(rng, 0, gw)
    tokens[0, i * gw + j] = torch.arange(1.0, C * p * p + 1)
    expected = torch.zeros(1, C, gh * p, gw * p)
    expected[0, :, i * p:(i + 1) * p, j * p:(j + 1) * p] = torch.arange(1.0, C * p * p + 1).reshape(C, p, p)
    got = sub.call("unpatchify", tokens, p, C, gh * p, gw * p)
    expect_close_or(got, expected, f"unpatchify of a single non-zero token (number {i * gw + j})",
                    hints=[Hint(torch.zeros_like(expected), "nothing came back: is the token written anywhere?")],
                    fallback="the token landed in the wrong place: token i (W/p) + j is the patch in patch-row i, "
                             "patch-column j.", where="section 1's first bullet: the order of the tokens.")


# -- modulate ---------------------------------------------------------------------------------
@exercise("modulate")
def test_modulate_random(sub, rng):
    """modulate on random tokens with a per-sample shift and scale"""
    B, T, D = 3, randint(rng, 4, 9), randint(rng, 2, 7)
    x = torch.randn(B, T, D, generator=rng)
    shift, scale = torch.randn(B, D, generator=rng), torch.randn(B, D, generator=rng)
    got = sub.call("modulate", x, shift, scale)
    expect_close(got, modulate(x, shift, scale), "modulate(x, shift, scale)", hints=modulate_hints(x, shift, scale))


@exercise("modulate")
def test_modulate_shape_broadcasts_over_tokens(sub, rng):
    """modulate with as many samples as tokens (a broadcast over the wrong axis shows)"""
    B = T = 4
    x = torch.randn(B, T, 3, generator=rng)
    shift, scale = torch.randn(B, 3, generator=rng), torch.randn(B, 3, generator=rng)
    got = sub.call("modulate", x, shift, scale)
    expect_close(got, modulate(x, shift, scale), "modulate(x (4, 4, 3), shift (4, 3), scale (4, 3))",
                 hints=modulate_hints(x, shift, scale))


# -- DiTBlock ---------------------------------------------------------------------------------
def _block_report(sub, rng):
    heads = randint(rng, 1, 4)
    dim = heads * 4 * randint(rng, 1, 4)
    cond_dim = randint(rng, 3, 17)
    return reduced(sub.probe("probe_ditblock", dim, heads, cond_dim, seed_from(rng))), (dim, heads, cond_dim)


@exercise("DiTBlock", weight=2.0)
def test_ditblock_new_is_identity_random(sub, rng):
    """a new DiTBlock is the identity for random sizes (adaLN-Zero)"""
    report, _ = _block_report(sub, rng)
    judge_fresh_block_is_identity(report)


@exercise("DiTBlock")
def test_ditblock_condition_and_tokens(sub, rng):
    """a trained-looking DiTBlock responds to the condition, mixes tokens, and is permutation-equivariant"""
    report, cfg = _block_report(sub, rng)
    judge_no_error(report, f"DiTBlock{cfg}", "Hint: forward(x, c) with x (B, T, dim), c (B, cond_dim).")
    judge_block_uses_c(report)
    expect(report["other_tokens_change"] > 1e-3,
           "changing one token left every other token's output unchanged: the tokens do not interact.",
           *hint("the first branch must mix the tokens.", where="section 3: the Attn bullet (self-attention over the tokens)."))
    expect_close(report["out_perm"], report["perm_out"], "DiTBlock on permuted tokens against its permuted output",
                 atol=1e-4, rtol=1e-3)


@exercise("DiTBlock")
def test_ditblock_learns(sub, rng):
    """a DiTBlock lowers a loss in a few Adam steps (the zero gates still get gradients)"""
    report, cfg = _block_report(sub, rng)
    judge_no_error(report, f"DiTBlock{cfg}", "Hint: forward(x, c) with x (B, T, dim), c (B, cond_dim).")
    judge_losses_decrease(report, "DiTBlock", factor=0.9)


# -- DiT --------------------------------------------------------------------------------------
@exercise("DiT")
def test_dit_shapes_random(sub, rng):
    """DiT output shapes for several channel counts, image sizes, patches and depths"""
    configs = []
    for _ in range(2):
        patch = randint(rng, 1, 3)
        size = patch * randint(rng, 2, 5)
        heads = randint(rng, 1, 3)
        dim = 4 * heads * randint(rng, 1, 3)
        configs.append((randint(rng, 1, 4), size, patch, dim, randint(rng, 1, 3), heads,
                        [None, 10][randint(rng, 0, 2)], 2))
    configs.append((2, 8, 4, 16, 1, 2, 10, 3))
    got = sub.probe("probe_dit_shapes", configs, seed_from(rng))
    judge_shapes(got, [[b, c, s, s] for c, s, *_, b in configs],
                 [f"DiT{tuple(cfg[:7])} on x of shape {(cfg[7], cfg[0], cfg[1], cfg[1])}" for cfg in configs],
                 "Hint: follow section 4's four steps (tokens, condition, blocks, decoder) and write the shape "
                 "after each; the position embedding has one row per patch, (image_size / patch)^2 rows.")


@exercise("DiT", weight=2.0)
def test_dit_conditioning(sub, rng):
    """DiT's output depends on the time and the label; y=None is the null label; patches interact"""
    judge_dit_conditioning(reduced(sub.probe("probe_dit_conditioning", seed_from(rng))))


@exercise("DiT")
def test_dit_learns(sub, rng):
    """a small DiT lowers a loss in a few Adam steps"""
    judge_losses_decrease(sub.probe("probe_dit_train", 20, seed_from(rng)), "DiT")


# -- tokenize ---------------------------------------------------------------------------------
@exercise("tokenize")
def test_tokenize_random(sub, rng):
    """tokenize of random captions (unknown words, long and empty captions) against the reference"""
    words = ["a", "an", "thin", "thick", "seven", "two", "upright"]
    vocab = {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    captions = []
    for _ in range(5):
        n = randint(rng, 1, 8)
        captions.append(" ".join((words + ["purple", "dog"])[randint(rng, 0, len(words) + 2)] for _ in range(n)))
    captions += ["", "a purple seven", "a thin thick seven two upright an a"]  # unknown word; longer than max_len
    max_len = randint(rng, 4, 7)
    ids, mask = tokenize(captions, vocab, max_len)
    got_ids, got_mask = sub.call("tokenize", captions, vocab, max_len)
    left = torch.stack([torch.roll(row, int(m.sum())) for row, m in zip(ids, mask)])
    expect_close(got_ids, ids, f"ids of tokenize(captions, vocab, max_len={max_len}); captions {captions!r}", hints=[
        Hint(left, "the padding comes first: pad at the end, after the words.", where="section 7: where the padding goes."),
        Hint(torch.where(ids == 1, torch.zeros_like(ids), ids),
             "words not in the vocabulary got the padding id.", where="section 7: the id of an unknown word.")])
    expect_close(got_mask, mask, f"pad_mask of tokenize(captions, vocab, max_len={max_len})",
                 hints=[Hint(~mask, "the mask is inverted.",
                             where="section 7: pad_mask is True at the padding (PyTorch's key_padding_mask).")])


# -- CrossAttention ---------------------------------------------------------------------------
def _cross_report(sub, rng, ctx_dim=None):
    heads = randint(rng, 1, 4)
    dim = heads * 4
    M = randint(rng, 4, 8)
    lengths = [randint(rng, 1, M) for _ in range(2)] + [M]
    return reduced(sub.probe("probe_cross_attention", dim, ctx_dim or dim + randint(rng, 1, 6), heads, lengths, M,
                     seed_from(rng)))


@exercise("CrossAttention", weight=2.0)
def test_cross_attention_padding_random(sub, rng):
    """padded text tokens get no weight: the output equals attending to the real tokens only"""
    judge_padding_ignored(_cross_report(sub, rng), "CrossAttention")


@exercise("CrossAttention")
def test_cross_attention_keys_from_text(sub, rng):
    """image tokens do not attend to each other; the text's content matters, not its order"""
    heads = randint(rng, 1, 3)
    report = reduced(sub.probe("probe_cross_attention", 8 * heads, 8 * heads, heads, [4, 6], 6, seed_from(rng)))
    judge_no_error(report, "CrossAttention", CROSS_SHAPES_HINT)
    expect(report["other_tokens_change"] < 1e-6,
           f"changing one image token changed the other image tokens' outputs (by {report['other_tokens_change']:.2g}): "
           "they attend to each other.",
           *hint("the keys and values must come from the text tokens, only the queries from the image tokens.",
                 where="section 8's equation: Q, K and V, and which input each is made from."))
    expect(report["ctx_change"] > 1e-3, "changing a real text token did not change the output: the text is ignored.",
           *hint("keys and values are linear maps of the text tokens.", where="section 8's equation: K and V."))
    expect_close_or(report["out_perm"], report["out"], "CrossAttention with the real text tokens reordered",
                    fallback="attention treats the keys as a set: reordering them must not change the output.",
                    where="section 8's equation: nothing in it depends on the order of the text tokens.",
                    atol=1e-5, rtol=1e-4)


@exercise("CrossAttention")
def test_cross_attention_weights_over_keys_random(sub, rng):
    """each query's weights sum to 1 over the keys: M copies of one text token act as that one token"""
    judge_weights_over_keys(_cross_report(sub, rng), "CrossAttention")


# -- JointAttention ---------------------------------------------------------------------------
@exercise("JointAttention", weight=2.0)
def test_joint_attention_oracle_random(sub, rng):
    """JointAttention equals one attention over [image; text] with padding, from its own weights"""
    heads = randint(rng, 1, 4)
    dim = heads * 4 * randint(rng, 1, 3)
    N, M = randint(rng, 3, 8), randint(rng, 2, 6)
    lengths = [randint(rng, 1, M + 1) for _ in range(2)] + [1]
    report = sub.probe("probe_joint_attention", dim, heads, N, lengths, M, seed_from(rng))
    judge_joint(report, heads, f"JointAttention({dim}, {heads})")


@exercise("JointAttention")
def test_joint_attention_softmax_over_keys(sub, rng):
    """JointAttention without padding: one softmax over the keys of [image; text]"""
    heads = randint(rng, 1, 4)
    dim = heads * 4 * randint(rng, 1, 3)
    N, M = randint(rng, 3, 8), randint(rng, 2, 6)
    judge_joint(sub.probe("probe_joint_attention", dim, heads, N, [M, M], M, seed_from(rng)), heads,
                f"JointAttention({dim}, {heads}) without padding")

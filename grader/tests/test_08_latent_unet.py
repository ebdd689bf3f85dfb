"""Hidden tests of notebook 08 (latent UNet). Inputs and seeds are drawn at grading time from ``rng``.

Functions are compared with the course library (the reference); the learner's network classes are
judged through the probes of the public module, by their behaviour.
"""
from __future__ import annotations

import math

import torch

from course.autoencoder import kl_to_standard_normal, reparameterize, vae_loss
from course.embedding import timestep_embedding
from grader.engine.api import Hint, expect, expect_close, expect_scalar, exercise
from grader.public.nb08_latent_unet import (judge_attention_keys, judge_attention_params, judge_attention_reach,
                                            judge_compression, judge_losses_decrease,
                                            judge_resblock_behaviour, judge_shapes, judge_unet_conditioning,
                                            judge_unet_rank)


def seed_from(rng) -> int:
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=rng))


# -- timestep_embedding -----------------------------------------------------------------------
def _embedding_mistakes(t, dim, max_period):
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32)
    args = t.float()[:, None] * torch.exp(-math.log(max_period) * i / half)[None]  # (B, half)
    args_by_dim = t.float()[:, None] * torch.exp(-math.log(max_period) * i / dim)[None]
    args_rising = t.float()[:, None] * torch.exp(math.log(max_period) * i / half)[None]
    interleaved = torch.stack([torch.cos(args), torch.sin(args)], dim=-1).reshape(len(t), dim)
    return [
        Hint(torch.cat([torch.sin(args), torch.cos(args)], -1),
             "the sin and cos halves are swapped: the spec puts [cos, sin]."),
        Hint(interleaved, "you interleaved cos and sin (cos, sin, cos, sin...): concatenate the cos half, "
                          "then the sin half."),
        Hint(torch.cat([torch.cos(args_by_dim), torch.sin(args_by_dim)], -1),
             "the frequencies are exp(-log(max_period) i / half) with half = dim // 2, not i / dim."),
        Hint(torch.cat([torch.cos(args_rising), torch.sin(args_rising)], -1),
             "the frequencies must decrease from 1 to 1/max_period: exp(-log(max_period) i / half) (minus sign)."),
    ]


@exercise("timestep_embedding")
def test_timestep_embedding_random_steps(sub, rng):
    """timestep_embedding of random integer steps"""
    t = torch.randint(0, 1000, (16,), generator=rng)
    dim = int(torch.randint(4, 33, (1,), generator=rng)) * 2
    expected = timestep_embedding(t, dim)
    got = sub.call("timestep_embedding", t, dim)
    expect_close(got, expected, f"timestep_embedding(t, dim={dim})", rtol=1e-4, atol=1e-4,
                 hints=_embedding_mistakes(t, dim, 10000))


@exercise("timestep_embedding")
def test_timestep_embedding_float_times(sub, rng):
    """timestep_embedding of float times with another max_period"""
    t = torch.rand(8, generator=rng) * 50
    expected = timestep_embedding(t, 16, max_period=100)
    got = sub.call("timestep_embedding", t, 16, max_period=100)
    expect_close(got, expected, "timestep_embedding(t, dim=16, max_period=100)", rtol=1e-4, atol=1e-4,
                 hints=_embedding_mistakes(t, 16, 100)
                 + [Hint(timestep_embedding(t, 16), "use the max_period argument instead of 10000.")])


# -- ResBlock ----------------------------------------------------------------------------------
@exercise("ResBlock")
def test_resblock_shapes_random(sub, rng):
    """ResBlock output shapes for several channel settings and resolutions"""
    configs = []
    for _ in range(3):
        in_ch, out_ch = (int(v) for v in torch.randint(1, 13, (2,), generator=rng))
        h, w = (int(v) for v in torch.randint(2, 12, (2,), generator=rng))
        configs.append((in_ch, out_ch, 8, 2, h, w))
    configs.append((8, 8, 32, 3, 16, 16))
    got = sub.probe("probe_resblock_shapes", configs, seed_from(rng))
    judge_shapes(got, [[b, o, h, w] for _, o, _, b, h, w in configs],
                 [f"ResBlock({i}, {o}, {e}) on x of shape {(b, i, h, w)}" for i, o, e, b, h, w in configs],
                 "Hint: the 3x3 convolutions must keep H and W (pad by one pixel); the skip path must change the "
                 "channels when in_ch != out_ch; normalisation must work for any channel count (the setup cell's "
                 "group_norm).")


@exercise("ResBlock")
def test_resblock_uses_embedding_and_residual(sub, rng):
    """ResBlock: the embedding changes the output, and the block is residual"""
    judge_resblock_behaviour(sub.probe("probe_resblock_behaviour", 8, 16, seed_from(rng)), "ResBlock(8, 8, 16)")


@exercise("ResBlock")
def test_resblock_trains(sub, rng):
    """ResBlock: a few optimiser steps lower a loss"""
    judge_losses_decrease(sub.probe("probe_train_steps", "ResBlock", 25, seed_from(rng), timeout=60), "ResBlock(3, 6, 8)")


# -- Attention2d ---------------------------------------------------------------------------------
@exercise("Attention2d")
def test_attention_shapes_random(sub, rng):
    """Attention2d output shapes for several channel settings, heads and resolutions"""
    configs = [(8, 1, 2, 8, 8), (12, 3, 1, 4, 6), (4, 4, 3, 2, 2), (16, 2, 2, 5, 3)]
    got = sub.probe("probe_attention_shapes", configs, seed_from(rng))
    judge_shapes(got, [[b, c, h, w] for c, _, b, h, w in configs],
                 [f"Attention2d({c}, heads={n}) on x of shape {(b, c, h, w)}" for c, n, b, h, w in configs],
                 "Hint: split the channels into heads of ch // heads each, attend over the H*W pixels, and "
                 "reshape back to (B, C, H, W).")


@exercise("Attention2d")
def test_attention_is_global_and_per_image(sub, rng):
    """Attention2d: pixels attend to each other as a set, images do not mix, and the block is residual"""
    report = sub.probe("probe_attention_behaviour", 8, 2, seed_from(rng))
    judge_attention_reach(report, "Attention2d(8, heads=2)")
    # self-attention treats the pixels as a set: permuting them permutes the output
    out = report["out"]
    permuted_out = out.flatten(2)[:, :, report["perm"]].reshape(out.shape)
    gap = float((report["out_of_permuted"] - permuted_out).abs().max())
    expect(gap < 1e-3 * (1 + float(permuted_out.abs().max())),
           f"shuffling the pixels of the input did not shuffle the output the same way (difference {gap:.3g}): "
           "your block treats pixels by their position, like a convolution.",
           *Hint(None, "self-attention lets every pixel attend to all H*W pixels, wherever they are; a convolution "
                       "only sees its neighbours.",
                 where="section 3: queries, keys and values from 1x1 projections, the softmax over all H*W "
                       "pixels").lines())


@exercise("Attention2d")
def test_attention_softmax_over_keys(sub, rng):
    """Attention2d: each query's weights are a distribution over the keys (other channels and heads)"""
    ch, heads = [(8, 2), (12, 3), (8, 1), (16, 4)][int(torch.randint(0, 4, (1,), generator=rng))]
    judge_attention_keys(sub.probe("probe_attention_near_uniform", ch, heads, seed_from(rng)),
                         f"Attention2d({ch}, heads={heads})")


# -- UNet ------------------------------------------------------------------------------------------
@exercise("UNet")
def test_unet_shapes_random(sub, rng):
    """UNet output shapes for several resolutions and channel settings"""
    in_ch = int(torch.randint(1, 5, (1,), generator=rng))
    configs = [(in_ch, 8, (1, 2), 16, None, 2, 8),
               (in_ch, 8, (1, 2, 2), 16, 10, 2, 16),
               (3, 4, (1, 2, 2), 8, 5, 1, 8),
               (4, 8, (1,), 16, None, 2, 4),
               (1, 8, (1, 2), 32, 10, 2, 32)]
    got = sub.probe("probe_unet_shapes", configs, seed_from(rng), timeout=60)
    judge_shapes(got, [[b, c, h, h] for c, *_, b, h in configs],
                 [f"UNet{(c, bc, m, e, n)} on x of shape {(b, c, h, h)}" for c, bc, m, e, n, b, h in configs],
                 "Hint: level i works at resolution H / 2^i with base_ch * ch_mult[i] channels; downsample "
                 "between levels (not after the last one), upsample as many times, and map back to in_ch.")


@exercise("UNet")
def test_unet_conditioning(sub, rng):
    """UNet: the time and the class label change the output; y=None is the null label"""
    judge_unet_conditioning(sub.probe("probe_unet_conditioning", seed_from(rng)))


@exercise("UNet")
def test_unet_skips_carry_information(sub, rng):
    """UNet: the skip connections carry full-resolution information"""
    judge_unet_rank(sub.probe("probe_unet_jacobian_batched", seed_from(rng), timeout=60))  # (64, 64)


@exercise("UNet")
def test_unet_trains(sub, rng):
    """UNet: a few optimiser steps on a tiny batch lower the loss"""
    judge_losses_decrease(sub.probe("probe_train_steps", "UNet", 12, seed_from(rng), timeout=60), "UNet(1, 8, (1, 2), 16, 10)")


# -- reparameterize ------------------------------------------------------------------------------
@exercise("reparameterize")
def test_reparameterize_random(sub, rng):
    """reparameterize on random means, log-variances and noise"""
    mu = torch.randn(8, 2, 4, 4, generator=rng)
    logvar = torch.randn(8, 2, 4, 4, generator=rng)
    eps = torch.randn(8, 2, 4, 4, generator=rng)
    got = sub.call("reparameterize", mu, logvar, eps)
    expect_close(got, reparameterize(mu, logvar, eps), "reparameterize(mu, logvar, eps)", hints=[
        Hint(mu + logvar * eps, "logvar is the log-variance, not the standard deviation: std = exp(logvar / 2)."),
        Hint(mu + logvar.exp() * eps, "exp(logvar) is the variance; the standard deviation is exp(logvar / 2)."),
        Hint(torch.exp(0.5 * logvar) * eps, "add the mean: z = mu + std * eps."),
        Hint(mu + torch.exp(-0.5 * logvar) * eps, "std = exp(+logvar / 2), not exp(-logvar / 2)."),
    ])


# -- vae_loss --------------------------------------------------------------------------------------
def _vae_inputs(rng):
    x = torch.rand(6, 1, 8, 8, generator=rng) * 2 - 1
    x_rec = x + 0.3 * torch.randn(6, 1, 8, 8, generator=rng)
    mu = torch.randn(6, 2, 2, 2, generator=rng)
    logvar = torch.randn(6, 2, 2, 2, generator=rng) * 0.5
    return x, x_rec, mu, logvar


@exercise("vae_loss")
def test_vae_loss_random(sub, rng):
    """vae_loss on a random batch with beta = 0.5"""
    x, x_rec, mu, logvar = _vae_inputs(rng)
    beta = 0.5
    rec = ((x - x_rec) ** 2).flatten(1).sum(1)
    kl = kl_to_standard_normal(mu, logvar)
    got = sub.call("vae_loss", x, x_rec, mu, logvar, beta)
    expect_scalar(got, float(vae_loss(x, x_rec, mu, logvar, beta)), "vae_loss(x, x_rec, mu, logvar, beta=0.5)",
                  rtol=1e-4, hints=[
                      Hint(float((rec - beta * kl).mean()),
                           "the KL term has the wrong sign: KL = -1/2 sum(1 + logvar - mu^2 - exp(logvar)) is >= 0 "
                           "and is added to the reconstruction error."),
                      Hint(float(rec.mean() + beta * kl.sum()),
                           "the KL is summed over the batch: sum it over the latent dimensions per sample, then "
                           "take the mean over the batch, like the reconstruction term."),
                      Hint(float(((x - x_rec) ** 2).mean() + beta * kl.mean()),
                           "the reconstruction error is a mean over all elements (F.mse_loss): sum the squared "
                           "errors over each sample's pixels, then average over the batch."),
                      Hint(float((beta * rec + kl).mean()), "beta weighs the KL term, not the reconstruction."),
                      Hint(float((rec + beta * 2 * kl).mean()), "the KL has a factor 1/2 in front: "
                                                                 "-1/2 sum(1 + logvar - mu^2 - exp(logvar))."),
                      Hint(float((rec.sum() + beta * kl.sum())), "average the per-sample losses over the batch "
                                                                  "instead of summing them."),
                  ])


@exercise("vae_loss")
def test_vae_loss_kl_only(sub, rng):
    """vae_loss with a perfect reconstruction is beta times the mean KL"""
    x, _, mu, logvar = _vae_inputs(rng)
    beta = float(torch.rand(1, generator=rng)) + 0.5
    kl = kl_to_standard_normal(mu, logvar)
    got = sub.call("vae_loss", x, x.clone(), mu, logvar, beta)
    expect_scalar(got, beta * float(kl.mean()), f"vae_loss(x, x, mu, logvar, beta={beta:.3f})", rtol=1e-4, hints=[
        Hint(-beta * float(kl.mean()), "the KL term has the wrong sign."),
        Hint(beta * float(kl.sum()), "the KL is summed over the batch: take the mean over samples."),
    ])


# -- latent_scale ----------------------------------------------------------------------------------
@exercise("latent_scale")
def test_latent_scale_random(sub, rng):
    """latent_scale of random latents with a non-zero mean"""
    std = float(torch.rand(1, generator=rng)) * 3 + 0.5
    z = (torch.randn(32, 4, 8, 8, generator=rng) + torch.randn(1, 4, 1, 1, generator=rng)) * std + 1.5
    expected = float(1 / z.std())
    got = sub.call("latent_scale", z)
    expect_scalar(got, expected, "latent_scale(latents)", rtol=1e-3, hints=[
        Hint(float(z.std()), "return 1 / std, the factor that brings the latents to unit variance, not std."),
        Hint(float(1 / z.var()), "that is 1 / variance: take 1 / std."),
        Hint(float(1 / z.pow(2).mean().sqrt()),
             "that is 1 / root-mean-square: the standard deviation subtracts the mean first (z.std())."),
    ])
    expect(not isinstance(got, torch.Tensor) or got.numel() == 1, "latent_scale should return one number.")


# -- questions -------------------------------------------------------------------------------------
@exercise("derive_attention_params", weight=0.5)
def test_derive_attention_params_random(sub, rng):
    """derive_attention_params for other channel counts and heads"""
    for _ in range(3):
        heads = int(torch.tensor([1, 2, 4])[torch.randint(0, 3, (1,), generator=rng)])
        ch = heads * int(torch.randint(3, 33, (1,), generator=rng))
        judge_attention_params(sub.call("derive_attention_params", ch, heads), ch, heads)


@exercise("predict_compression", weight=0.5)
def test_predict_compression_hidden(sub, rng):
    """predict_compression: numbers in a 16x16 digit / numbers in its latent"""
    judge_compression(sub.call("predict_compression"))

"""Hidden tests of notebook 12 (editing, control and personalisation). Inputs and seeds are drawn at
grading time from ``rng``.

Functions are compared with the course library (the reference) on small seeded models, with hints
computed from the mistakes learners make; classes are judged by their behaviour through the probes
of the public module: an untrained ControlNet adapter and a fresh LoRA leave the base's output
unchanged, LoRA's merge is W + (alpha / rank) B A, the prior term vanishes at weight zero, SDEdit
at t0 = 0 returns the guide.
"""
from __future__ import annotations

import torch
from torch import nn

from course import editing, in_context, personalize
from course.ddim import ddim_sample, ddim_timesteps, ddim_walk
from course.schedules import make_alpha_bar
from course.guidance import guided_eps_model
from grader.engine.api import Hint, Ref, build, expect, expect_close, expect_scalar, exercise
from grader.public.nb12_control_editing import (judge_adapter_training, judge_adapter_untrained,
                                                     judge_inject, judge_lora, judge_lora_count,
                                                     judge_zeroconv, random_eps_model,
                                                     random_velocity_model, seeded_linear, small_unet,
                                                     zeroconv_fresh_hint)


def seed_from(rng) -> int:
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=rng))


# -- sdedit ------------------------------------------------------------------------------------
def _sdedit_from(model, x_guide, t_start, timesteps, alpha_bar, noise, mean_coef=None, std_coef=None):
    """SDEdit started at an explicit step (for the hints)."""
    ab = alpha_bar[t_start]
    a = ab.sqrt() if mean_coef is None else mean_coef
    s = (1 - ab).sqrt() if std_coef is None else std_coef
    xt = a * x_guide + s * noise
    path = [t_start] + [int(t) for t in timesteps if int(t) < t_start] + [-1]
    return ddim_walk(model, xt, path, alpha_bar)


@exercise("sdedit")
def test_sdedit_matches_reference(sub, rng):
    """sdedit from a random t0 on a small model"""
    T = 200
    seed = seed_from(rng)
    t0 = float(torch.empty(1).uniform_(0.25, 0.9, generator=rng))
    x_guide, noise = torch.randn(6, 1, 4, 4, generator=rng), torch.randn(6, 1, 4, 4, generator=rng)
    ab, ts = make_alpha_bar(T), ddim_timesteps(T, 12)
    args = dict(alpha_bar=ab, timesteps=ts, noise=noise)
    model = build(Ref(random_eps_model, seed))
    expected = editing.sdedit(model, x_guide, t0, args)
    t_s = int(round(t0 * T)) - 1
    hints = [
        Hint(lambda: _sdedit_from(model, x_guide, T - 1, ts, ab, noise),
             "you started from step T - 1 whatever t0: SDEdit starts at step round(t0 T) - 1 and walks only the "
             "sampler's steps below it."),
        Hint(lambda: _sdedit_from(model, x_guide, t_s, ts, ab, noise, mean_coef=torch.tensor(1.0)),
             "the guide is scaled by sqrt(alpha_bar) when it is noised: x_t = sqrt(ab) x_guide + sqrt(1 - ab) noise."),
        Hint(lambda: _sdedit_from(model, x_guide, t_s, ts, ab, noise, std_coef=1 - ab[t_s]),
             "the noise is scaled by sqrt(1 - alpha_bar), not (1 - alpha_bar)."),
        Hint(lambda: ab[t_s].sqrt() * x_guide + (1 - ab[t_s]).sqrt() * noise,
             "you returned the noised guide: after noising, denoise it with DDIM steps down to the data."),
        Hint(lambda: _sdedit_from(model, x_guide, int(t0 * (T - 1)), ts, ab, noise),
             "the start step is round(t0 T) - 1 (so that t0 = 0 is the clean guide, -1), not int(t0 (T - 1))."),
        Hint(lambda: _sdedit_from(model, x_guide, int(round(t0 * (T - 1))), ts, ab, noise),
             "the start step is round(t0 T) - 1 (so that t0 = 0 is the clean guide, -1), not round(t0 (T - 1))."),
    ]
    got = sub.call("sdedit", Ref(random_eps_model, seed), x_guide, t0, args)
    expect_close(got, expected, f"sdedit(model, x_guide, t0 = {t0:.3f}, ...)", rtol=1e-4, atol=1e-4, hints=hints)


@exercise("sdedit")
def test_sdedit_at_zero_is_the_guide_and_at_one_a_sample(sub, rng):
    """sdedit at t0 = 0 returns the guide; at t0 = 1 it is the sampler from noise"""
    T = 150
    seed = seed_from(rng)
    x_guide, noise = torch.randn(5, 1, 4, 4, generator=rng), torch.randn(5, 1, 4, 4, generator=rng)
    ab, ts = make_alpha_bar(T), ddim_timesteps(T, 10)
    args = dict(alpha_bar=ab, timesteps=ts, noise=noise)
    got0 = sub.call("sdedit", Ref(random_eps_model, seed), x_guide, 0.0, args)
    expect_close(got0, x_guide, "sdedit(..., t0 = 0, ...)", atol=1e-6, hints=[
        Hint(ab[0].sqrt() * x_guide + (1 - ab[0]).sqrt() * noise,
             "at t0 = 0 the guide is not noised at all: the start step is round(0 T) - 1 = -1.")])
    model = build(Ref(random_eps_model, seed))
    x_T = ab[T - 1].sqrt() * x_guide + (1 - ab[T - 1]).sqrt() * noise
    got1 = sub.call("sdedit", Ref(random_eps_model, seed), x_guide, 1.0, args)
    expect_close(got1, ddim_sample(model, x_T, ts, ab), "sdedit(..., t0 = 1, ...) (the whole sampler)",
                 rtol=1e-4, atol=1e-4)


# -- invert_then_edit ----------------------------------------------------------------------------
def _invert_variants(model, x, y_src, y_tgt, w_inv, w_edit, ts, ab):
    steps = [int(t) for t in ts]
    up = [-1] + steps[::-1]

    def regenerate(z, y=y_tgt, w=w_edit):
        return ddim_walk(guided_eps_model(model, y, w), z, steps + [-1], ab)

    def invert_at_current(eps_model):  # eps evaluated at the less noisy end of each inversion step
        from course.ddim import ddim_step
        z = x
        with torch.no_grad():
            for t_from, t_to in zip(up[:-1], up[1:]):
                t_model = torch.full((z.shape[0],), max(t_from, 0), dtype=torch.long)
                z = ddim_step(eps_model(z, t_model), z, t_from, t_to, ab, 0.0, None)
        return z

    def invert_downwards():  # the inversion loop walked along the descending path
        from course.ddim import ddim_step
        z, down = x, steps + [-1]
        eps_model = guided_eps_model(model, y_src, w_inv)
        with torch.no_grad():
            for t_from, t_to in zip(down[:-1], down[1:]):
                z = ddim_step(eps_model(z, torch.full((z.shape[0],), t_to, dtype=torch.long)), z, t_from, t_to,
                              ab, 0.0, None)
        return z

    wrong_direction = ("the inversion runs in the wrong direction: it must go up from the data (t = -1) through the "
                       "steps in increasing order to timesteps[0], then the edit comes back down.")
    return [
        Hint(lambda: regenerate(invert_downwards()), wrong_direction),
        Hint(lambda: regenerate(ddim_walk(guided_eps_model(model, y_src, 0.0), x, up, ab)),
             "the inversion ignores w_invert: invert with the guided eps of the source label, cfg_combine(model(x, "
             "t, y_src), model(x, t), w_invert)."),
        Hint(lambda: regenerate(ddim_walk(guided_eps_model(model, y_tgt, w_inv), x, up, ab)),
             "you inverted under the target label: inversion uses y_src (what the image is), regeneration y_tgt."),
        Hint(lambda: regenerate(ddim_walk(guided_eps_model(model, y_src, w_inv), x, steps + [-1], ab)), wrong_direction),
        Hint(lambda: regenerate(ddim_walk(guided_eps_model(model, y_src, w_edit), x, up, ab), w=w_inv),
             "the two guidance weights are swapped: w_invert for the inversion, w_edit for the regeneration."),
        Hint(lambda: regenerate(invert_at_current(guided_eps_model(model, y_src, w_inv))),
             "on each inversion step, evaluate the model at the step you are going to (the noisier one), as "
             "course.ddim.ddim_invert does: the model cannot be asked about t = -1."),
        Hint(lambda: ddim_walk(guided_eps_model(model, y_src, w_inv), x, up, ab),
             "you returned the inverted noise: regenerate from it under y_tgt with w_edit."),
    ]


@exercise("invert_then_edit", weight=2.0)
def test_invert_then_edit_matches_reference(sub, rng):
    """invert_then_edit with random labels and guidance weights"""
    T = 200
    seed = seed_from(rng)
    x = torch.randn(6, 1, 4, 4, generator=rng)
    y_src, y_tgt = torch.randint(0, 4, (6,), generator=rng), torch.randint(0, 4, (6,), generator=rng)
    w_inv, w_edit = float(torch.randint(1, 4, (1,), generator=rng)) / 2, float(torch.randint(2, 7, (1,), generator=rng)) / 2
    ab, ts = make_alpha_bar(T), ddim_timesteps(T, 10)
    model = build(Ref(random_eps_model, seed))
    expected = editing.invert_then_edit(model, x, y_src, y_tgt, w_inv, w_edit, ts, ab)
    got = sub.call("invert_then_edit", Ref(random_eps_model, seed), x, y_src, y_tgt, w_inv, w_edit, ts, ab)
    expect_close(got, expected, f"invert_then_edit(..., w_invert={w_inv:g}, w_edit={w_edit:g}, ...)", rtol=1e-3,
                 atol=1e-4, hints=_invert_variants(model, x, y_src, y_tgt, w_inv, w_edit, ts, ab))


@exercise("invert_then_edit")
def test_invert_then_edit_partial_path_reconstructs(sub, rng):
    """invert_then_edit on a path that stops half way, same label and w = 0: close to the input"""
    T = 200
    seed = seed_from(rng)
    x = torch.randn(5, 1, 4, 4, generator=rng)
    y = torch.randint(0, 4, (5,), generator=rng)
    ab = make_alpha_bar(T)
    ts = torch.arange(90, -1, -3)  # 90, 87, ..., 0: a fine path half way up
    model = build(Ref(random_eps_model, seed))
    expected = editing.invert_then_edit(model, x, y, y, 0.0, 0.0, ts, ab)
    got = sub.call("invert_then_edit", Ref(random_eps_model, seed), x, y, y, 0.0, 0.0, ts, ab)
    expect_close(got, expected, "invert_then_edit(x, y, y, w_invert=0, w_edit=0, steps 90, 87, ..., 0)",
                 rtol=1e-3, atol=1e-4, hints=_invert_variants(model, x, y, y, 0.0, 0.0, ts, ab))


# -- ZeroConv ------------------------------------------------------------------------------------
@exercise("ZeroConv")
def test_zeroconv_random_sizes(sub, rng):
    """ZeroConv of random sizes: zero when new, trainable, a 1x1 convolution with bias"""
    ch_in, ch_out = (int(v) for v in torch.randint(1, 9, (2,), generator=rng))
    x = torch.randn(3, ch_in, 5, 6, generator=rng)
    weight, bias = torch.randn(ch_out, ch_in, 1, 1, generator=rng), torch.randn(ch_out, generator=rng)
    r = sub.probe("probe_zeroconv", ch_in, ch_out, x, weight, bias)
    zeroconv_fresh_hint(r)
    judge_zeroconv(r, ch_in, ch_out, x, weight, bias)


# -- ControlAdapter --------------------------------------------------------------------------------
@exercise("ControlAdapter", weight=2.0, timeout=60)
def test_control_adapter_behaviour(sub, rng):
    """ControlAdapter: the untrained adapter is the base; the base stays frozen; the condition reaches the output"""
    r = sub.probe("probe_control_adapter", seed_from(rng), int(torch.randint(1, 5, (1,), generator=rng)), timeout=60)
    judge_adapter_untrained(r)
    judge_adapter_training(r)


# -- LoRALinear ------------------------------------------------------------------------------------
@exercise("LoRALinear", weight=2.0)
def test_lora_random_sizes(sub, rng):
    """LoRALinear of random sizes: fresh equals the base, output and merge with A and B set"""
    d_in, d_out = (int(v) for v in torch.randint(3, 17, (2,), generator=rng))
    rank = int(torch.randint(1, 5, (1,), generator=rng))
    alpha = float(torch.randint(1, 17, (1,), generator=rng))
    seed = seed_from(rng)
    x, A, B = torch.randn(7, d_in, generator=rng), torch.randn(rank, d_in, generator=rng), torch.randn(d_out, rank, generator=rng)
    r = sub.probe("probe_lora", seed, d_in, d_out, rank, alpha, x, A, B)
    base = seeded_linear(seed, d_in, d_out)
    judge_lora(r, base.weight.detach(), base.bias.detach(), x, A, B, rank, alpha)


# -- inject_lora -----------------------------------------------------------------------------------
@exercise("inject_lora")
def test_inject_lora_by_name(sub, rng):
    """inject_lora on a UNet: the named linear layers only, everything else frozen"""
    seed = seed_from(rng)
    rank = int(torch.randint(1, 4, (1,), generator=rng))
    names = [["emb_proj"], ["time_mlp.0", "time_mlp.2"], ["time_mlp.2", "mid1.emb_proj"]][int(torch.randint(0, 3, (1,), generator=rng))]
    net = small_unet(seed)
    expected = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)
                and any(n == k or n.endswith("." + k) for k in names)]
    n_train = sum(rank * (m.in_features + m.out_features) for n, m in net.named_modules() if n in expected)
    r = sub.probe("probe_inject_lora", seed, rank, 2.0, names)
    judge_inject(r, expected, n_train)


# -- dreambooth_loss -------------------------------------------------------------------------------
def _dreambooth_variants(model, x_inst, c_inst, x_prior, c_prior, lam, noise, t):
    x, c = torch.cat([x_inst, x_prior]), torch.cat([c_inst, c_prior])
    tt = t.reshape(-1, 1, 1, 1)

    def parts(xt, target):
        err = (model(xt, t, c) - target) ** 2
        n = x_inst.shape[0]
        return err[:n].mean(), err[n:].mean(), err.mean()

    xt = (1 - tt) * noise + tt * x
    inst, prior, whole = parts(xt, x - noise)
    inst_r, prior_r, _ = parts(xt, noise - x)
    inst_s, prior_s, _ = parts(tt * noise + (1 - tt) * x, x - noise)
    return [
        Hint(inst - lam * prior, "the prior-preservation term is subtracted: DreamBooth adds it, "
                                 "L = L_instance + prior_weight L_prior."),
        Hint(lam * inst + prior, "prior_weight multiplies the prior term, not the instance term."),
        Hint(whole, "you averaged one loss over the whole batch: the instance and prior terms are separate means, "
                    "and only the prior one is weighted."),
        Hint(inst + prior, "the prior term is multiplied by prior_weight."),
        Hint(inst_r + lam * prior_r, "the target velocity is x - noise (data minus noise, t = 1 is the data), "
                                     "not noise - x."),
        Hint(inst_s + lam * prior_s, "the path is x_t = (1 - t) noise + t x: t = 0 is noise, t = 1 the data."),
    ]


@exercise("dreambooth_loss", weight=2.0)
def test_dreambooth_loss_matches_reference(sub, rng):
    """dreambooth_loss on a random batch with a random prior weight"""
    seed = seed_from(rng)
    n_i, n_p = int(torch.randint(2, 5, (1,), generator=rng)), int(torch.randint(3, 9, (1,), generator=rng))
    x_inst, x_prior = torch.randn(n_i, 1, 4, 4, generator=rng), torch.randn(n_p, 1, 4, 4, generator=rng)
    c_inst, c_prior = torch.full((n_i,), 4), torch.randint(0, 4, (n_p,), generator=rng)
    noise, t = torch.randn(n_i + n_p, 1, 4, 4, generator=rng), torch.rand(n_i + n_p, generator=rng)
    lam = float(torch.empty(1).uniform_(0.3, 2.0, generator=rng))
    model = build(Ref(random_velocity_model, seed, n_classes=5))
    with torch.no_grad():
        expected = personalize.dreambooth_loss(model, x_inst, c_inst, x_prior, c_prior, lam, noise, t)
        hints = _dreambooth_variants(model, x_inst, c_inst, x_prior, c_prior, lam, noise, t)
    got = sub.call("dreambooth_loss", Ref(random_velocity_model, seed, n_classes=5), x_inst, c_inst, x_prior, c_prior,
                   lam, noise, t)
    expect_scalar(got, float(expected), f"dreambooth_loss(..., prior_weight={lam:.3f}, ...)", rtol=1e-4, atol=1e-6,
                  hints=hints)


@exercise("dreambooth_loss")
def test_dreambooth_prior_term_vanishes_at_weight_zero(sub, rng):
    """dreambooth_loss with prior_weight = 0 is the instance loss alone"""
    seed = seed_from(rng)
    x_inst, x_prior = torch.randn(3, 1, 4, 4, generator=rng), torch.randn(4, 1, 4, 4, generator=rng)
    c_inst, c_prior = torch.full((3,), 4), torch.randint(0, 4, (4,), generator=rng)
    noise, t = torch.randn(7, 1, 4, 4, generator=rng), torch.rand(7, generator=rng)
    model = build(Ref(random_velocity_model, seed, n_classes=5))
    with torch.no_grad():
        tt = t[:3].reshape(-1, 1, 1, 1)
        inst = ((model((1 - tt) * noise[:3] + tt * x_inst, t[:3], c_inst) - (x_inst - noise[:3])) ** 2).mean()
    got = sub.call("dreambooth_loss", Ref(random_velocity_model, seed, n_classes=5), x_inst, c_inst, x_prior, c_prior,
                   0.0, noise, t)
    expect_scalar(got, float(inst), "dreambooth_loss(..., prior_weight=0, ...) (the instance loss alone)",
                  rtol=1e-4, atol=1e-6, hints=_dreambooth_variants(model, x_inst, c_inst, x_prior, c_prior, 0.0, noise, t))


# -- in_context_tokens ----------------------------------------------------------------------------
@exercise("in_context_tokens")
def test_in_context_tokens_random(sub, rng):
    """in_context_tokens with random sequence lengths"""
    L_t, L_c = int(torch.randint(1, 9, (1,), generator=rng)), int(torch.randint(1, 9, (1,), generator=rng))
    target, context = torch.randn(3, L_t, 5, generator=rng), torch.randn(3, L_c, 5, generator=rng)
    tokens, positions = in_context.in_context_tokens(target, context)
    got = sub.call("in_context_tokens", target, context)
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           "in_context_tokens should return a pair (tokens, positions).", "Hint: return tokens, positions")
    expect_close(got[0], tokens, "the tokens", atol=0, hints=[
        Hint(torch.cat([context, target], 1), "the target tokens come first, then the context tokens.")])
    frame = positions[:, 0]
    expect_close(got[1], positions, "the positions (frame, index)", atol=0, hints=[
        Hint(torch.stack([torch.zeros_like(frame), positions[:, 1]], 1),
             "the context tokens need the frame offset: frame 1 for the context, 0 for the target."),
        Hint(torch.stack([frame, torch.arange(L_t + L_c)], 1),
             "the index restarts at 0 for the context image: both images share the same grid positions, only the "
             "frame differs."),
        Hint(torch.stack([1 - frame, positions[:, 1]], 1), "the frames are swapped: the target is frame 0, the "
                                                           "context frame 1."),
    ])


# -- questions --------------------------------------------------------------------------------


@exercise("derive_lora_params", weight=0.5)
def test_derive_lora_params_random(sub, rng):
    """LoRA's trainable parameter count for random layer sizes and ranks"""
    sizes = [tuple(int(v) for v in (torch.randint(3, 300, (1,), generator=rng), torch.randint(3, 300, (1,), generator=rng),
                                    torch.randint(1, 9, (1,), generator=rng))) for _ in range(3)]
    judge_lora_count(sub, sizes)

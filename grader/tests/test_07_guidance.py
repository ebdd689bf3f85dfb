"""Hidden tests of notebook 07 (guidance). Inputs are drawn at grading time from ``rng``; expected
answers come from closed forms (an exact class-conditional mixture) and the course library."""
from __future__ import annotations

import math

import torch

from course import guidance
from course.ddim import ddim_sample, ddim_timesteps
from course.schedules import make_alpha_bar
from grader.engine.api import Hint, Mismatch, Ref, build, exercise, expect, expect_close, expect_tensor
from grader.public.nb07_guidance import (cfg_mistakes, classifier_mistakes, generator,
                                         oracle_eps_model, random_image_eps_model, ring_mixture, sample_mistakes)


def _noised_pair(rng, n=64, T=1000):
    """Points x_t of a labelled ring mixture at random steps, with (mean_coef, std) and labels."""
    mix = ring_mixture()
    alpha_bar = make_alpha_bar(T)
    t = torch.randint(0, T, (n,), generator=rng)
    x0, y = mix.sample(n, rng)
    ab = alpha_bar[t]
    xt = ab.sqrt()[:, None] * x0 + (1 - ab).sqrt()[:, None] * torch.randn(n, 2, generator=rng)
    return mix, xt, ab.sqrt(), (1 - ab).sqrt(), y


# -- drop_labels ------------------------------------------------------------------------------
@exercise("drop_labels", weight=2.0)
def test_drop_labels_statistics(sub, rng):
    """drop_labels drops a fraction p_uncond of the labels, to null_label, and keeps the rest"""
    n, n_classes = 20000, 10
    y = torch.randint(0, n_classes, (n,), generator=rng)
    p = 0.15 + 0.1 * float(torch.rand(1, generator=rng))
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
    got = expect_tensor(sub.call("drop_labels", y, p, n_classes, generator=Ref(generator, seed)),
                        "drop_labels(y, p_uncond, null_label)", shape=(n,), dtype=None)
    expect(got.dtype == torch.int64, f"drop_labels should return labels as int64 (long), got {got.dtype}.",
           "Hint: keep the labels' integer dtype: build the result from y and null_label without a float step.")
    changed = got != y
    expect(bool((got[changed] == n_classes).all()),
           f"a dropped label must become null_label = {n_classes}; some changed labels became "
           f"{sorted(set(got[changed & (got != n_classes)].tolist()))[:5]}.",
           *(["Hint: a dropped label is null_label, not 0 (0 is a real class)."]
             if bool((got[changed] == 0).all()) else []))
    frac = float((got == n_classes).float().mean())
    se = math.sqrt(p * (1 - p) / n)
    if abs(frac - p) > 5 * se:
        lines = [f"drop_labels(y, p_uncond={p:.3f}) dropped a fraction {frac:.3f} of the labels; "
                 f"expected about {p:.3f} (+/- {5 * se:.3f})."]
        if frac < 5 * se:
            lines.append("Hint: no label was dropped: each label must become null_label with probability p_uncond.")
        elif abs(frac - (1 - p)) < 5 * se:
            lines.append("Hint: you drop with probability 1 - p_uncond (the comparison with the uniform draw "
                         "is reversed).")
        elif frac > 1 - 5 * se:
            lines.append("Hint: every label was dropped: draw one coin per label, not one for the batch.")
        raise Mismatch(lines)


@exercise("drop_labels")
def test_drop_labels_uses_generator_and_keeps_input(sub, rng):
    """drop_labels is reproducible with a seeded generator, and leaves its input unchanged"""
    y = torch.randint(0, 5, (400,), generator=rng)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
    first, second, y_after = sub.probe("probe_drop_labels_reproducible", y, 0.5, 5, seed)
    expect_close(y_after, y, "the labels y after calling drop_labels(y, ...)",
                 hints=[Hint(first, "drop_labels modified its input in place: the training batch's labels must "
                                    "stay intact; return a new tensor.",
                             where="the step that replaces labels by null_label: it writes into y itself")])
    expect(torch.equal(first, second),
           "two calls of drop_labels with equally seeded generators gave different labels.",
           "Hint: the random draws must come from the generator argument, so that a seed reproduces them.")


@exercise("drop_labels")
def test_drop_labels_null_index(sub, rng):
    """drop_labels with p_uncond = 1 and another null label"""
    y = torch.randint(0, 3, (50,), generator=rng)
    got = sub.call("drop_labels", y, 1.0, 3, generator=Ref(generator, 1))
    expect_close(got, torch.full_like(y, 3), "drop_labels(y, p_uncond=1, null_label=3)", hints=[
        Hint(y, "with p_uncond = 1 every label must be dropped: no label was dropped, or you drop with "
                "probability 1 - p_uncond."),
        Hint(torch.zeros_like(y), "a dropped label is null_label, not 0."),
    ])


# -- cfg_combine -------------------------------------------------------------------------------
@exercise("cfg_combine", weight=2.0)
def test_cfg_combine_random(sub, rng):
    """cfg_combine on random eps predictions of images, random w"""
    cond = torch.randn(8, 1, 8, 8, generator=rng)
    uncond = torch.randn(8, 1, 8, 8, generator=rng)
    w = 0.5 + 3.5 * float(torch.rand(1, generator=rng))
    expect_close(sub.call("cfg_combine", cond, uncond, w), (1 + w) * cond - w * uncond,
                 f"cfg_combine(pred_cond, pred_uncond, w={w:.3f})", hints=cfg_mistakes(cond, uncond, w))


@exercise("cfg_combine")
def test_cfg_combine_special_weights(sub, rng):
    """cfg_combine with w = 0 (conditional) and w = -1 (unconditional)"""
    cond, uncond = torch.randn(16, 2, generator=rng), torch.randn(16, 2, generator=rng)
    expect_close(sub.call("cfg_combine", cond, uncond, 0.0), cond, "cfg_combine(pred_cond, pred_uncond, w=0)",
                 hints=[Hint(uncond, "w = 0 must give the plain conditional prediction pred_cond."),
                        Hint(torch.zeros_like(cond), "w = 0 must give pred_cond: the weight of pred_cond is 1 + w.")])
    expect_close(sub.call("cfg_combine", cond, uncond, -1.0), uncond, "cfg_combine(pred_cond, pred_uncond, w=-1)")


@exercise("cfg_combine")
def test_cfg_combine_exact_scores(sub, rng):
    """cfg_combine on exact scores equals the unconditional score plus (1 + w) times grad log p(y | x_t)"""
    mix, xt, a, s, y = _noised_pair(rng)
    _, score_cond = mix.noised_log_prob_and_score(xt, a, s, y)
    _, score_uncond = mix.noised_log_prob_and_score(xt, a, s)
    w = 2.0
    expected = score_uncond + (1 + w) * mix.grad_log_p_y(xt, a, s, y)
    expect_close(sub.call("cfg_combine", score_cond, score_uncond, w), expected,
                 "cfg_combine(score_cond, score_uncond, w=2) on a labelled mixture's exact scores",
                 rtol=1e-3, atol=1e-4, hints=cfg_mistakes(score_cond, score_uncond, w))


# -- guided_sample -------------------------------------------------------------------------------
@exercise("guided_sample", weight=2.0)
def test_guided_sample_oracle(sub, rng):
    """guided_sample with the exact eps of a labelled mixture, 10 DDIM steps"""
    T, n_steps = 1000, 10
    ref = Ref(oracle_eps_model, T)
    model, alpha_bar = build(ref), make_alpha_bar(T)
    x_T = torch.randn(64, 2, generator=rng)
    y = torch.randint(0, 3, (64,), generator=rng)
    w = float(torch.tensor([1.5, 2.5, 4.0])[torch.randint(0, 3, (1,), generator=rng)])
    timesteps = ddim_timesteps(T, n_steps)
    expected = guidance.guided_sample(model, x_T, y, w, timesteps, alpha_bar)
    got = sub.call("guided_sample", ref, x_T, y, w, timesteps, alpha_bar)
    expect_close(got, expected, f"guided_sample(model, x_T, y, w={w}, timesteps, alpha_bar)", rtol=1e-3,
                 atol=1e-3, hints=sample_mistakes(model, x_T, y, w, timesteps, alpha_bar))


@exercise("guided_sample")
def test_guided_sample_images(sub, rng):
    """guided_sample on (B, 1, 4, 4) images with a nonlinear conditional network, cosine schedule"""
    T, n_steps = 200, 8
    ref = Ref(random_image_eps_model, int(torch.randint(0, 10_000, (1,), generator=rng)))
    model, alpha_bar = build(ref), make_alpha_bar(T, "cosine")
    x_T = torch.randn(12, 1, 4, 4, generator=rng)
    y = torch.randint(0, 4, (12,), generator=rng)
    timesteps = ddim_timesteps(T, n_steps)
    expected = guidance.guided_sample(model, x_T, y, 3.0, timesteps, alpha_bar)
    got = sub.call("guided_sample", ref, x_T, y, 3.0, timesteps, alpha_bar)
    expect_close(got, expected, "guided_sample(model, x_T of shape (12, 1, 4, 4), y, w=3, timesteps, alpha_bar)",
                 rtol=1e-3, atol=1e-3, hints=sample_mistakes(model, x_T, y, 3.0, timesteps, alpha_bar))


@exercise("guided_sample")
def test_guided_sample_w0_is_conditional_ddim(sub, rng):
    """guided_sample with w = 0 is plain conditional DDIM"""
    T = 1000
    ref = Ref(oracle_eps_model, T)
    model, alpha_bar = build(ref), make_alpha_bar(T)
    x_T = torch.randn(32, 2, generator=rng)
    y = torch.randint(0, 3, (32,), generator=rng)
    timesteps = ddim_timesteps(T, 12)
    expected = ddim_sample(lambda x, t: model(x, t, y), x_T, timesteps, alpha_bar)
    got = sub.call("guided_sample", ref, x_T, y, 0.0, timesteps, alpha_bar)
    expect_close(got, expected, "guided_sample(model, x_T, y, w=0, timesteps, alpha_bar)", rtol=1e-3, atol=1e-3,
                 hints=[Hint(lambda: ddim_sample(lambda x, t: model(x, t), x_T, timesteps, alpha_bar),
                             "with w = 0 you produced unconditional samples: the conditional prediction "
                             "is model(x, t, y).")])


# -- classifier_guided_score ---------------------------------------------------------------------
@exercise("classifier_guided_score")
def test_classifier_guided_score_random(sub, rng):
    """classifier_guided_score on random scores and gradients"""
    score, grad = torch.randn(32, 2, generator=rng), torch.randn(32, 2, generator=rng)
    scale = 1.5 + 3 * float(torch.rand(1, generator=rng))
    expect_close(sub.call("classifier_guided_score", score, grad, scale), score + scale * grad,
                 f"classifier_guided_score(score, grad_log_p_y, scale={scale:.3f})",
                 hints=classifier_mistakes(score, grad, scale))


@exercise("classifier_guided_score")
def test_classifier_guidance_exact_classifier(sub, rng):
    """with the exact noisy classifier, scale 1 gives the conditional score, scale 1 + w gives CFG"""
    mix, xt, a, s, y = _noised_pair(rng)
    _, score_cond = mix.noised_log_prob_and_score(xt, a, s, y)
    _, score_uncond = mix.noised_log_prob_and_score(xt, a, s)
    grad = mix.grad_log_p_y(xt, a, s, y)
    expect_close(sub.call("classifier_guided_score", score_uncond, grad, 1.0), score_cond,
                 "classifier_guided_score(score, grad log p(y | x_t), scale=1) (Bayes: the conditional score)",
                 rtol=1e-3, atol=1e-4, hints=classifier_mistakes(score_uncond, grad, 1.0))
    expect_close(sub.call("classifier_guided_score", score_uncond, grad, 3.0), 3 * score_cond - 2 * score_uncond,
                 "classifier_guided_score(score, grad log p(y | x_t), scale=3) (CFG with w = 2)",
                 rtol=1e-3, atol=1e-4, hints=classifier_mistakes(score_uncond, grad, 3.0))

"""Notebook 07 (guidance): its manifest, the argument factories, the probes and the public checks.

Factories run inside the sandbox (they build the noise predictors handed to the learner's
``guided_sample``) and in the grader (to compute the expected answers), so both use one definition.
The main oracle is exact: a Gaussian mixture whose components carry class labels
(``course.guidance.ClassConditionalMixture``), whose conditional and unconditional eps are known.
"""
from __future__ import annotations

import torch

from course import guidance
from course.ddim import ddim_timesteps
from course.nets import frozen_time_mlp
from course.schedules import make_alpha_bar
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_choice, expect_close, expect_scalar, generator

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "drop_labels": 2,
    "cfg_combine": 2,
    "guided_sample": 3,
    "classifier_guided_score": 1,
    "predict_guidance_scale": 0.5,
    "predict_exact_model_w": 0.5,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "drop_labels": "course.guidance:drop_labels",
    "cfg_combine": "course.guidance:cfg_combine",
    "guided_sample": "course.guidance:guided_sample",
    "classifier_guided_score": "course.guidance:classifier_guided_score",
}


# ---------------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------------
def ring_mixture(n_classes: int = 3, per_class: int = 2):
    return guidance.ring_of_classes(n_classes, per_class)


def oracle_eps_model(T: int = 1000, kind: str = "linear", n_classes: int = 3, per_class: int = 2):
    """The exact eps of a labelled ring mixture: model(x, t, y=None), y = None or n_classes unconditional."""
    return ring_mixture(n_classes, per_class).eps_model(make_alpha_bar(T, kind))


def random_image_eps_model(seed: int, n_classes: int = 4, side: int = 4):
    """A seeded, untrained conditional TimeMLP on (B, 1, side, side) images: a nonlinear test model."""
    net = frozen_time_mlp(seed, dim=side * side, hidden=32, depth=2, emb_dim=16, n_classes=n_classes)

    def model(x, t, y=None):
        with torch.no_grad():  # (a decorator would share its __code__ with every decorated function)
            return net(x.reshape(x.shape[0], -1), t, y).reshape(x.shape)  # (B, 1, side, side)

    model.n_classes = n_classes
    return model



# ---------------------------------------------------------------------------------------------
# Probes (run next to the learner's code; return plain data)
# ---------------------------------------------------------------------------------------------
def probe_drop_labels_reproducible(ns, y, p_uncond, null_label, seed):
    """Two calls with equally seeded generators, and the input afterwards: (first, second, y_after)."""
    y_in = y.clone()
    first = ns["drop_labels"](y_in, p_uncond, null_label, generator=torch.Generator().manual_seed(seed))
    second = ns["drop_labels"](y.clone(), p_uncond, null_label, generator=torch.Generator().manual_seed(seed))
    return first, second, y_in


# ---------------------------------------------------------------------------------------------
# Reference answers of known mistakes (shared with the hidden tests)
# ---------------------------------------------------------------------------------------------
def cfg_mistakes(cond, uncond, w):
    """What the usual wrong combinations give, each with the hint it deserves."""
    return [
        Hint((1 + w) * uncond - w * cond,
             "the weights are swapped: the conditional prediction gets (1 + w), the unconditional -w."),
        Hint(cond + w * uncond,
             "guidance pushes *away* from the unconditional prediction: (1 + w) pred_cond - w pred_uncond, "
             "not pred_cond + w pred_uncond."),
        Hint(w * cond - (w - 1) * uncond,
             "that is the 'guidance scale' convention (scale 1 = conditional). Here w = 0 is conditional: "
             "(1 + w) pred_cond - w pred_uncond."),
        Hint(cond + w * (uncond - cond),
             "the difference pred_cond - pred_uncond has the wrong sign: guidance moves *towards* the condition."),
    ]


def sample_mistakes(model, x_T, y, w, timesteps, alpha_bar):
    """Samples that known mistakes in guided_sample produce, each with its hint (computed lazily)."""
    from course.ddim import ddim_sample

    def with_eps(eps_fn):
        return lambda: ddim_sample(eps_fn, x_T, timesteps, alpha_bar, eta=0.0)

    cond = lambda x, t: model(x, t, y)  # noqa: E731
    uncond = lambda x, t: model(x, t)  # noqa: E731
    ts = [int(t) for t in timesteps]
    return [
        Hint(with_eps(lambda x, t: (1 + w) * uncond(x, t) - w * cond(x, t)),
             "the guidance weights are swapped: (1 + w) goes with the conditional prediction model(x, t, y)."),
        Hint(with_eps(cond), "your samples ignore w: they are plain conditional DDIM. Combine the "
                             "conditional and unconditional predictions at every step."),
        Hint(with_eps(lambda x, t: cond(x, t) + w * uncond(x, t)),
             "the guided eps is (1 + w) eps_cond - w eps_uncond, not eps_cond + w eps_uncond."),
        Hint(lambda: (1 + w) * ddim_sample(cond, x_T, timesteps, alpha_bar)
             - w * ddim_sample(uncond, x_T, timesteps, alpha_bar),
             "you combined two separately sampled x's; guidance combines the *noise predictions* (eps) "
             "at every step, inside one DDIM loop."),
        Hint(lambda: _stop_before_last(model, x_T, y, w, ts, alpha_bar),
             "your loop stops one step early: after the last timestep (t = 0) take one more DDIM step to "
             "t_prev = -1, where alpha_bar_prev = 1 (the clean x0)."),
    ]


def _stop_before_last(model, x_T, y, w, ts, alpha_bar):
    """DDIM with guidance that never takes the final step from t = ts[-1] to alpha_bar_prev = 1."""
    from course.ddim import ddim_step

    eps_fn = guidance.guided_eps_model(model, y, w)
    x = x_T
    for t, t_prev in zip(ts[:-1], ts[1:]):
        eps = eps_fn(x, torch.full((x.shape[0],), t, dtype=torch.long))
        x = ddim_step(eps, x, t, t_prev, alpha_bar, 0.0, torch.zeros_like(x))
    return x


def classifier_mistakes(score, grad, scale):
    return [
        Hint(scale * (score + grad), "only the classifier gradient is scaled: score + scale * grad_log_p_y."),
        Hint(score + grad, "the classifier gradient must be multiplied by the scale."),
        Hint(score - scale * grad, "guidance climbs log p(y | x): add scale * grad_log_p_y, do not subtract it."),
        Hint(scale * grad, "keep the unconditional score: score + scale * grad_log_p_y."),
    ]


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
Y6 = torch.tensor([0, 3, 1, 2, 3, 0])


@exercise("drop_labels")
def test_drop_labels_extremes(sub, rng):
    """drop_labels with p_uncond = 0 keeps every label; with p_uncond = 1 drops every one"""
    kept = sub.call("drop_labels", Y6, 0.0, 4, generator=Ref(generator, 0))
    expect_close(kept, Y6, "drop_labels(y, p_uncond=0, null_label=4)",
                 hints=[Hint(torch.full_like(Y6, 4), "with p_uncond = 0 no label may be dropped: "
                                                     "you drop with probability 1 - p_uncond.")])
    dropped = sub.call("drop_labels", Y6, 1.0, 4, generator=Ref(generator, 0))
    expect_close(dropped, torch.full_like(Y6, 4), "drop_labels(y, p_uncond=1, null_label=4)",
                 hints=[Hint(Y6, "with p_uncond = 1 every label becomes null_label: you never drop a label, "
                                 "or drop with probability 1 - p_uncond."),
                        Hint(torch.zeros_like(Y6), "a dropped label is null_label, not 0 (0 is a real class).")])


@exercise("drop_labels")
def test_drop_labels_keeps_its_input(sub, rng):
    """drop_labels leaves the labels it is given unchanged, and follows the generator"""
    y = torch.randint(0, 4, (40,), generator=rng)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
    first, second, y_after = sub.probe("probe_drop_labels_reproducible", y, 0.5, 4, seed)
    expect_close(y_after, y, "the labels y after calling drop_labels(y, p_uncond=0.5, null_label=4)",
                 hints=[Hint(first, "drop_labels modified its input in place: the training batch's labels must "
                                    "stay intact; return a new tensor.",
                             where="the step that replaces labels by null_label: it writes into y itself")])
    expect(torch.equal(first, second),
           "two calls of drop_labels with equally seeded generators gave different labels.",
           *Hint(None, "the random draws must come from the generator argument, so that a seed reproduces them.",
                 where="the line that draws one uniform number per label").lines())


@exercise("cfg_combine")
def test_cfg_combine_small(sub, rng):
    """cfg_combine on small tensors, w = 0 and w = 2"""
    cond = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    uncond = torch.tensor([[0.0, 1.0], [1.5, -1.0]])
    expect_close(sub.call("cfg_combine", cond, uncond, 0.0), cond, "cfg_combine(pred_cond, pred_uncond, w=0)",
                 hints=[Hint(uncond, "with w = 0 the result is the conditional prediction.")])
    expect_close(sub.call("cfg_combine", cond, uncond, 2.0), 3 * cond - 2 * uncond,
                 "cfg_combine(pred_cond, pred_uncond, w=2)", hints=cfg_mistakes(cond, uncond, 2.0))


@exercise("guided_sample")
def test_guided_sample_oracle_small(sub, rng):
    """guided_sample with the exact eps of a labelled mixture, 5 DDIM steps, w = 1"""
    T = 100
    model = oracle_eps_model(T)
    alpha_bar = make_alpha_bar(T)
    x_T = torch.tensor([[0.5, -1.0], [1.2, 0.3], [-0.7, -0.2], [0.0, 1.5]])
    y = torch.tensor([0, 1, 2, 0])
    timesteps = ddim_timesteps(T, 5)
    got = sub.call("guided_sample", Ref(oracle_eps_model, T), x_T, y, 1.0, timesteps, alpha_bar)
    expected = guidance.guided_sample(model, x_T, y, 1.0, timesteps, alpha_bar)
    expect_close(got, expected, "guided_sample(model, x_T, y, w=1, timesteps, alpha_bar)", rtol=1e-3, atol=1e-4,
                 hints=sample_mistakes(model, x_T, y, 1.0, timesteps, alpha_bar))


@exercise("classifier_guided_score")
def test_classifier_guided_score_small(sub, rng):
    """classifier_guided_score on small tensors, scale = 3"""
    score = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    grad = torch.tensor([[0.5, 0.5], [-1.0, 2.0]])
    expect_close(sub.call("classifier_guided_score", score, grad, 3.0), score + 3 * grad,
                 "classifier_guided_score(score, grad_log_p_y, scale=3)", hints=classifier_mistakes(score, grad, 3.0))


# -- questions (predict, then run) ---------------------------------------------------------------
def judge_guidance_scale(got) -> None:
    """diffusers' guidance_scale s = 4 is w = s - 1 = 3 here."""
    expect_scalar(got, 3.0, "predict_guidance_scale() (the w for diffusers' guidance_scale = 4)", reveal=False, rtol=1e-6, hints=[
        Hint(4.0, "the two conventions differ: diffusers weighs the difference (eps_c - eps_u) by s, "
                  "cfg_combine weighs eps_c by 1 + w.",
             where="expand eps_u + s (eps_c - eps_u) and match the weight of eps_c with (1 + w)"),
        Hint(5.0, "that is w + 1: solve 1 + w = s for w, not w = s + 1.",
             where="expand eps_u + s (eps_c - eps_u) and match the weight of eps_c with (1 + w)"),
        Hint(0.25, "the scale is not inverted: both conventions are linear in the weight.",
             where="expand eps_u + s (eps_c - eps_u) and match the weight of eps_c with (1 + w)"),
        Hint(-3.0, "the sign: guidance moves towards the condition in both conventions (w > 0 for s > 1).",
             where="expand eps_u + s (eps_c - eps_u) and match the weight of eps_c with (1 + w)"),
    ])


EXACT_MODEL_W_WHY_NOT = {
    "a": "guidance does not improve the fit of an exact model: with w > 0 it samples a different distribution, "
         "roughly p(x | y) p(y | x)^w, pushed away from the other classes.",
    "b": "the guided score is not the score of p(x | y) (it tilts it by p(y | x)^w), so the samples leave "
         "p(x | y) as w grows, even with an exact model.",
    "d": "the drift is not a training error: the exact model's guided samples leave p(x | y) too, because "
         "guidance changes the distribution sampled, not how well it is fitted.",
}


def judge_exact_model_w(got) -> None:
    expect_choice(got, "c", "predict_exact_model_w()", why_not=EXACT_MODEL_W_WHY_NOT,
                  where="section 3: the distribution whose score guidance follows, p(x_t | y) p(y | x_t)^w")


@exercise("predict_guidance_scale", weight=0.5)
def test_predict_guidance_scale(sub, rng):
    """predict_guidance_scale: the w of diffusers' guidance_scale = 4"""
    judge_guidance_scale(sub.call("predict_guidance_scale"))


@exercise("predict_exact_model_w", weight=0.5)
def test_predict_exact_model_w(sub, rng):
    """predict_exact_model_w: the exact model's distance to p(x | y) as w grows"""
    judge_exact_model_w(sub.call("predict_exact_model_w"))

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
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close, generator

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "drop_labels": 2,
    "cfg_combine": 2,
    "guided_sample": 3,
    "classifier_guided_score": 1,
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

"""Notebook 07 end to end: the reference scores full marks, the released stub zero, realistic
wrong answers lose points with the right hint, correct rewrites keep full marks, calling the
library scores zero, and the notebook runs in fast mode."""
from __future__ import annotations

import json

from support import NotebookContract, answer_builder



fn = answer_builder("import torch\n")


DROP = "y, p_uncond, null_label, generator=None"
CFG = "pred_cond, pred_uncond, w"
SAMPLE = "model, x_T, y, w, timesteps, alpha_bar"
CLS = "score, grad_log_p_y, scale"
DDIM_LOOP = """from course.ddim import ddim_step
steps = [int(t) for t in timesteps] + [-1]
x = x_T
for t, t_prev in zip(steps[:-1], steps[1:]):
    tb = torch.full((x.shape[0],), t, dtype=torch.long)
    eps = {eps}
    x = ddim_step(eps, x, t, t_prev, alpha_bar, 0.0, None)
return x"""

# exercise -> three wrong answers: (source, text the feedback must contain)
WRONG = {
    "drop_labels": [
        (fn("drop_labels", DROP, "return y.clone()"), "no label was dropped"),
        (fn("drop_labels", DROP, """drop = torch.rand(y.shape, generator=generator) > p_uncond
return torch.where(drop, torch.full_like(y, null_label), y)"""), "probability 1 - p_uncond"),
        (fn("drop_labels", DROP, """drop = torch.rand(y.shape, generator=generator) < p_uncond
y[drop] = null_label
return y"""), "modified its input in place"),
    ],
    "cfg_combine": [
        (fn("cfg_combine", CFG, "return (1 + w) * pred_uncond - w * pred_cond"), "weights are swapped"),
        (fn("cfg_combine", CFG, "return pred_cond + w * pred_uncond"), "not pred_cond + w pred_uncond"),
        (fn("cfg_combine", CFG, "return pred_uncond + w * (pred_cond - pred_uncond)"), "guidance scale"),
    ],
    "guided_sample": [
        (fn("guided_sample", SAMPLE, DDIM_LOOP.format(eps="(1 + w) * model(x, tb) - w * model(x, tb, y)")),
         "guidance weights are swapped"),
        (fn("guided_sample", SAMPLE, """from course.ddim import ddim_sample
x_cond = ddim_sample(lambda x, t: model(x, t, y), x_T, timesteps, alpha_bar)
x_uncond = ddim_sample(lambda x, t: model(x, t), x_T, timesteps, alpha_bar)
return (1 + w) * x_cond - w * x_uncond"""), "two separately sampled x's"),
        (fn("guided_sample", SAMPLE, """from course.ddim import ddim_step
ts = [int(t) for t in timesteps]
x = x_T
for t, t_prev in zip(ts[:-1], ts[1:]):
    tb = torch.full((x.shape[0],), t, dtype=torch.long)
    eps = (1 + w) * model(x, tb, y) - w * model(x, tb)
    x = ddim_step(eps, x, t, t_prev, alpha_bar, 0.0, None)
return x"""), "stops one step early"),
    ],
    "classifier_guided_score": [
        (fn("classifier_guided_score", CLS, "return scale * (score + grad_log_p_y)"), "only the classifier gradient"),
        (fn("classifier_guided_score", CLS, "return score + grad_log_p_y"), "multiplied by the scale"),
        (fn("classifier_guided_score", CLS, "return score - scale * grad_log_p_y"), "do not subtract"),
    ],
    "predict_guidance_scale": [
        (fn("predict_guidance_scale", "", "return 4.0"), "the two conventions differ"),
        (fn("predict_guidance_scale", "", "return 5.0"), "solve 1 + w = s"),
        (fn("predict_guidance_scale", "", "return 1 / 4"), "not inverted"),
    ],
    "predict_exact_model_w": [
        (fn("predict_exact_model_w", "", 'return "a"'), "does not improve the fit"),
        (fn("predict_exact_model_w", "", 'return "b"'), "not the score of p(x | y)"),
        (fn("predict_exact_model_w", "", 'return "d"'), "not a training error"),
    ],
}

# correct answers written differently from the reference: full marks
REWRITES = {
    "drop_labels": fn("drop_labels", DROP, """keep = torch.bernoulli(torch.full(y.shape, 1.0 - p_uncond), generator=generator)
out = y.clone()
out[keep == 0] = null_label
return out"""),
    "cfg_combine": fn("cfg_combine", CFG, "return pred_cond + w * (pred_cond - pred_uncond)"),
    "guided_sample": fn("guided_sample", SAMPLE, """from course.ddim import ddim_sample
guided = lambda x, t: cfg_combine(model(x, t, y), model(x, t), w)
return ddim_sample(guided, x_T, timesteps, alpha_bar, eta=0.0)"""),
    "classifier_guided_score": fn("classifier_guided_score", CLS, "return torch.add(score, grad_log_p_y, alpha=scale)"),
    "predict_guidance_scale": fn("predict_guidance_scale", "", "s = 4\nreturn s - 1"),
    "predict_exact_model_w": fn("predict_exact_model_w", "", 'return " C "'),
}


LIBRARY_USE = {
    "cfg_combine": "from course.guidance import cfg_combine as lib\n\n"
                   "def cfg_combine(pred_cond, pred_uncond, w):\n    return lib(pred_cond, pred_uncond, w)\n",
    "guided_sample": "import course.guidance as g\n\n"
                     "def guided_sample(model, x_T, y, w, timesteps, alpha_bar):\n"
                     "    return g.guided_sample(model, x_T, y, w, timesteps, alpha_bar)\n",
}


class TestNotebook07(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 07_guidance."""

    notebook = "07_guidance"
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_USE

    def test_solution_runs_in_fast_mode(self, tmp_path, monkeypatch):
        """The contract's fast-mode run, and the claims its text makes about what it prints: with the exact
        model, accuracy rises and the samples leave p(x | y) as w grows (predict_exact_model_w's answer)."""
        metrics_file = tmp_path / "metrics.jsonl"
        monkeypatch.setenv("COURSE_METRICS_FILE", str(metrics_file))
        super().test_solution_runs_in_fast_mode()
        m = {r["name"]: r["value"] for r in map(json.loads, metrics_file.read_text().splitlines())}
        assert m["2d_exact_distance_w6"] > 2 * m["2d_exact_distance_w0"], m
        assert m["2d_exact_accuracy_w6"] >= m["2d_exact_accuracy_w0"], m
        assert m["2d_exact_accuracy_w6"] > 0.95, m

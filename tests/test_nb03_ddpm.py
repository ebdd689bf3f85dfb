"""Notebook 03 (DDPM) end to end: the reference scores full marks, the released stub zero,
realistic wrong answers lose points with the right hint, correct rewrites keep full marks, an
answer that calls the library scores zero, and the notebook runs in fast mode.

Answer cells are written without imports: like the reference's, they use the notebook's own
``torch``, ``math`` and ``F``."""
from __future__ import annotations

import torch

from grader.paths import ROOT
from grader.public.nb03_ddpm import EXERCISES
from support import NotebookContract, answer_builder

torch.set_num_threads(1)  # the grader-side expectations use small tensors


fn = answer_builder("")  # fn(name, args, body, prelude=""): no imports


LINEAR = "T, beta_start=1e-4, beta_end=0.02"
COSINE = "T, s=0.008, max_beta=0.999"
Q_SAMPLE = "x0, t, eps, alpha_bar"
POSTERIOR = "x0, xt, t, betas, alpha_bar"
X0 = "xt, t, eps, alpha_bar"
LOSS = "model, x0, t, eps, alpha_bar"
STEP = 'model, xt, t, z, betas, alpha_bar, variance="beta"'
SAMPLE = 'model, x_T, betas, alpha_bar, generator=None, variance="beta"'
LOG_VAR = "v, t, betas, alpha_bar"
POSTERIOR_MEAN = "xt, alpha_bar_t, m, s2"

AB = "ab = alpha_bar[{t}].reshape(-1, *([1] * ({x}.ndim - 1)))\n"
COSINE_GRID = "u = {u} / T\nf = torch.cos((u + s) / (1 + s) * math.pi / 2){square}\nreturn {betas}"
POSTERIOR_BODY = """prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
shape = (-1,) + (1,) * (x0.ndim - 1)
ab, abp, b = alpha_bar[t], prev[t], betas[t]
mean = (abp.sqrt() * b / (1 - ab)).reshape(shape) * x0 + ({xt_coef} * (1 - abp) / (1 - ab)).reshape(shape) * xt
return mean, {var}"""
STEP_BODY = """shape = (-1,) + (1,) * (xt.ndim - 1)
beta, ab = betas[t].reshape(shape), alpha_bar[t].reshape(shape)
mean = (xt - beta / (1 - ab).sqrt() * model(xt, t)) / {denominator}
prev = torch.cat([torch.ones(1), alpha_bar[:-1]])[t].reshape(shape)
var = beta if variance == "beta" else (1 - prev) / (1 - ab) * beta
return {result}"""
# A correct step used by the wrong samplers below, so that each sampler's own mistake is what is graded.
_STEP = '''
def _mean_and_var(model, x, t, betas, alpha_bar, variance):
    shape = (-1,) + (1,) * (x.ndim - 1)
    beta, ab = betas[t].reshape(shape), alpha_bar[t].reshape(shape)
    mean = (x - beta / (1 - ab).sqrt() * model(x, t)) / (1 - beta).sqrt()
    ab_prev = torch.cat([torch.ones(1), alpha_bar[:-1]])[t].reshape(shape)
    var = beta if variance == "beta" else (1 - ab_prev) / (1 - ab) * beta
    return mean, var
'''
SAMPLE_BODY = """x = x_T
with torch.no_grad():
    for step in {steps}:
        t = torch.full((x.shape[0],), step, dtype=torch.long)
        mean, var = _mean_and_var(model, x, t, betas, alpha_bar, variance)
        x = mean + {noise}
return x"""
BETA_TILDE = """prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
bt = (1 - prev) / (1 - alpha_bar) * betas
"""
CLIP_FIRST = "bt = torch.cat([bt[1:2], bt[1:]])\n"
V_SHAPE = "shape = (-1,) + (1,) * (v.ndim - 1)\n"

# exercise -> three wrong answers: (source, text the feedback must contain)
WRONG = {
    "linear_beta_schedule": [
        (fn("linear_beta_schedule", LINEAR, "return 1 - torch.linspace(beta_start, beta_end, T)"),
         "alphas = 1 - betas"),
        (fn("linear_beta_schedule", LINEAR, "return beta_start + (beta_end - beta_start) * torch.arange(T) / T"),
         "the last beta should be beta_end"),
        (fn("linear_beta_schedule", LINEAR, "return torch.linspace(beta_start, beta_end, T + 1)"),
         "one value per step"),
    ],
    "cosine_beta_schedule": [
        (fn("cosine_beta_schedule", COSINE, COSINE_GRID.format(
            u="torch.arange(T + 1, dtype=torch.float64)", square=" ** 2",
            betas="(1 - f[1:] / f[:-1]).float()")), "clip the betas"),
        (fn("cosine_beta_schedule", COSINE, COSINE_GRID.format(
            u="torch.arange(T + 1, dtype=torch.float64)", square="",
            betas="(1 - f[1:] / f[:-1]).clamp(max=max_beta).float()")), "the cosine is squared"),
        (fn("cosine_beta_schedule", COSINE, COSINE_GRID.format(
            u="(torch.arange(T + 1, dtype=torch.float64) - 1).clamp(min=0)", square=" ** 2",
            betas="(1 - f[1:] / f[:-1]).clamp(max=max_beta).float()")), "shifted by one step"),
    ],
    "q_sample": [
        (fn("q_sample", Q_SAMPLE, AB.format(t="t", x="x0") + "return ab * x0 + (1 - ab) * eps"),
         "variance where a std belongs"),
        (fn("q_sample", Q_SAMPLE, AB.format(t="t - 1", x="x0") + "return ab.sqrt() * x0 + (1 - ab).sqrt() * eps"),
         "t is off by one"),
        (fn("q_sample", Q_SAMPLE, AB.format(t="t", x="x0") + "return (1 - ab).sqrt() * x0 + ab.sqrt() * eps"),
         "coefficients are swapped"),
    ],
    "q_posterior": [
        (fn("q_posterior", POSTERIOR, POSTERIOR_BODY.format(xt_coef="(1 - b).sqrt()", var="b")),
         "beta and beta_tilde swapped"),
        (fn("q_posterior", POSTERIOR, POSTERIOR_BODY.format(xt_coef="(1 - b).sqrt()",
                                                            var="((1 - abp) / (1 - ab) * b).sqrt()")),
         "std sqrt(beta_tilde_t)"),
        (fn("q_posterior", POSTERIOR, POSTERIOR_BODY.format(xt_coef="ab.sqrt()", var="(1 - abp) / (1 - ab) * b")),
         "alpha_bar where alpha belongs"),
    ],
    "predict_x0": [
        (fn("predict_x0", X0, AB.format(t="t", x="xt") + "return (xt - (1 - ab) * eps) / ab.sqrt()"),
         "not the variance 1 - alpha_bar"),
        (fn("predict_x0", X0, AB.format(t="t", x="xt") + "return (xt - (1 - ab).sqrt() * eps) / ab"),
         "not alpha_bar[t]"),
        (fn("predict_x0", X0, AB.format(t="t", x="xt") + "return (xt - (1 - ab).sqrt() * eps) * ab.sqrt()"),
         "do not multiply"),
    ],
    "ddpm_loss": [
        (fn("ddpm_loss", LOSS, AB.format(t="t", x="x0") + "xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps\n"
            "return F.mse_loss(model(xt, t), x0)"), "the noise eps, not x0"),
        (fn("ddpm_loss", LOSS, "return F.mse_loss(model(x0, t), eps)"), "sees the noised x_t"),
        (fn("ddpm_loss", LOSS, AB.format(t="t", x="x0") + "xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps\n"
            "return ((model(xt, t) - eps) ** 2).sum()"), "not a sum"),
    ],
    "p_sample_step": [
        (fn("p_sample_step", STEP, STEP_BODY.format(denominator="(1 - beta).sqrt()",
                                                    result="mean + var.sqrt() * z")),
         "no noise is added at the last step"),
        (fn("p_sample_step", STEP, STEP_BODY.format(denominator="(1 - beta).sqrt()",
                                                    result="mean + (t > 0).float().reshape(shape) * var * z")),
         "sigma not squared"),
        (fn("p_sample_step", STEP, STEP_BODY.format(denominator="ab.sqrt()",
                                                    result="mean + (t > 0).float().reshape(shape) * var.sqrt() * z")),
         "alpha is not alpha_bar"),
    ],
    "ddpm_sample": [
        (fn("ddpm_sample", SAMPLE, SAMPLE_BODY.format(
            steps="reversed(range(len(betas)))", noise="var.sqrt() * torch.randn(x.shape, generator=generator)"),
            prelude=_STEP), "noise was added at the last step"),
        (fn("ddpm_sample", SAMPLE, SAMPLE_BODY.format(
            steps="range(len(betas) - 1, 0, -1)", noise="var.sqrt() * torch.randn(x.shape, generator=generator)"),
            prelude=_STEP), "the loop stopped before the last step"),
        (fn("ddpm_sample", SAMPLE, SAMPLE_BODY.format(
            steps="reversed(range(len(betas)))", noise="(step > 0) * var.sqrt() * torch.randn(x.shape)"),
            prelude=_STEP), "drawn from the generator passed in"),
    ],
    "learned_log_variance": [
        (fn("learned_log_variance", LOG_VAR, BETA_TILDE + CLIP_FIRST + V_SHAPE +
            "return torch.log(v * betas[t].reshape(shape) + (1 - v) * bt[t].reshape(shape))"), "interpolate the log variances"),
        (fn("learned_log_variance", LOG_VAR, BETA_TILDE + CLIP_FIRST + V_SHAPE +
            "return v * bt[t].log().reshape(shape) + (1 - v) * betas[t].log().reshape(shape)"),
         "beta and beta_tilde are swapped"),
        (fn("learned_log_variance", LOG_VAR, BETA_TILDE + V_SHAPE +
            "return v * betas[t].log().reshape(shape) + (1 - v) * bt[t].log().reshape(shape)"), "log of zero"),
    ],
    "predict_log_alpha_bar_last": [
        (fn("predict_log_alpha_bar_last", "", "return -0.02 * 1000"), "every beta taken at its largest value"),
        (fn("predict_log_alpha_bar_last", "", "return -10.1 / 2"), "the log of sqrt(alpha_bar)"),
        (fn("predict_log_alpha_bar_last", "", "return -4.39"), "the decimal logarithm"),
    ],
    "derive_posterior_mean": [
        (fn("derive_posterior_mean", POSTERIOR_MEAN, "return xt / alpha_bar_t ** 0.5"), "the noise ignored"),
        (fn("derive_posterior_mean", POSTERIOR_MEAN,
            "return alpha_bar_t ** 0.5 * s2 / (alpha_bar_t * s2 + 1 - alpha_bar_t) * xt"), "prior mean m is missing"),
        (fn("derive_posterior_mean", POSTERIOR_MEAN,
            "return m + alpha_bar_t * s2 / (alpha_bar_t * s2 + 1 - alpha_bar_t) * (xt - alpha_bar_t ** 0.5 * m)"),
         "not alpha_bar"),
    ],
}

# correct answers written differently: vectorised float32 schedules, an x0-parameterised posterior; full marks
REWRITES = {
    "linear_beta_schedule": fn("linear_beta_schedule", LINEAR, """steps = torch.arange(T, dtype=torch.float32)
return beta_start + (beta_end - beta_start) * steps / (T - 1)"""),
    "cosine_beta_schedule": fn("cosine_beta_schedule", COSINE, """t = torch.arange(T, dtype=torch.float32)
f = lambda u: torch.cos((u + s) / (1 + s) * torch.pi / 2) ** 2
return torch.minimum(1 - f((t + 1) / T) / f(t / T), torch.tensor(max_beta))"""),
    "q_sample": fn("q_sample", Q_SAMPLE, """a = alpha_bar.gather(0, t).view(-1, *[1] * (x0.dim() - 1))
return x0 * torch.sqrt(a) + eps * torch.sqrt(1 - a)"""),
    "q_posterior": fn("q_posterior", POSTERIOR, """\
# through the noise: eps = (xt - sqrt(ab) x0) / sqrt(1 - ab), mean = (xt - beta / sqrt(1 - ab) eps) / sqrt(alpha)
view = lambda v: v.view(-1, *[1] * (x0.dim() - 1))
ab, b = view(alpha_bar[t]), view(betas[t])
eps = (xt - ab.sqrt() * x0) / (1 - ab).sqrt()
mean = (xt - b / (1 - ab).sqrt() * eps) / (1 - b).sqrt()
ab_prev = torch.where(t > 0, alpha_bar[(t - 1).clamp(min=0)], torch.ones_like(alpha_bar[t]))
return mean, betas[t] * (1 - ab_prev) / (1 - alpha_bar[t])"""),
    "predict_x0": fn("predict_x0", X0, """ab = alpha_bar[t].view(-1, *[1] * (xt.dim() - 1))
return xt / ab.sqrt() - ((1 - ab) / ab).sqrt() * eps"""),
    "ddpm_loss": fn("ddpm_loss", LOSS, """xt = q_sample(x0, t, eps, alpha_bar)
return ((model(xt, t) - eps) ** 2).mean()"""),
    "p_sample_step": fn("p_sample_step", STEP, """\
# x0-parameterised: predict x0, then take the posterior q(x_{t-1} | x_t, x0_hat)
x0_hat = predict_x0(xt, t, model(xt, t), alpha_bar)
mean, beta_tilde = q_posterior(x0_hat, xt, t, betas, alpha_bar)
var = betas[t] if variance == "beta" else beta_tilde
sigma = var.sqrt().view(-1, *[1] * (xt.dim() - 1))
return torch.where((t == 0).view(-1, *[1] * (xt.dim() - 1)), mean, mean + sigma * z)"""),
    "ddpm_sample": fn("ddpm_sample", SAMPLE, """x = x_T.clone()
for step in range(betas.shape[0] - 1, -1, -1):
    z = torch.randn(*x.shape, generator=generator)
    x = p_sample_step(model, x, torch.full((len(x),), step), z, betas, alpha_bar, variance=variance).detach()
return x"""),
    "learned_log_variance": fn("learned_log_variance", LOG_VAR, """\
ab_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
log_bt = torch.log((1 - ab_prev) / (1 - alpha_bar) * betas)
log_bt[0] = log_bt[1]
view = lambda x: x.view(-1, *[1] * (v.dim() - 1))
return torch.lerp(view(log_bt[t]), view(betas[t].log()), v)"""),
    "predict_log_alpha_bar_last": fn("predict_log_alpha_bar_last", "", """\
# sum of log(1 - beta) ~ -(sum of betas) = -T x (average beta)
return -1000 * (1e-4 + 0.02) / 2"""),
    "derive_posterior_mean": fn("derive_posterior_mean", POSTERIOR_MEAN, """\
# precisions add: 1 / s2 from the prior, alpha_bar / (1 - alpha_bar) from the observation x_t / sqrt(alpha_bar)
precision = 1 / s2 + alpha_bar_t / (1 - alpha_bar_t)
return (m / s2 + alpha_bar_t ** 0.5 / (1 - alpha_bar_t) * xt) / precision"""),
}

LIBRARY_USE = {
    "q_sample": fn("q_sample", Q_SAMPLE, "return _q(x0, t, eps, alpha_bar)",
                   prelude="\nfrom course.ddpm import q_sample as _q"),
}


class TestNotebook03(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 03_ddpm."""

    notebook = "03_ddpm"
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_USE

    def test_solution_runs_in_fast_mode(self, tmp_path, monkeypatch):
        """Does the reference notebook run in fast mode (with the shipped checkpoints), and do the claims its
        text makes beside the fast run's figures hold there?"""
        check_fast_claims(fast_run_metrics(tmp_path, monkeypatch))


def test_wrong_answers_and_rewrites_cover_exactly_the_exercises():
    """Does every variant notebook hold a wrong answer of every exercise (and no other), and is every
    exercise rewritten?"""
    assert set(WRONG) == set(EXERCISES) == set(REWRITES)
    assert all(len(variants) == 3 for variants in WRONG.values())



def fast_run_metrics(tmp_path, monkeypatch) -> dict:
    """Run the reference notebook in fast mode; return the metrics it recorded, {name: value}."""
    import json

    from grader.workflows.execute import execute_notebook

    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("COURSE_METRICS_FILE", str(path))
    execute_notebook(ROOT / "solutions" / "03_ddpm.ipynb", fast=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["name"]: row["value"] for row in rows if row["notebook"] == "03_ddpm"}


def check_fast_claims(metrics: dict) -> None:
    """The claims 03's text makes beside the figures of its fast run (issue 13, item 3)."""
    sd = metrics["oracle_spread_floor_sd"]  # the data's spread over repeated draws, relative to its mean
    # few steps: beta too noisy, beta-tilde too sharp, both well outside the data's noise
    assert metrics["oracle_spread_T20_beta"] > 1 + 4 * sd, metrics
    assert metrics["oracle_spread_T20_tilde"] < 1 - 4 * sd, metrics
    # more steps close the gap
    for variance in ("beta", "tilde"):
        assert abs(metrics[f"oracle_spread_T100_{variance}"] - 1) < abs(metrics[f"oracle_spread_T20_{variance}"] - 1)
    if (ROOT / "checkpoints" / "03_moons_eps.pt").is_file():  # the trained model: samples near the data
        assert metrics["w_ratio_2d"] < 1 + 4 * metrics["w_2d_floor_sd_ratio"] + 0.25, metrics
    if (ROOT / "checkpoints" / "03_digits_eps.pt").is_file():
        # the text: about 3x the floor for both variances in full mode (issue 13's target); fast mode scores
        # the same checkpoint over fewer draws, so allow the draws' spread on top
        floor = metrics["digits_frechet_floor"]
        for variance in ("beta", "tilde"):
            score, sd = metrics[f"digits_frechet_{variance}"], metrics[f"digits_frechet_{variance}_sd"]
            assert floor < score < 3 * floor + 2 * sd, metrics
        # ... and clipping x0-hat at every step (Ho et al.'s clip_denoised) does not help (not better beyond the spread)
        tolerance = 2 * (metrics["digits_frechet_beta_sd"] + metrics["digits_frechet_clip_sd"])
        assert metrics["digits_frechet_clip"] > metrics["digits_frechet_beta"] - tolerance, metrics


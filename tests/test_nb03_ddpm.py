"""Project tests of notebook 03 (DDPM): the reference scores full marks, the released stub zero,
known wrong answers lose points with the right hint, correct rewrites keep full marks, and the
solution notebook runs in fast mode.

Each variant notebook holds wrong answer #i of *every* exercise and is graded once (module-scoped
fixtures), so the whole file grades six notebooks and runs one.
"""
from __future__ import annotations

import pytest
import torch

from course.execute import execute_notebook
from grader.engine.grade import grade_notebook
from grader.public.nb03_ddpm import EXERCISES
from tests.support import NOTEBOOKS, SOLUTIONS, assert_full, assert_wrong, grade_with

torch.set_num_threads(1)  # the grader-side expectations use small tensors

SOLUTION = SOLUTIONS / "03_ddpm.ipynb"
STUB = NOTEBOOKS / "03_ddpm.ipynb"

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

WRONG = [
    {  # variant 0
        "linear_beta_schedule": '''
def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    return 1 - torch.linspace(beta_start, beta_end, T)
''',
        "cosine_beta_schedule": '''
def cosine_beta_schedule(T, s=0.008, max_beta=0.999):
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).float()
''',
        "q_sample": '''
def q_sample(x0, t, eps, alpha_bar):
    ab = alpha_bar[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return ab * x0 + (1 - ab) * eps
''',
        "q_posterior": '''
def q_posterior(x0, xt, t, betas, alpha_bar):
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
    shape = (-1,) + (1,) * (x0.ndim - 1)
    ab, abp, b = alpha_bar[t], prev[t], betas[t]
    mean = (abp.sqrt() * b / (1 - ab)).reshape(shape) * x0 + ((1 - b).sqrt() * (1 - abp) / (1 - ab)).reshape(shape) * xt
    return mean, b
''',
        "predict_x0": '''
def predict_x0(xt, t, eps, alpha_bar):
    ab = alpha_bar[t].reshape(-1, *([1] * (xt.ndim - 1)))
    return (xt - (1 - ab) * eps) / ab.sqrt()
''',
        "ddpm_loss": '''
def ddpm_loss(model, x0, t, eps, alpha_bar):
    ab = alpha_bar[t].reshape(-1, *([1] * (x0.ndim - 1)))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return F.mse_loss(model(xt, t), x0)
''',
        "p_sample_step": '''
def p_sample_step(model, xt, t, z, betas, alpha_bar, variance="beta"):
    shape = (-1,) + (1,) * (xt.ndim - 1)
    beta, ab = betas[t].reshape(shape), alpha_bar[t].reshape(shape)
    mean = (xt - beta / (1 - ab).sqrt() * model(xt, t)) / (1 - beta).sqrt()
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])[t].reshape(shape)
    var = beta if variance == "beta" else (1 - prev) / (1 - ab) * beta
    return mean + var.sqrt() * z
''',
        "ddpm_sample": _STEP + '''
def ddpm_sample(model, x_T, betas, alpha_bar, generator=None, variance="beta"):
    x = x_T
    with torch.no_grad():
        for step in reversed(range(len(betas))):
            t = torch.full((x.shape[0],), step, dtype=torch.long)
            mean, var = _mean_and_var(model, x, t, betas, alpha_bar, variance)
            x = mean + var.sqrt() * torch.randn(x.shape, generator=generator)
    return x
''',
        "learned_log_variance": '''
def learned_log_variance(v, t, betas, alpha_bar):
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
    bt = (1 - prev) / (1 - alpha_bar) * betas
    bt = torch.cat([bt[1:2], bt[1:]])
    shape = (-1,) + (1,) * (v.ndim - 1)
    return torch.log(v * betas[t].reshape(shape) + (1 - v) * bt[t].reshape(shape))
''',
    },
    {  # variant 1
        "linear_beta_schedule": '''
def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    return beta_start + (beta_end - beta_start) * torch.arange(T) / T
''',
        "cosine_beta_schedule": '''
def cosine_beta_schedule(T, s=0.008, max_beta=0.999):
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2)
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta).float()
''',
        "q_sample": '''
def q_sample(x0, t, eps, alpha_bar):
    ab = alpha_bar[t - 1].reshape(-1, *([1] * (x0.ndim - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps
''',
        "q_posterior": '''
def q_posterior(x0, xt, t, betas, alpha_bar):
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
    shape = (-1,) + (1,) * (x0.ndim - 1)
    ab, abp, b = alpha_bar[t], prev[t], betas[t]
    mean = (abp.sqrt() * b / (1 - ab)).reshape(shape) * x0 + ((1 - b).sqrt() * (1 - abp) / (1 - ab)).reshape(shape) * xt
    return mean, ((1 - abp) / (1 - ab) * b).sqrt()
''',
        "predict_x0": '''
def predict_x0(xt, t, eps, alpha_bar):
    ab = alpha_bar[t].reshape(-1, *([1] * (xt.ndim - 1)))
    return (xt - (1 - ab).sqrt() * eps) / ab
''',
        "ddpm_loss": '''
def ddpm_loss(model, x0, t, eps, alpha_bar):
    return F.mse_loss(model(x0, t), eps)
''',
        "p_sample_step": '''
def p_sample_step(model, xt, t, z, betas, alpha_bar, variance="beta"):
    shape = (-1,) + (1,) * (xt.ndim - 1)
    beta, ab = betas[t].reshape(shape), alpha_bar[t].reshape(shape)
    mean = (xt - beta / (1 - ab).sqrt() * model(xt, t)) / (1 - beta).sqrt()
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])[t].reshape(shape)
    var = beta if variance == "beta" else (1 - prev) / (1 - ab) * beta
    return mean + (t > 0).float().reshape(shape) * var * z
''',
        "ddpm_sample": _STEP + '''
def ddpm_sample(model, x_T, betas, alpha_bar, generator=None, variance="beta"):
    x = x_T
    with torch.no_grad():
        for step in range(len(betas) - 1, 0, -1):
            t = torch.full((x.shape[0],), step, dtype=torch.long)
            mean, var = _mean_and_var(model, x, t, betas, alpha_bar, variance)
            x = mean + var.sqrt() * torch.randn(x.shape, generator=generator)
    return x
''',
        "learned_log_variance": '''
def learned_log_variance(v, t, betas, alpha_bar):
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
    bt = (1 - prev) / (1 - alpha_bar) * betas
    bt = torch.cat([bt[1:2], bt[1:]])
    shape = (-1,) + (1,) * (v.ndim - 1)
    return v * bt[t].log().reshape(shape) + (1 - v) * betas[t].log().reshape(shape)
''',
    },
    {  # variant 2
        "linear_beta_schedule": '''
def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(beta_start, beta_end, T + 1)
''',
        "cosine_beta_schedule": '''
def cosine_beta_schedule(T, s=0.008, max_beta=0.999):
    u = (torch.arange(T + 1, dtype=torch.float64) - 1).clamp(min=0) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta).float()
''',
        "q_sample": '''
def q_sample(x0, t, eps, alpha_bar):
    ab = alpha_bar[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return (1 - ab).sqrt() * x0 + ab.sqrt() * eps
''',
        "q_posterior": '''
def q_posterior(x0, xt, t, betas, alpha_bar):
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
    shape = (-1,) + (1,) * (x0.ndim - 1)
    ab, abp, b = alpha_bar[t], prev[t], betas[t]
    mean = (abp.sqrt() * b / (1 - ab)).reshape(shape) * x0 + (ab.sqrt() * (1 - abp) / (1 - ab)).reshape(shape) * xt
    return mean, (1 - abp) / (1 - ab) * b
''',
        "predict_x0": '''
def predict_x0(xt, t, eps, alpha_bar):
    ab = alpha_bar[t].reshape(-1, *([1] * (xt.ndim - 1)))
    return (xt - (1 - ab).sqrt() * eps) * ab.sqrt()
''',
        "ddpm_loss": '''
def ddpm_loss(model, x0, t, eps, alpha_bar):
    ab = alpha_bar[t].reshape(-1, *([1] * (x0.ndim - 1)))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return ((model(xt, t) - eps) ** 2).sum()
''',
        "p_sample_step": '''
def p_sample_step(model, xt, t, z, betas, alpha_bar, variance="beta"):
    shape = (-1,) + (1,) * (xt.ndim - 1)
    beta, ab = betas[t].reshape(shape), alpha_bar[t].reshape(shape)
    mean = (xt - beta / (1 - ab).sqrt() * model(xt, t)) / ab.sqrt()
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])[t].reshape(shape)
    var = beta if variance == "beta" else (1 - prev) / (1 - ab) * beta
    return mean + (t > 0).float().reshape(shape) * var.sqrt() * z
''',
        "ddpm_sample": _STEP + '''
def ddpm_sample(model, x_T, betas, alpha_bar, generator=None, variance="beta"):
    x = x_T
    with torch.no_grad():
        for step in reversed(range(len(betas))):
            t = torch.full((x.shape[0],), step, dtype=torch.long)
            mean, var = _mean_and_var(model, x, t, betas, alpha_bar, variance)
            x = mean + (step > 0) * var.sqrt() * torch.randn(x.shape)
    return x
''',
        "learned_log_variance": '''
def learned_log_variance(v, t, betas, alpha_bar):
    prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
    bt = (1 - prev) / (1 - alpha_bar) * betas
    shape = (-1,) + (1,) * (v.ndim - 1)
    return v * betas[t].log().reshape(shape) + (1 - v) * bt[t].log().reshape(shape)
''',
    },
]

# The hint each wrong answer must get (variant i, exercise) -> text in the feedback.
HINTS = [
    {"linear_beta_schedule": "alphas = 1 - betas", "cosine_beta_schedule": "clip the betas",
     "q_sample": "variance where a std belongs", "q_posterior": "beta and beta_tilde swapped",
     "predict_x0": "not the variance 1 - alpha_bar", "ddpm_loss": "the noise eps, not x0",
     "p_sample_step": "no noise is added at the last step", "ddpm_sample": "noise was added at the last step",
     "learned_log_variance": "not the variances"},
    {"linear_beta_schedule": "the last beta should be beta_end", "cosine_beta_schedule": "the cosine is squared",
     "q_sample": "t is off by one", "q_posterior": "std sqrt(beta_tilde_t)",
     "predict_x0": "not alpha_bar[t]", "ddpm_loss": "the model sees the noised x_t",
     "p_sample_step": "sigma not squared", "ddpm_sample": "the loop stopped before the last step",
     "learned_log_variance": "beta and beta_tilde are swapped"},
    {"linear_beta_schedule": "torch.linspace(start, end, T) has T points",
     "cosine_beta_schedule": "shifted by one step",
     "q_sample": "coefficients are swapped", "q_posterior": "alpha_bar where alpha belongs",
     "predict_x0": "do not multiply", "ddpm_loss": "not the sum",
     "p_sample_step": "alpha is not alpha_bar", "ddpm_sample": "torch.randn(x.shape, generator=generator)",
     "learned_log_variance": "log of zero"},
]

REWRITES = {  # correct answers written differently: vectorised float32 schedules, an x0-parameterised posterior
    "linear_beta_schedule": '''
def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    steps = torch.arange(T, dtype=torch.float32)
    return beta_start + (beta_end - beta_start) * steps / (T - 1)
''',
    "cosine_beta_schedule": '''
def cosine_beta_schedule(T, s=0.008, max_beta=0.999):
    t = torch.arange(T, dtype=torch.float32)
    f = lambda u: torch.cos((u + s) / (1 + s) * torch.pi / 2) ** 2
    return torch.minimum(1 - f((t + 1) / T) / f(t / T), torch.tensor(max_beta))
''',
    "q_sample": '''
def q_sample(x0, t, eps, alpha_bar):
    a = alpha_bar.gather(0, t).view(-1, *[1] * (x0.dim() - 1))
    return x0 * torch.sqrt(a) + eps * torch.sqrt(1 - a)
''',
    "q_posterior": '''
def q_posterior(x0, xt, t, betas, alpha_bar):
    # through the noise: eps = (xt - sqrt(ab) x0) / sqrt(1 - ab), mean = (xt - beta / sqrt(1 - ab) eps) / sqrt(alpha)
    view = lambda v: v.view(-1, *[1] * (x0.dim() - 1))
    ab, b = view(alpha_bar[t]), view(betas[t])
    eps = (xt - ab.sqrt() * x0) / (1 - ab).sqrt()
    mean = (xt - b / (1 - ab).sqrt() * eps) / (1 - b).sqrt()
    ab_prev = torch.where(t > 0, alpha_bar[(t - 1).clamp(min=0)], torch.ones_like(alpha_bar[t]))
    return mean, betas[t] * (1 - ab_prev) / (1 - alpha_bar[t])
''',
    "predict_x0": '''
def predict_x0(xt, t, eps, alpha_bar):
    ab = alpha_bar[t].view(-1, *[1] * (xt.dim() - 1))
    return xt / ab.sqrt() - ((1 - ab) / ab).sqrt() * eps
''',
    "ddpm_loss": '''
def ddpm_loss(model, x0, t, eps, alpha_bar):
    xt = q_sample(x0, t, eps, alpha_bar)
    return ((model(xt, t) - eps) ** 2).mean()
''',
    "p_sample_step": '''
def p_sample_step(model, xt, t, z, betas, alpha_bar, variance="beta"):
    # x0-parameterised: predict x0, then take the posterior q(x_{t-1} | x_t, x0_hat)
    x0_hat = predict_x0(xt, t, model(xt, t), alpha_bar)
    mean, beta_tilde = q_posterior(x0_hat, xt, t, betas, alpha_bar)
    var = betas[t] if variance == "beta" else beta_tilde
    sigma = var.sqrt().view(-1, *[1] * (xt.dim() - 1))
    return torch.where((t == 0).view(-1, *[1] * (xt.dim() - 1)), mean, mean + sigma * z)
''',
    "ddpm_sample": '''
def ddpm_sample(model, x_T, betas, alpha_bar, generator=None, variance="beta"):
    x = x_T.clone()
    for step in range(betas.shape[0] - 1, -1, -1):
        z = torch.randn(*x.shape, generator=generator)
        x = p_sample_step(model, x, torch.full((len(x),), step), z, betas, alpha_bar, variance=variance).detach()
    return x
''',
    "learned_log_variance": '''
def learned_log_variance(v, t, betas, alpha_bar):
    ab_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    log_bt = torch.log((1 - ab_prev) / (1 - alpha_bar) * betas)
    log_bt[0] = log_bt[1]
    view = lambda x: x.view(-1, *[1] * (v.dim() - 1))
    return torch.lerp(view(log_bt[t]), view(betas[t].log()), v)
''',
}


@pytest.fixture(scope="module")
def reference_report():
    return grade_notebook(SOLUTION, seed=31)


@pytest.fixture(scope="module")
def stub_report():
    return grade_notebook(STUB, seed=32)


@pytest.fixture(scope="module", params=range(len(WRONG)))
def wrong_report(request):
    return request.param, grade_with(SOLUTION, WRONG[request.param], seed=40 + request.param)


@pytest.fixture(scope="module")
def rewrite_report():
    return grade_with(SOLUTION, REWRITES, seed=50)


def test_reference_scores_full_marks(reference_report):
    """Does the reference solution get every point?"""
    assert_full(reference_report)


def test_stub_scores_zero(stub_report):
    """Does the released notebook, answers not written, score zero on every exercise?"""
    for name, r in stub_report["exercises"].items():
        assert r["score"] == 0, (name, r)


def test_wrong_answers_lose_points_with_hints(wrong_report):
    """Does each known mistake lose points, with the hint that names it?"""
    i, report = wrong_report
    assert set(WRONG[i]) == set(EXERCISES) == set(HINTS[i])
    for name in EXERCISES:
        assert_wrong(report, name, HINTS[i][name])


def test_correct_rewrites_keep_full_marks(rewrite_report):
    """Do correct answers written differently (float32 vectorised schedules, x0-parameterised posterior) pass?"""
    assert_full(rewrite_report)


def test_library_answer_scores_zero():
    """Does an answer that calls the library's own q_sample score zero?"""
    report = grade_with(SOLUTION, {"q_sample": '''
from course.ddpm import q_sample as _q
def q_sample(x0, t, eps, alpha_bar):
    return _q(x0, t, eps, alpha_bar)
'''}, seed=60, exercise="q_sample")
    assert report["exercises"]["q_sample"]["score"] == 0


def test_solution_runs_in_fast_mode(tmp_path):
    """Does the solution notebook run top to bottom in fast mode?"""
    execute_notebook(SOLUTION, fast=True, output=tmp_path / "03_ddpm.ipynb")

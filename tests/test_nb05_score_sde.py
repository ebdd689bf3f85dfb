"""Notebook 05 (score matching and SDEs) end to end: the reference scores full marks, the released
stub zero, realistic wrong answers lose points with the right hint, correct rewrites keep full
marks, and the notebook runs in fast mode."""
from __future__ import annotations

from grader.paths import ROOT
from grader.public.nb05_score_sde import EXERCISES
from support import NotebookContract

NB = "05_score_sde"

# --------------------------------------------------------------------------------------------
# Wrong answers: WRONG[exercise] = [(source, expected hint), ...]; variant i uses answer #i of each.
# --------------------------------------------------------------------------------------------
GMM_HEAD = '''
def gmm_log_prob(x, means, stds, weights):
    d = x.shape[1]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
'''
SCORE_HEAD = '''
def gmm_score(x, means, stds, weights):
    var = stds ** 2
    diff = means[None] - x[:, None]  # (N, K, d)
    log_comp = torch.log(weights) - 0.5 * x.shape[1] * torch.log(2 * math.pi * var) - 0.5 * (diff ** 2).sum(-1) / var
    resp = torch.softmax(log_comp, 1)
'''
PC_TEMPLATE = '''
def pc_sample(score_fn, x_T, sde, n_steps, snr, n_corrector, generator=None):
    dt = 1.0 / n_steps
    x = x_T
    for i in range(n_steps):
        t = torch.full((x.shape[0],), 1.0 - i * dt)
        for _ in range({n_corr}):
            z = torch.randn(x.shape, generator=generator)
            s = score_fn(x, t)
            eps = 2 * (snr * z.norm(dim=1).mean() / s.norm(dim=1).mean()) ** 2
            x = x + eps * s + {noise} * z
        z = torch.randn(x.shape, generator=generator)
        f, g = sde(x, t)
        g = g[:, None]
        x = x - (f {sign} g ** 2 * score_fn(x, t)) * dt + g * math.sqrt(dt) * z
    return x
'''
PF_TEMPLATE = '''
def pf_ode_log_prob(score_fn, x, sde, n_steps):
    d = x.shape[1]
    def drift(y, t):
        f, g = sde(y, t)
        return f - {scale} * g[:, None] ** 2 * score_fn(y, t)
    def augmented(state, t):
        xt = state[:, :d].detach()
        tb = torch.full((xt.shape[0],), t)
        with torch.enable_grad():
            dx = drift(xt, tb).detach()
        return torch.cat([dx, divergence(drift, xt, tb)[:, None]], 1)
    state = torch.cat([x, torch.zeros(x.shape[0], 1)], 1)
    for i in range(n_steps):
        state = rk4_step(augmented, state, i / n_steps, 1.0 / n_steps)
    return {result}
'''

WRONG = {
    "gmm_log_prob": [
        (GMM_HEAD + "    var = stds ** 2\n    return torch.logsumexp(-0.5 * d * torch.log(2 * math.pi * var) - 0.5 * sq / var, 1)\n",
         "weights are missing"),
        (GMM_HEAD + "    var = stds\n    return torch.logsumexp(torch.log(weights) - 0.5 * d * torch.log(2 * math.pi * var) - 0.5 * sq / var, 1)\n",
         "where the variance"),
        (GMM_HEAD + "    var = stds ** 2\n    comp = weights * torch.exp(-0.5 * sq / var) / (2 * math.pi * var) ** (d / 2)\n"
         "    return torch.log(comp.sum(1))\n", "logsumexp"),
    ],
    "gmm_score": [
        (SCORE_HEAD + "    return (diff / var[None, :, None]).mean(1)\n", "not uniformly"),
        (SCORE_HEAD + "    return (resp[:, :, None] * -diff / var[None, :, None]).sum(1)\n", "points towards the means"),
        (SCORE_HEAD + "    return (resp[:, :, None] * diff / stds[None, :, None]).sum(1)\n", "not the standard deviation"),
    ],
    "dsm_loss": [
        ("def dsm_loss(score_model, x0, sigma, noise):\n    s = sigma[:, None]\n"
         "    return ((s * score_model(x0 + s * noise, sigma) - noise) ** 2).mean()\n", "with a plus"),
        ("def dsm_loss(score_model, x0, sigma, noise):\n    s = sigma[:, None]\n"
         "    return ((s * score_model(x0, sigma) + noise) ** 2).mean()\n", "noisy point"),
        ("def dsm_loss(score_model, x0, sigma, noise):\n    s = sigma[:, None]\n"
         "    return ((score_model(x0 + s * noise, sigma) + noise / s) ** 2).mean()\n", "sigma^2 weighting"),
    ],
    "langevin_step": [
        ("def langevin_step(score_fn, x, step_size, z):\n    return x + step_size * score_fn(x) + math.sqrt(step_size) * z\n",
         "not sqrt(step_size) z"),
        ("def langevin_step(score_fn, x, step_size, z):\n    return x + step_size * score_fn(x)\n", "noise term"),
        ("def langevin_step(score_fn, x, step_size, z):\n    return x - step_size * score_fn(x) + math.sqrt(2 * step_size) * z\n",
         "move along the score"),
    ],
    "vp_marginal": [
        ("def vp_marginal(t, beta_min=0.1, beta_max=20.0):\n"
         "    a = torch.exp(-0.5 * beta_min * t - 0.25 * t ** 2 * (beta_max - beta_min))\n    return a, 1 - a ** 2\n",
         "you returned the variance"),
        ("def vp_marginal(t, beta_min=0.1, beta_max=20.0):\n"
         "    a = torch.exp(-beta_min * t - 0.5 * t ** 2 * (beta_max - beta_min))\n    return a, torch.sqrt(1 - a ** 2)\n",
         "the 1/2 is missing"),
        ("def vp_marginal(t, beta_min=0.1, beta_max=20.0):\n    beta = beta_min + t * (beta_max - beta_min)\n"
         "    a = torch.exp(-0.5 * beta * t)\n    return a, torch.sqrt(1 - a ** 2)\n", "integrate beta"),
    ],
    "vp_sde": [
        ("def vp_sde(x, t, beta_min=0.1, beta_max=20.0):\n    beta = beta_min + t * (beta_max - beta_min)\n"
         "    return -0.5 * beta[:, None] * x, beta\n", "where its square root belongs"),
        ("def vp_sde(x, t, beta_min=0.1, beta_max=20.0):\n    beta = beta_min + t * (beta_max - beta_min)\n"
         "    return -beta[:, None] * x, torch.sqrt(beta)\n", "the 1/2 is missing"),
        ("def vp_sde(x, t, beta_min=0.1, beta_max=20.0):\n    beta = beta_min + t * (beta_max - beta_min)\n"
         "    return 0.5 * beta[:, None] * x, torch.sqrt(beta)\n", "minus sign"),
    ],
    "reverse_sde_step": [
        ("def reverse_sde_step(score_fn, x, t, dt, z, sde):\n    f, g = sde(x, t)\n    g = g[:, None]\n"
         "    return x - (f + g ** 2 * score_fn(x, t)) * dt + g * math.sqrt(dt) * z\n", "flipped"),
        ("def reverse_sde_step(score_fn, x, t, dt, z, sde):\n    f, g = sde(x, t)\n    g = g[:, None]\n"
         "    return x + (f - g ** 2 * score_fn(x, t)) * dt + g * math.sqrt(dt) * z\n", "backwards in time"),
        ("def reverse_sde_step(score_fn, x, t, dt, z, sde):\n    f, g = sde(x, t)\n    g = g[:, None]\n"
         "    return x - (f - g ** 2 * score_fn(x, t)) * dt + g * z\n", "sqrt(dt)"),
    ],
    "pf_ode_drift": [
        ("def pf_ode_drift(score_fn, x, t, sde):\n    f, g = sde(x, t)\n    return f - g[:, None] ** 2 * score_fn(x, t)\n",
         "half the score term"),
        ("def pf_ode_drift(score_fn, x, t, sde):\n    f, g = sde(x, t)\n    return f + 0.5 * g[:, None] ** 2 * score_fn(x, t)\n",
         "sign of the score term is flipped"),
        ("def pf_ode_drift(score_fn, x, t, sde):\n    f, g = sde(x, t)\n    return f - 0.5 * g[:, None] * score_fn(x, t)\n",
         "not (1/2) g(t) score"),
    ],
    "pc_sample": [
        (PC_TEMPLATE.format(n_corr="n_corrector", noise="torch.sqrt(eps)", sign="-"), "sqrt(2 eps)"),
        (PC_TEMPLATE.format(n_corr="0", noise="torch.sqrt(2 * eps)", sign="-"), "n_corrector Langevin corrector steps"),
        (PC_TEMPLATE.format(n_corr="n_corrector", noise="torch.sqrt(2 * eps)", sign="+"), "blew up"),
    ],
    "pf_ode_log_prob": [
        (PF_TEMPLATE.format(scale="0.5", result="standard_normal_log_prob(state[:, :d]) - state[:, d]"),
         "add the integral of the divergence"),
        (PF_TEMPLATE.format(scale="0.5", result="state[:, d]"), "prior term"),
        (PF_TEMPLATE.format(scale="1.0", result="standard_normal_log_prob(state[:, :d]) + state[:, d]"),
         "probability-flow drift"),
    ],
    "eps_to_score": [
        ("def eps_to_score(eps, std):\n    return eps / std[:, None]\n", "minus sign"),
        ("def eps_to_score(eps, std):\n    return -eps / std[:, None] ** 2\n", "not the variance"),
        ("def eps_to_score(eps, std):\n    return -eps * std[:, None]\n", "do not multiply"),
    ],
    "predict_vp_stationary": [
        ('def predict_vp_stationary():\n    return "b"\n', "pulls every point towards 0"),
        ('def predict_vp_stationary():\n    return "c"\n', "balance at variance 1"),
        ('def predict_vp_stationary():\n    return "d"\n', "that is the VE SDE"),
    ],
    "derive_vp_variance": [  # written out (each variant notebook also holds a wrong vp_marginal)
        ("def derive_vp_variance(v0, t):\n    m = torch.exp(-0.05 * t - 0.25 * t ** 2 * 19.9)\n"
         "    return v0 + 1 - m ** 2\n", "contributes m(t)^2 v0"),
        ("def derive_vp_variance(v0, t):\n    m = torch.exp(-0.05 * t - 0.25 * t ** 2 * 19.9)\n"
         "    return m * v0 + 1 - m ** 2\n", "square m(t)"),
        ("def derive_vp_variance(v0, t):\n    m = torch.exp(-0.05 * t - 0.25 * t ** 2 * 19.9)\n"
         "    return m ** 2 * v0 + torch.sqrt(1 - m ** 2)\n", "not the std"),
    ],
}

# Correct answers written differently: every one must keep full marks.
REWRITES = {
    "gmm_log_prob": '''
def gmm_log_prob(x, means, stds, weights):
    comps = torch.distributions.Normal(means[None], stds[None, :, None])  # batch (1, K, d)
    log_comp = comps.log_prob(x[:, None, :]).sum(-1)  # (N, K)
    return torch.logsumexp(log_comp + weights.log(), dim=-1)
''',
    "gmm_score": '''
def gmm_score(x, means, stds, weights):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(gmm_log_prob(x, means, stds, weights).sum(), x)
    return grad
''',
    "dsm_loss": '''
import torch.nn.functional as F

def dsm_loss(score_model, x0, sigma, noise):
    x_noisy = x0 + sigma.view(-1, 1) * noise
    return F.mse_loss(sigma.view(-1, 1) * score_model(x_noisy, sigma), -noise)
''',
    "langevin_step": '''
def langevin_step(score_fn, x, step_size, z):
    drift = step_size * score_fn(x)
    return x + drift + (2 * step_size) ** 0.5 * z
''',
    "vp_marginal": '''
def vp_marginal(t, beta_min=0.1, beta_max=20.0):
    integral = beta_min * t + 0.5 * t ** 2 * (beta_max - beta_min)
    mean_coef = torch.exp(-0.5 * integral)
    return mean_coef, (1 - mean_coef ** 2).sqrt()
''',
    "vp_sde": '''
def vp_sde(x, t, beta_min=0.1, beta_max=20.0):
    beta = torch.lerp(torch.full_like(t, beta_min), torch.full_like(t, beta_max), t)
    return -beta.unsqueeze(-1) * x / 2, beta.sqrt()
''',
    "reverse_sde_step": '''
def reverse_sde_step(score_fn, x, t, dt, z, sde):
    f, g = sde(x, t)
    g2 = (g ** 2).reshape(-1, 1)
    mean = x + (g2 * score_fn(x, t) - f) * dt
    return mean + torch.sqrt(g2 * dt) * z
''',
    "pf_ode_drift": '''
def pf_ode_drift(score_fn, x, t, sde):
    f, g = sde(x, t)
    return f - (g ** 2 / 2).unsqueeze(1) * score_fn(x, t)
''',
    "pc_sample": '''
def pc_sample(score_fn, x_T, sde, n_steps, snr, n_corrector, generator=None):
    ts = torch.linspace(1.0, 0.0, n_steps + 1)
    x = x_T.clone()
    for k in range(n_steps):
        t = ts[k].repeat(len(x))
        for _ in range(n_corrector):
            noise = torch.randn(x.shape, generator=generator)
            grad = score_fn(x, t)
            eps = 2 * (snr * torch.linalg.norm(noise, dim=-1).mean() / torch.linalg.norm(grad, dim=-1).mean()) ** 2
            x = langevin_step(lambda y: score_fn(y, t), x, float(eps), noise)  # a second evaluation: fine
        noise = torch.randn(x.shape, generator=generator)  # noise on the last step too
        x = reverse_sde_step(score_fn, x, t, float(ts[k] - ts[k + 1]), noise, sde)
    return x
''',
    "pf_ode_log_prob": '''
def pf_ode_log_prob(score_fn, x, sde, n_steps):
    n, d = x.shape

    def field(y, t):  # y (n, d + 1), t a float; the divergence by hand, one gradient per dimension
        xt = y[:, :d].detach().requires_grad_(True)
        with torch.enable_grad():
            v = pf_ode_drift(score_fn, xt, torch.full((n,), float(t)), sde)
            div = sum(torch.autograd.grad(v[:, i].sum(), xt, retain_graph=True)[0][:, i] for i in range(d))
        return torch.cat([v.detach(), div.detach()[:, None]], 1)

    y = torch.cat([x, x.new_zeros(n, 1)], 1)
    h = 1.0 / n_steps
    for i in range(n_steps):
        t = i * h
        k1 = field(y, t); k2 = field(y + h / 2 * k1, t + h / 2)
        k3 = field(y + h / 2 * k2, t + h / 2); k4 = field(y + h * k3, t + h)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    x1 = y[:, :d]
    return -0.5 * (x1 ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi) + y[:, d]
''',
    "eps_to_score": '''
def eps_to_score(eps, std):
    std = torch.as_tensor(std, dtype=eps.dtype)
    return -eps / std.reshape(-1, *([1] * (eps.dim() - 1)))
''',
}


REWRITES["predict_vp_stationary"] = 'def predict_vp_stationary():\n    return "(A)"\n'
REWRITES["derive_vp_variance"] = (
    "def derive_vp_variance(v0, t):\n"
    "    log_m = -0.5 * (0.1 * t + 0.5 * t ** 2 * (20.0 - 0.1))\n"
    "    return 1 - torch.exp(2 * log_m) * (1 - v0)  # variance preserving: v0 = 1 stays 1\n")


# answers that hand the work to the course library's own implementation: zero, with the reason
LIBRARY_USE = {
    "eps_to_score": "from course.score import eps_to_score as lib\n\ndef eps_to_score(eps, std):\n"
                    "    return lib(eps, std)\n",
    "pc_sample": "import course.sde as s\n\ndef pc_sample(score_fn, x_T, sde, n_steps, snr, n_corrector, generator=None):\n"
                 "    return getattr(s, 'pc_' + 'sample')(score_fn, x_T, sde, n_steps, snr, n_corrector, generator)\n",
}


class TestNotebook05(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 05_score_sde."""

    notebook = "05_score_sde"
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_USE

    def test_solution_runs_in_fast_mode(self, tmp_path, monkeypatch):
        """Does the reference notebook run in fast mode (with the shipped checkpoints), and do the claims its
        text makes beside the fast run's figures hold there?"""
        import json

        from grader.workflows.execute import execute_notebook

        path = tmp_path / "metrics.jsonl"
        monkeypatch.setenv("COURSE_METRICS_FILE", str(path))
        execute_notebook(ROOT / "solutions" / "05_score_sde.ipynb", fast=True)
        m = {r["name"]: r["value"] for r in map(json.loads, path.read_text().splitlines()) if r["notebook"] == NB}
        assert m["vp_end_mean_norm"] < 0.15 and m["vp_end_cov_error"] < 0.15, m  # the VP SDE forgets the data
        assert abs(m["vp_variance_measured"] / m["vp_variance_derived"] - 1) < 0.08, m
        assert m["pf_ode_ll_error"] < 0.05, m
        assert m["mode_error_pc_100"] < m["mode_error_em_100"], m  # the corrector repairs the VE start
        assert m["langevin_weight_error"] > 2 * m["annealed_langevin_weight_error"], m


def test_wrong_answers_and_rewrites_cover_exactly_the_exercises():
    """Do the wrong answers and the rewrites cover every exercise, and no other?"""
    assert set(WRONG) == set(EXERCISES) == set(REWRITES)

"""Notebook 04 (DDIM) end to end: the reference scores full marks, the released stub zero,
realistic wrong answers lose points with the right hint, correct rewrites keep full marks, an
answer that calls the library scores zero, and the notebook runs in fast mode."""
from __future__ import annotations


from grader.paths import ROOT
from support import NotebookContract, answer_builder



fn = answer_builder("import torch\n")  # fn(name, args, body, prelude="")


AB_PREV = "ab_t = alpha_bar[t]\nab_prev = alpha_bar[t_prev] if t_prev >= 0 else torch.ones(())\n"
SIGMA = AB_PREV + "sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).clamp(min=0).sqrt()\n"
X0_HAT = "x0_hat = (xt - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()\n"
# a correct step under another name, for wrong samplers (variant i of ddim_step is wrong too)
GOOD_STEP = """
def _good_step(eps, xt, t, t_prev, alpha_bar, eta, z):
    ab_t = alpha_bar[t]
    ab_prev = alpha_bar[t_prev] if t_prev >= 0 else torch.ones(())
    sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).clamp(min=0).sqrt()
    x0_hat = (xt - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    return ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps + sigma * z
"""
SAMPLE = "model, x_T, timesteps, alpha_bar, eta=0.0, generator=None"


def sampler(pairs, eta="eta", label="t"):
    return fn("ddim_sample", SAMPLE, f"""steps = [int(s) for s in timesteps]
x = x_T
with torch.no_grad():
    for t, t_prev in {pairs}:
        eps = model(x, torch.full((x.shape[0],), {label}, dtype=torch.long))
        z = torch.randn(x.shape, generator=generator)
        x = _good_step(eps, x, t, t_prev, alpha_bar, {eta}, z)
return x""", prelude=GOOD_STEP)


def inverter(path, label="t"):
    return fn("ddim_invert", "model, x0, timesteps, alpha_bar", f"""steps = {path}
x = x0
with torch.no_grad():
    for s, t in zip(steps[:-1], steps[1:]):
        ab_s = alpha_bar[s] if s >= 0 else torch.ones(())
        ab_t = alpha_bar[t]
        eps = model(x, torch.full((x.shape[0],), {label}, dtype=torch.long))
        x0_hat = (x - (1 - ab_s).sqrt() * eps) / ab_s.sqrt()
        x = ab_t.sqrt() * x0_hat + (1 - ab_t).sqrt() * eps
return x""")


SLERP_ANGLE = """a, b = z0.flatten(1), z1.flatten(1)
theta = torch.arccos(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).clamp(-1, 1))
shape = (-1,) + (1,) * (z0.dim() - 1)
"""

# exercise -> three wrong answers: (source, text the feedback must contain)
WRONG = {
    "ddim_timesteps": [
        (fn("ddim_timesteps", "T, n_steps", "return torch.arange(0, T, T // n_steps).flip(0)"), "must start at T-1"),
        (fn("ddim_timesteps", "T, n_steps", "return torch.linspace(0, T - 1, n_steps).round().long()"), "descending"),
        (fn("ddim_timesteps", "T, n_steps", "return torch.linspace(T - 1, 1, n_steps).round().long()"),
         "last step must be 0"),
    ],
    "ddim_sigma": [
        (fn("ddim_sigma", "t, t_prev, alpha_bar, eta", AB_PREV +
            "return eta * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)"), "square root"),
        (fn("ddim_sigma", "t, t_prev, alpha_bar, eta", AB_PREV +
            "return torch.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))"), "multiplied by eta"),
        (fn("ddim_sigma", "t, t_prev, alpha_bar, eta", AB_PREV +
            "alpha_t = alpha_bar[t] / alpha_bar[t - 1]\n"
            "return eta * torch.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - alpha_t))"), "alpha_t = 1 - beta_t"),
    ],
    "ddim_step": [
        (fn("ddim_step", "eps, xt, t, t_prev, alpha_bar, eta, z", SIGMA + X0_HAT +
            "return ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma).clamp(min=0).sqrt() * eps + sigma * z"),
         "sigma must be squared"),
        (fn("ddim_step", "eps, xt, t, t_prev, alpha_bar, eta, z", SIGMA + X0_HAT +
            "return ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma ** 2).sqrt() * eps"), "sigma z is missing"),
        (fn("ddim_step", "eps, xt, t, t_prev, alpha_bar, eta, z", SIGMA.replace(
            "alpha_bar[t_prev] if t_prev >= 0 else torch.ones(())", "alpha_bar[t_prev]") + X0_HAT +
            "return ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps + sigma * z"),
         "must go to alpha_bar = 1"),
    ],
    "ddim_sample": [
        (sampler("zip(steps[:-1], steps[1:])"), "must go to alpha_bar = 1"),
        (sampler("zip(steps, steps[1:] + [-1])", eta="0.0"), "ignore eta"),
        (sampler("zip(steps, steps[1:] + [-1])", label="max(t_prev, 0)"), "current step t"),
    ],
    "ddim_invert": [
        (inverter("[-1] + [int(s) for s in timesteps]"), "reverse the timesteps"),
        (inverter("[-1] + [int(s) for s in timesteps][::-1]", label="max(s, 0)"), "the step you move to"),
        (inverter("[int(s) for s in timesteps][::-1]"), "start at the data"),
    ],
    "slerp": [
        (fn("slerp", "z0, z1, alpha", "return (1 - alpha) * z0 + alpha * z1"), "linear interpolation"),
        (fn("slerp", "z0, z1, alpha", SLERP_ANGLE +
            "w0, w1 = torch.sin(alpha * theta) / torch.sin(theta), torch.sin((1 - alpha) * theta) / torch.sin(theta)\n"
            "return w0.reshape(shape) * z0 + w1.reshape(shape) * z1"), "swapped"),
        (fn("slerp", "z0, z1, alpha", """theta = torch.arccos((z0 * z1).sum() / (z0.norm() * z1.norm()))
return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)"""), "row by row"),
    ],
    "predict_ddim_eta0_twice": [
        (fn("predict_ddim_eta0_twice", "", 'return "b"'), "multiplied by 0"),
        (fn("predict_ddim_eta0_twice", "", 'return "c"'), "the last step adds no noise"),
        (fn("predict_ddim_eta0_twice", "", 'return "same"'), "answer with one of"),
    ],
    "predict_inversion_calls": [
        (fn("predict_inversion_calls", "", "return 49"), "from the data (t = -1) to 0"),
        (fn("predict_inversion_calls", "", "return 51"), "once per step"),
        (fn("predict_inversion_calls", "", "return 100"), "only encodes"),
    ],
}

# correct answers written differently from the reference: full marks
REWRITES = {
    "ddim_timesteps": fn("ddim_timesteps", "T, n_steps",
                         "return torch.tensor([round((T - 1) * (1 - i / (n_steps - 1))) for i in range(n_steps)])"),
    "ddim_sigma": fn("ddim_sigma", "t, t_prev, alpha_bar, eta", """ab_t = alpha_bar[t]
ab_prev = alpha_bar[t_prev] if t_prev >= 0 else alpha_bar.new_tensor(1.0)
beta_jump = (1 - ab_t / ab_prev).clamp(min=0)   # the variance of the jump t_prev -> t
return eta * torch.sqrt(1 - ab_prev) / torch.sqrt(1 - ab_t) * torch.sqrt(beta_jump)"""),
    "ddim_step": fn("ddim_step", "eps, xt, t, t_prev, alpha_bar, eta, z", """ab_t = alpha_bar[t]
ab_prev = alpha_bar[t_prev] if t_prev >= 0 else alpha_bar.new_tensor(1.0)
sigma = ddim_sigma(t, t_prev, alpha_bar, eta)
# eq. 12 expanded: a multiple of x_t plus a multiple of eps
coef_xt = torch.sqrt(ab_prev / ab_t)
coef_eps = torch.sqrt((1 - ab_prev - sigma * sigma).clamp(min=0)) - torch.sqrt(ab_prev * (1 - ab_t) / ab_t)
return coef_xt * xt + coef_eps * eps + sigma * z"""),
    "ddim_sample": fn("ddim_sample", SAMPLE, """x = x_T.clone()
i = 0
while i < len(timesteps):
    t = int(timesteps[i])
    t_prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
    with torch.no_grad():
        eps = model(x, t * torch.ones(x.shape[0], dtype=torch.long))
    z = torch.randn(*x.shape, generator=generator)
    x = ddim_step(eps, x, t, t_prev, alpha_bar, eta, z)
    i += 1
return x"""),
    "ddim_invert": fn("ddim_invert", "model, x0, timesteps, alpha_bar", """up = timesteps.flip(0).tolist()  # 0, ..., T-1
eps = model(x0, torch.full((len(x0),), up[0], dtype=torch.long)).detach()
x = alpha_bar[up[0]].sqrt() * x0 + (1 - alpha_bar[up[0]]).sqrt() * eps  # from the data (alpha_bar = 1) to step 0
for s, t in zip(up[:-1], up[1:]):  # then ddim_step run upwards, eta = 0
    eps = model(x, torch.full((len(x),), t, dtype=torch.long)).detach()
    x = ddim_step(eps, x, s, t, alpha_bar, 0.0, torch.zeros_like(x))
return x"""),
    "slerp": fn("slerp", "z0, z1, alpha", """u0 = z0.reshape(len(z0), -1)
u1 = z1.reshape(len(z1), -1)
cos = torch.einsum("nd,nd->n", u0, u1) / (u0.norm(dim=-1) * u1.norm(dim=-1))
theta = torch.acos(torch.clamp(cos, -1.0, 1.0))
w0 = torch.sin((1.0 - alpha) * theta) / torch.sin(theta)
w1 = torch.sin(alpha * theta) / torch.sin(theta)
out = w0[:, None] * u0 + w1[:, None] * u1
return out.reshape(z0.shape)"""),
    "predict_ddim_eta0_twice": fn("predict_ddim_eta0_twice", "", 'return " (A) "'),
    "predict_inversion_calls": fn("predict_inversion_calls", "", "n_steps = 50\nreturn float(n_steps)"),
}


LIBRARY_USE = {
    "slerp": "from course.ddim import slerp as lib\n\ndef slerp(z0, z1, alpha):\n    return lib(z0, z1, alpha)\n",
    "ddim_sigma": "import course.ddim as d\n\ndef ddim_sigma(t, t_prev, alpha_bar, eta):\n"
                  "    return getattr(d, 'ddim_' + 'sigma')(t, t_prev, alpha_bar, eta)\n",
}


class TestNotebook04(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 04_ddim."""

    notebook = "04_ddim"
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_USE

    def test_solution_runs_in_fast_mode(self, tmp_path, monkeypatch):
        """Does the reference notebook run in fast mode (with the shipped checkpoint), and do the claims its
        text makes beside the fast run's figures hold there?"""
        metrics = fast_run_metrics(tmp_path, monkeypatch)
        assert metrics["eta0_twice_gap"] < 1e-5 < 0.1 < metrics["eta1_twice_gap"]
        assert metrics["inversion_calls_50"] == 50
        assert metrics["ddim_vs_euler_step_gap"] < 1e-4 and abs(metrics["ddim_ode_order"] - 1) < 0.3
        # like with like (issue 13 item 3): every entry is a mean over as many noise draws as the floor's data
        # samples, and none beats the floor beyond two standard errors of the difference of the two means
        repeats = metrics["sw_repeats"]
        assert repeats >= 4, metrics
        floor, floor_sd = metrics["sw_data_floor"], metrics["sw_data_floor_sd"]
        entries = {k[len("sw_"):]: v for k, v in metrics.items() if k.startswith("sw_steps")}
        assert len(entries) == 9, entries  # 10 / 20 / 50 steps x eta 0 / 0.5 / 1
        for key, value in entries.items():
            se = ((floor_sd ** 2 + metrics[f"spread_{key}"] ** 2) / repeats) ** 0.5
            assert value >= floor - 2 * se, (key, value, floor, se)
        if (ROOT / "checkpoints" / "04_ddim_eps.pt").is_file():  # the trained model: the table's shape holds
            # fast mode averages 4 draws of 4000 samples: eta = 1 over eta = 0 measured 1.41 / 1.32 at 10 / 20
            # steps (differences 9 and 4 standard errors) with the 2026-11-30 checkpoint; one shared draw of
            # 6000 gave 1.58 / 1.24. The threshold leaves room for another checkpoint of the same recipe.
            for n_steps in (10, 20):
                assert metrics[f"eta1_over_eta0_steps{n_steps}"] >= 1.15, (n_steps, metrics)
                assert metrics[f"eta_gap_resolved_steps{n_steps}"] == 1.0, (n_steps, metrics)  # beyond 2 SE
            assert metrics["inversion_rel_error_steps50"] < metrics["inversion_rel_error_steps10"]


def fast_run_metrics(tmp_path, monkeypatch) -> dict:
    """Run the reference notebook in fast mode; return the metrics it recorded, {name: value}."""
    import json

    from grader.workflows.execute import execute_notebook

    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("COURSE_METRICS_FILE", str(path))
    execute_notebook(ROOT / "solutions" / "04_ddim.ipynb", fast=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["name"]: row["value"] for row in rows if row["notebook"] == "04_ddim"}

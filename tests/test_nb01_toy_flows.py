"""Notebook 01 end to end: the reference scores full marks, the released stub zero, realistic
wrong answers lose points with the right hint, correct rewrites keep full marks, and the
notebook runs in fast mode."""
from __future__ import annotations

from support import NotebookContract, answer_builder

fn = answer_builder("import torch\nimport numpy as np\n")


STEP = "f, x, t, dt"
LOGDET = "from course.flows import batch_jacobian\nlogdet = torch.linalg.slogdet(batch_jacobian(g_inverse, y)).logabsdet\n"
# exercise -> three wrong answers: (source, text the feedback must contain)
WRONG = {
    "euler_step": [
        (fn("euler_step", STEP, "return x + dt * f(x, t + dt)"), "evaluated f at t + dt"),
        (fn("euler_step", STEP, "return x + f(x, t)"), "multiplied by dt"),
        (fn("euler_step", STEP, "return dt * f(x, t)"), "only the increment"),
    ],
    "heun_step": [
        (fn("heun_step", STEP, "k1 = f(x, t)\nk2 = f(x + dt * k1, t)\nreturn x + 0.5 * dt * (k1 + k2)"), "time t + dt"),
        (fn("heun_step", STEP, "k1 = f(x, t)\nk2 = f(x + dt * k1, t + dt)\nreturn x + dt * (k1 + k2)"), "dt / 2"),
        (fn("heun_step", STEP, "k1 = f(x, t)\nreturn x + dt * f(x + 0.5 * dt * k1, t + 0.5 * dt)"), "midpoint method"),
    ],
    "rk4_step": [
        (fn("rk4_step", STEP, """k1 = f(x, t)
k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt)
k3 = f(x + 0.5 * dt * k1, t + 0.5 * dt)
k4 = f(x + dt * k3, t + dt)
return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)"""), "k3 must use k2"),
        (fn("rk4_step", STEP, """k1 = f(x, t)
k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt)
k3 = f(x + 0.5 * dt * k2, t + 0.5 * dt)
k4 = f(x + dt * k3, t + dt)
return x + dt / 4 * (k1 + 2 * k2 + 2 * k3 + k4)"""), "divided by 6"),
        (fn("rk4_step", STEP, """k1 = f(x, t)
k2 = f(x + 0.5 * dt * k1, t)
k3 = f(x + 0.5 * dt * k2, t)
k4 = f(x + dt * k3, t)
return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)"""), "largest difference"),
    ],
    "integrate": [
        (fn("integrate", "f, x0, t0, t1, n_steps, step=None", """dt = (t1 - t0) / n_steps
x, path = x0, []
for i in range(n_steps):
    x = step(f, x, t0 + i * dt, dt)
    path.append(x)
return torch.stack(path)"""), "wrong shape"),
        (fn("integrate", "f, x0, t0, t1, n_steps, step=None", """dt = (t1 - t0) / (n_steps + 1)
x, path = x0, [x0]
for i in range(n_steps):
    x = step(f, x, t0 + i * dt, dt)
    path.append(x)
return torch.stack(path)"""), "(t1 - t0) / n_steps"),
        (fn("integrate", "f, x0, t0, t1, n_steps, step=None", """dt = (t1 - t0) / n_steps
x, path = x0, [x0]
for i in range(n_steps):
    x = step(f, x, t0, dt)
    path.append(x)
return torch.stack(path)"""), "its own time"),
    ],
    "convergence_order": [
        (fn("convergence_order", "step_sizes, errors",
            "return float(np.polyfit(np.log(errors), np.log(step_sizes), 1)[0])"), "regressed log(h) on log(error)"),
        (fn("convergence_order", "step_sizes, errors",
            "return float(np.log(errors[1] / errors[0]) / np.log(step_sizes[1] / step_sizes[0]))"), "least-squares"),
        (fn("convergence_order", "step_sizes, errors",
            "return float(np.polyfit(step_sizes, errors, 1)[0])"), "convergence_order"),
    ],
    "divergence": [
        (fn("divergence", "f, x, t", """x = x.detach().requires_grad_(True)
return torch.autograd.grad(f(x, t).sum(), x)[0].sum(1)"""), "summed every entry"),
        (fn("divergence", "f, x, t", """x = x.detach().requires_grad_(True)
return torch.autograd.grad(f(x, t)[:, 0].sum(), x)[0][:, 0]"""), "not only the first"),
        (fn("divergence", "f, x, t", """x = x.detach().requires_grad_(True)
fx = f(x, t)
return torch.stack([torch.autograd.grad(fx[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1])], 1)"""),
         "wrong shape"),
    ],
    "jacobian_logdet": [
        (fn("jacobian_logdet", "g, x", "from course.flows import batch_jacobian\nreturn torch.det(batch_jacobian(g, x))"),
         "you returned det"),
        (fn("jacobian_logdet", "g, x", "from course.flows import batch_jacobian\n"
            "return batch_jacobian(g, x).diagonal(dim1=1, dim2=2).abs().log().sum(1)"), "triangular"),
        (fn("jacobian_logdet", "g, x", "from course.flows import batch_jacobian\nreturn torch.logdet(batch_jacobian(g, x))"),
         "NaN"),
    ],
    "pushforward_log_prob": [  # a correct log-det inline: variant i of jacobian_logdet is wrong too
        (fn("pushforward_log_prob", "y, g_inverse, base_log_prob", LOGDET +
            "return base_log_prob(g_inverse(y)) - logdet"), "wrong sign"),
        (fn("pushforward_log_prob", "y, g_inverse, base_log_prob", "return base_log_prob(g_inverse(y))"), "missing"),
        (fn("pushforward_log_prob", "y, g_inverse, base_log_prob", LOGDET +
            "return base_log_prob(y) + logdet"), "g_inverse(y)"),
    ],
    "predict_euler_halving": [
        (fn("predict_euler_halving", "", 'return "b"'), "second-order"),
        (fn("predict_euler_halving", "", 'return "c"'), "does depend on dt"),
        (fn("predict_euler_halving", "", 'return "d"'), "RK4"),
    ],
    "derive_euler_rotation_radius": [
        (fn("derive_euler_rotation_radius", "r0, dt, n_steps", "return r0"), "does not keep the circle"),
        (fn("derive_euler_rotation_radius", "r0, dt, n_steps", "return r0 * (1 + dt ** 2) ** n_steps"),
         "square root"),
        (fn("derive_euler_rotation_radius", "r0, dt, n_steps", "return r0 * (1 + dt) ** n_steps"), "Pythagoras"),
    ],
}

# correct answers written differently from the reference: full marks
REWRITES = {
    "euler_step": fn("euler_step", STEP, "return torch.add(x, f(x, t), alpha=dt)"),
    "heun_step": fn("heun_step", STEP, """x_pred = x + dt * f(x, t)           # predictor
return 0.5 * (x + x_pred + dt * f(x_pred, t + dt))  # corrector"""),
    "rk4_step": fn("rk4_step", STEP, """a = [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]]   # Butcher tableau
b, c = [1 / 6, 1 / 3, 1 / 3, 1 / 6], [0.0, 0.5, 0.5, 1.0]
ks = []
for i in range(4):
    xi = x + dt * sum((aij * kj for aij, kj in zip(a[i], ks)), torch.zeros_like(x))
    ks.append(f(xi, t + c[i] * dt))
return x + dt * sum(bi * ki for bi, ki in zip(b, ks))"""),
    "integrate": fn("integrate", "f, x0, t0, t1, n_steps, step=None", """step = step or euler_step
path = torch.empty((n_steps + 1,) + tuple(x0.shape), dtype=x0.dtype)
path[0] = x0
for i in range(n_steps):
    t = t0 + (t1 - t0) * i / n_steps
    path[i + 1] = step(f, path[i], t, (t1 - t0) / n_steps)
return path"""),
    "convergence_order": fn("convergence_order", "step_sizes, errors",
                            "return np.polyfit(np.log10(step_sizes), np.log10(errors), 1)[0]"),
    "divergence": fn("divergence", "f, x, t", """jac = torch.vmap(torch.func.jacrev(lambda z: f(z[None], t)[0]))(x)  # (N, d, d)
return jac.diagonal(dim1=1, dim2=2).sum(-1)"""),
    "jacobian_logdet": fn("jacobian_logdet", "g, x", """jac = torch.vmap(torch.func.jacrev(lambda z: g(z[None])[0]))(x)
return torch.log(torch.abs(torch.det(jac)))"""),
    "predict_euler_halving": fn("predict_euler_halving", "", 'return " (A) "'),
    "derive_euler_rotation_radius": fn("derive_euler_rotation_radius", "r0, dt, n_steps",
                                       "return r0 * np.hypot(1.0, dt) ** n_steps"),
    "pushforward_log_prob": fn("pushforward_log_prob", "y, g_inverse, base_log_prob",
                               "logdet = jacobian_logdet(g_inverse, y)\nreturn logdet + base_log_prob(g_inverse(y))"),
}


LIBRARY_USE = {
    "euler_step": "from course.ode import euler_step as lib\n\ndef euler_step(f, x, t, dt):\n    return lib(f, x, t, dt)\n",
    "heun_step": "import importlib\n\ndef heun_step(f, x, t, dt):\n"
                 "    return vars(importlib.import_module('course.' + 'ode'))['heun_' + 'step'](f, x, t, dt)\n",
}


class TestNotebook01(NotebookContract):
    notebook = "01_toy_flows"
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_USE

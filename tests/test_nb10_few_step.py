"""Notebook 10 end to end: the reference scores full marks, the released stub zero, realistic wrong
answers lose points with the right hint, correct rewrites keep full marks, calling the library
scores zero, and the notebook runs in fast mode."""
from __future__ import annotations

from support import NotebookContract


def fn(name, args, body):
    return (f"import math\nimport torch\n\ndef {name}({args}):\n"
            + "\n".join("    " + line for line in body.strip().splitlines()) + "\n")


# In wrong-answer notebook i every exercise holds its wrong answer i, so the losses below must not lean
# on the learner's own teacher_step or pseudo_huber: they carry correct copies inline.
HEUN = """def heun(D, x, s, s_next):
    sc, snc = s.reshape(-1, *[1] * (x.dim() - 1)), s_next.reshape(-1, *[1] * (x.dim() - 1))
    d = (x - D(x, s)) / sc
    x_e = x + (snc - sc) * d
    return x + (snc - sc) * (d + (x_e - D(x_e, s_next)) / snc) / 2
"""
PH = """def ph(a, b, c):
    return (((a - b) ** 2).flatten(1).sum(1) + c ** 2).sqrt() - c
"""
LEVELS = """s, s_next = sigmas[n], sigmas[n + 1]
col = lambda v: v.reshape(-1, *[1] * (x0.dim() - 1))
c = 0.00054 * math.sqrt(x0[0].numel())
"""


def helpers(body):
    return HEUN + PH + body


SCALINGS = """s = sigma.reshape(-1, *[1] * (x.dim() - 1))
c_in = 1 / (s ** 2 + sigma_data ** 2).sqrt()
c_noise = sigma.log() / 4
"""
CM_SKIP_OUT = """c_skip = sigma_data ** 2 / ((s - sigma_min) ** 2 + sigma_data ** 2)
c_out = (s - sigma_min) * sigma_data / (s ** 2 + sigma_data ** 2).sqrt()
"""

WRONG = {
    "consistency_fn": [
        (fn("consistency_fn", "F, x, sigma, sigma_data, sigma_min", SCALINGS + """c_skip = sigma_data ** 2 / (s ** 2 + sigma_data ** 2)
c_out = s * sigma_data / (s ** 2 + sigma_data ** 2).sqrt()
return c_skip * x + c_out * F(c_in * x, c_noise)"""), "boundary condition"),
        (fn("consistency_fn", "F, x, sigma, sigma_data, sigma_min", SCALINGS + CM_SKIP_OUT
            + "return c_skip * x + c_out * F(x, c_noise)"), "not x itself"),
        (fn("consistency_fn", "F, x, sigma, sigma_data, sigma_min", SCALINGS + CM_SKIP_OUT
            + "return c_skip * x + c_out * F(c_in * x, sigma)"), "not sigma"),
    ],
    "pseudo_huber": [
        (fn("pseudo_huber", "a, b, c", "return (((a - b) ** 2).flatten(1).sum(1) + c ** 2).sqrt()"), "subtract c"),
        (fn("pseudo_huber", "a, b, c", "return (((a - b) ** 2).flatten(1).mean(1) + c ** 2).sqrt() - c"), "not a mean"),
        (fn("pseudo_huber", "a, b, c", "return ((((a - b) ** 2).flatten(1).sum(1) + c ** 2).sqrt() - c).mean()"),
         "one value per sample"),
    ],
    "teacher_step": [
        (fn("teacher_step", "D, x, sigma_from, sigma_to", """s = sigma_from.reshape(-1, 1)
return x + (sigma_to.reshape(-1, 1) - s) * (x - D(x, sigma_from)) / s"""), "Euler's step alone"),
        (fn("teacher_step", "D, x, sigma_from, sigma_to", """s, s2 = sigma_from.reshape(-1, 1), sigma_to.reshape(-1, 1)
d = (x - D(x, sigma_from)) / s
x_e = x + (s2 - s) * d
return x + (s2 - s) * (d + (x_e - D(x_e, sigma_from)) / s) / 2"""), "*new* level"),
        (fn("teacher_step", "D, x, sigma_from, sigma_to", """s, s2 = sigma_from.reshape(-1, 1), sigma_to.reshape(-1, 1)
d = (x - D(x, sigma_from)) / s
x_e = x + (s2 - s) * d
return x + (s - s2) * (d + (x_e - D(x_e, sigma_to)) / s2) / 2"""), "negative when denoising"),
    ],
    "cd_loss": [
        (fn("cd_loss", "f_model, f_target, D_teacher, x0, sigmas, n, noise", helpers(LEVELS + """x_next = x0 + col(s_next) * noise
target = f_target(heun(D_teacher, x_next, s_next, s), s)
return ph(f_model(x_next, s_next), target, c).mean()""")), "not detached"),
        (fn("cd_loss", "f_model, f_target, D_teacher, x0, sigmas, n, noise", helpers(LEVELS + """x_here = x0 + col(s) * noise
with torch.no_grad():
    target = f_target(heun(D_teacher, x_here, s, s_next), s_next)
return ph(f_model(x_here, s), target, c).mean()""")), "swapped"),
        (fn("cd_loss", "f_model, f_target, D_teacher, x0, sigmas, n, noise", helpers(LEVELS + """x_next = x0 + col(s_next) * noise
with torch.no_grad():
    target = f_target(heun(D_teacher, x_next, s_next, s), s)
return ((f_model(x_next, s_next) - target) ** 2).flatten(1).sum(1).mean()""")), "not the squared error"),
        (fn("cd_loss", "f_model, f_target, D_teacher, x0, sigmas, n, noise", helpers(LEVELS + """x_next = x0 + col(s_next) * noise
with torch.no_grad():
    target = f_target(heun(D_teacher, x_next, s_next, s), s)
return (((f_model(x_next, s_next) - target) ** 2).flatten(1).sum(1) + c ** 2).sqrt().mean()""")), "subtracts c"),
    ],
    "ct_loss": [
        (fn("ct_loss", "f_model, f_target, x0, sigmas, n, noise", helpers(LEVELS + """target = f_target(x0 + col(s) * noise, s)
return ph(f_model(x0 + col(s_next) * noise, s_next), target, c).mean()""")), "not detached"),
        (fn("ct_loss", "f_model, f_target, x0, sigmas, n, noise", helpers(LEVELS + """with torch.no_grad():
    target = f_target(x0 + col(s_next) * noise, s_next)
return ph(f_model(x0 + col(s) * noise, s), target, c).mean()""")), "swapped"),
        (fn("ct_loss", "f_model, f_target, x0, sigmas, n, noise", helpers(LEVELS + """x_next = x0 + col(s_next) * noise
with torch.no_grad():
    target = f_target(x_next, s_next)
return ph(f_model(x_next, s_next), target, c).mean()""")), "the *less* noisy point"),
        (fn("ct_loss", "f_model, f_target, x0, sigmas, n, noise", helpers(LEVELS + """with torch.no_grad():
    target = f_target(x0 + col(s) * noise, s)
return ph(f_model(x0 + col(s_next) * noise, s_next), target, c).sum()""")), "not the sum"),
    ],
    "consistency_sample": [
        (fn("consistency_sample", "f_model, x_T, sigmas_multistep, generator", """sig = [float(v) for v in sigmas_multistep]
x = f_model(x_T, torch.full((x_T.shape[0],), sig[0]))
for tau in sig[1:]:
    x = f_model(x, torch.full((x.shape[0],), tau))
return x"""), "re-noise before each further step"),
        (fn("consistency_sample", "f_model, x_T, sigmas_multistep, generator", """sig = [float(v) for v in sigmas_multistep]
x = f_model(x_T, torch.full((x_T.shape[0],), sig[0]))
for tau in sig[1:]:
    z = torch.randn(x.shape, generator=generator)
    x = f_model(x + (tau ** 2 - 0.002 ** 2) * z, torch.full((x.shape[0],), tau))
return x"""), "you used the variance"),
        (fn("consistency_sample", "f_model, x_T, sigmas_multistep, generator", """sig = [float(v) for v in sigmas_multistep]
x = f_model(x_T, torch.full((x_T.shape[0],), sig[0]))
for prev, tau in zip(sig[:-1], sig[1:]):
    z = torch.randn(x.shape, generator=generator)
    x = f_model(x + math.sqrt(tau ** 2 - 0.002 ** 2) * z, torch.full((x.shape[0],), prev))
return x"""), "evaluate f at the level you noised to"),
        (fn("consistency_sample", "f_model, x_T, sigmas_multistep, generator", """sig = [float(v) for v in sigmas_multistep]
x = f_model(x_T, torch.full((x_T.shape[0],), sig[0]))
for tau in sig[1:]:
    x = f_model(x + math.sqrt(tau ** 2 - 0.002 ** 2) * torch.randn(x.shape), torch.full((x.shape[0],), tau))
return x"""), "generator"),
    ],
    # questions (issue 13): other answers, each with the explanation its feedback must give
    "predict_one_step_ode": [
        (fn("predict_one_step_ode", "", 'return "a"'), "uses the slope at sigma = 80 only"),
        (fn("predict_one_step_ode", "", 'return "c"'), "removes all the noise"),
        (fn("predict_one_step_ode", "", 'return "d"'), "averages over all eight modes"),
    ],
    "predict_boundary": [
        (fn("predict_boundary", "", 'return "b"'), "EDM's denoiser"),
        (fn("predict_boundary", "", 'return "c"'), "multiplied by c_out(sigma_min)"),
        (fn("predict_boundary", "", 'return "d"'), "already is that end"),
    ],
}

# correct answers written differently from the reference: full marks
REWRITES = {
    "consistency_fn": fn("consistency_fn", "F, x, sigma, sigma_data, sigma_min", """shape = (-1,) + (1,) * (x.dim() - 1)
total = sigma ** 2 + sigma_data ** 2
c_skip = sigma_data ** 2 / (torch.square(sigma - sigma_min) + sigma_data ** 2)
c_out = (sigma - sigma_min) * sigma_data * torch.rsqrt(total)
out = F(x * torch.rsqrt(total).view(shape), 0.25 * torch.log(sigma))
return torch.addcmul(c_skip.view(shape) * x, c_out.view(shape), out)"""),
    "pseudo_huber": fn("pseudo_huber", "a, b, c", """d = torch.linalg.vector_norm((a - b).reshape(len(a), -1), dim=1)
return torch.hypot(d, torch.tensor(c, dtype=d.dtype)) - c"""),
    "teacher_step": fn("teacher_step", "D, x, sigma_from, sigma_to", """def slope(y, s):
    return (y - D(y, s)) / s.view(-1, *[1] * (y.dim() - 1))
h = (sigma_to - sigma_from).view(-1, *[1] * (x.dim() - 1))
k1 = slope(x, sigma_from)
k2 = slope(x + h * k1, sigma_to)
return x + 0.5 * h * (k1 + k2)"""),
    "cd_loss": fn("cd_loss", "f_model, f_target, D_teacher, x0, sigmas, n, noise", """hi, lo = sigmas[n + 1], sigmas[n]
x_hi = x0 + hi.view(-1, *[1] * (x0.dim() - 1)) * noise
x_lo = teacher_step(D_teacher, x_hi, hi, lo).detach()
target = f_target(x_lo, lo).detach()
c = 0.00054 * x0[0].numel() ** 0.5
return pseudo_huber(f_model(x_hi, hi), target, c).sum() / len(x0)"""),
    "ct_loss": fn("ct_loss", "f_model, f_target, x0, sigmas, n, noise", """view = lambda v: v.view(-1, *[1] * (x0.dim() - 1))
pred = f_model(x0 + view(sigmas[n + 1]) * noise, sigmas[n + 1])
target = f_target(x0 + view(sigmas[n]) * noise, sigmas[n]).detach()
return pseudo_huber(pred, target, huber_c(x0)).mean()"""),
    "consistency_sample": fn("consistency_sample", "f_model, x_T, sigmas_multistep, generator", """levels = torch.as_tensor(sigmas_multistep, dtype=x_T.dtype).tolist()
x = f_model(x_T, torch.full((len(x_T),), levels[0]))
for tau in levels[1:]:
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    x = f_model(x + (tau * tau - SIGMA_MIN * SIGMA_MIN) ** 0.5 * noise, torch.full((len(x),), tau))
return x"""),
}
REWRITES["predict_one_step_ode"] = fn("predict_one_step_ode", "", 'return "B"')
REWRITES["predict_boundary"] = fn("predict_boundary", "", 'answer = " (a) "\nreturn answer')

# answers that hand the work to the course library: zero, with a message that says why
LIBRARY_ANSWERS = {
    "consistency_fn": "from course.consistency import consistency_fn as lib\n\n"
                      "def consistency_fn(F, x, sigma, sigma_data, sigma_min):\n"
                      "    return lib(F, x, sigma, sigma_data, sigma_min)\n",
    "cd_loss": "import course.consistency as cc\n\n"
               "def cd_loss(f_model, f_target, D_teacher, x0, sigmas, n, noise):\n"
               "    return cc.cd_loss(f_model, f_target, D_teacher, x0, sigmas, n, noise)\n",
    "consistency_sample": "from course import consistency\n\n"
                          "def consistency_sample(f_model, x_T, sigmas_multistep, generator):\n"
                          "    return consistency.consistency_sample(f_model, x_T, sigmas_multistep, generator)\n",
}


class TestNotebook10(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 10_few_step."""

    notebook = "10_few_step"
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_ANSWERS

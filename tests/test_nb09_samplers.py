"""Notebook 09 end to end: the reference scores full marks, the released stub zero, realistic wrong
answers lose points with the right hint, correct rewrites keep full marks, calling the library scores
zero, and the notebook runs in fast mode."""
from __future__ import annotations

from support import NotebookContract


def fn(name, args, body, imports="import math\nimport torch\nimport torch.nn.functional as F_\n"):
    return (f"{imports}\ndef {name}({args}):\n"
            + "\n".join("    " + line for line in body.strip().splitlines()) + "\n")


COL = "col = lambda v: v.reshape(-1, *[1] * (x.dim() - 1))\n"
PRE = """total = sigma ** 2 + sigma_data ** 2
c_skip, c_out, c_in, c_noise = sigma_data ** 2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4
"""
LOSS_PRE = """x = x0 + sigma[:, None] * noise
total = sigma ** 2 + sigma_data ** 2
c_skip, c_out, c_in = sigma_data ** 2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt()
D = c_skip[:, None] * x + c_out[:, None] * F(c_in[:, None] * x, sigma.log() / 4)
w = total / (sigma * sigma_data) ** 2
"""
BATCH = "b = lambda s: torch.full((x.shape[0],), float(s), dtype=x.dtype)\n"
DPM = """old, h_last = None, None
for i in range(len(sigmas) - 1):
    s, s2 = float(sigmas[i]), float(sigmas[i + 1])
    den = D(x, torch.full((x.shape[0],), s))
    if s2 == 0:
        x = den
        break
    h = math.log(s / s2)
    d_hat = den
    if old is not None:
        r = RATIO
        d_hat = (1 + 1 / (2 * r)) * den - 1 / (2 * r) * old
    x = (s2 / s) * x - math.expm1(-HH) * d_hat
    old, h_last = OLD, h
return x
"""
HEUN = BATCH + """for i in range(len(sigmas) - 1):
    s, s2 = float(sigmas[i]), float(sigmas[i + 1])
    d = (x - D(x, b(s))) / s
    x_e = x + (s2 - s) * d
    LAST
    d2 = (XE - D(XE, b(s2))) / s2
    x = x + (s2 - s) * 0.5 * (d + d2)
return x
"""
VP = """log_sig = 0.5 * torch.log((1 - alpha_bar) / alpha_bar)
def D(x, sigma):
    t = (sigma.log()[:, None] - log_sig[None]).abs().argmin(1)
    s = sigma[:, None]
    return BODY
return D
"""
VP_OK = "x - s * eps_model(x / (1 + s ** 2).sqrt(), t)"

WRONG = {
    "karras_sigmas": [
        (fn("karras_sigmas", "n, sigma_min, sigma_max, rho=7.0", """i = torch.arange(n, dtype=torch.float64)
s = (sigma_max ** rho + i / (n - 1) * (sigma_min ** rho - sigma_max ** rho)) ** (1 / rho)
return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).float()"""), "sigma^(1/rho)"),
        (fn("karras_sigmas", "n, sigma_min, sigma_max, rho=7.0", """i = torch.arange(n, dtype=torch.float64)
return ((sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho).float()"""),
         "final 0"),
        (fn("karras_sigmas", "n, sigma_min, sigma_max, rho=7.0", """i = torch.arange(n, dtype=torch.float64)
s = (sigma_max ** (1 / rho) + i / n * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).float()"""), "i / (n - 1)"),
    ],
    "x0_to_eps": [
        (fn("x0_to_eps", "xt, x0, alpha, sigma", "return (xt - x0) / sigma[:, None]"), "subtract alpha * x0"),
        (fn("x0_to_eps", "xt, x0, alpha, sigma", "return (xt - alpha[:, None] * x0) * sigma[:, None]"), "divide by sigma"),
        (fn("x0_to_eps", "xt, x0, alpha, sigma", "return (xt - alpha[:, None] ** 2 * x0) / sigma[:, None]"), "alpha^2"),
    ],
    "eps_to_x0": [
        (fn("eps_to_x0", "xt, eps, alpha, sigma", "return (xt - sigma[:, None] * eps) * alpha[:, None]"), "divide by alpha"),
        (fn("eps_to_x0", "xt, eps, alpha, sigma", "return (xt + sigma[:, None] * eps) / alpha[:, None]"), "sign"),
        (fn("eps_to_x0", "xt, eps, alpha, sigma", "return (xt - eps) / alpha[:, None]"), "scaled by sigma"),
    ],
    "v_target": [
        (fn("v_target", "x0, eps, alpha, sigma", "return alpha[:, None] * x0 - sigma[:, None] * eps"), "swapped"),
        (fn("v_target", "x0, eps, alpha, sigma", "return alpha[:, None] * eps + sigma[:, None] * x0"), "minus sign"),
        (fn("v_target", "x0, eps, alpha, sigma", "return eps - x0"), "weighs eps by alpha"),
    ],
    "v_to_x0": [
        (fn("v_to_x0", "xt, v, alpha, sigma", """a, s = alpha[:, None], sigma[:, None]
return (a * xt + s * v) / (a ** 2 + s ** 2)"""), "wrong sign"),
        (fn("v_to_x0", "xt, v, alpha, sigma", "return alpha[:, None] * xt - sigma[:, None] * v"), "alpha^2 + sigma^2"),
        (fn("v_to_x0", "xt, v, alpha, sigma", "return (xt - sigma[:, None] * v) / alpha[:, None]"), "v is not eps"),
    ],
    "edm_precond": [
        (fn("edm_precond", "sigma, sigma_data", PRE.replace("sigma_data ** 2 / total,", "sigma_data ** 2 / (sigma + sigma_data ** 2),", 1)
            + "return c_skip, c_out, c_in, c_noise"), "sigma^2 belongs"),
        (fn("edm_precond", "sigma, sigma_data", PRE + "return c_skip, c_out, c_in, sigma.log()"), "1/4"),
        (fn("edm_precond", "sigma, sigma_data", PRE + "return c_skip, sigma * sigma_data / total, c_in, c_noise"),
         "square root"),
    ],
    "edm_denoiser": [
        (fn("edm_denoiser", "F, x, sigma, sigma_data", PRE + COL + "return col(c_skip) * x + col(c_out) * F(x, c_noise)"),
         "c_in * x"),
        (fn("edm_denoiser", "F, x, sigma, sigma_data", PRE + COL + "return col(c_skip) * x + col(c_out) * F(col(c_in) * x, sigma)"),
         "c_noise = ln(sigma) / 4"),
        (fn("edm_denoiser", "F, x, sigma, sigma_data", PRE + COL + "return col(c_out) * x + col(c_skip) * F(col(c_in) * x, c_noise)"),
         "swapped"),
    ],
    "edm_loss": [
        (fn("edm_loss", "F, x0, sigma, noise, sigma_data", LOSS_PRE + "return (w[:, None] * (D - x0) ** 2).mean()"), "sum the squared"),
        (fn("edm_loss", "F, x0, sigma, noise, sigma_data", LOSS_PRE + "return ((D - x0) ** 2).sum(1).mean()"), "lambda(sigma)"),
        (fn("edm_loss", "F, x0, sigma, noise, sigma_data", LOSS_PRE + "return (((D - x0) ** 2).sum(1) / w).mean()"), "divided by it"),
    ],
    "euler_sampler": [
        (fn("euler_sampler", "D, x, sigmas", BATCH + """for s, s2 in zip(sigmas[:-1], sigmas[1:]):
    x = x + (s2 - s) * (D(x, b(s)) - x) / s
return x"""), "opposite sign"),
        (fn("euler_sampler", "D, x, sigmas", BATCH + """for s, s2 in zip(sigmas[:-2], sigmas[1:-1]):
    x = x + (s2 - s) * (x - D(x, b(s))) / s
return x"""), "final sigma = 0"),
        (fn("euler_sampler", "D, x, sigmas", BATCH + """for s, s2 in zip(sigmas[:-1], sigmas[1:]):
    x = x + (s2 - s) * (x - D(x, b(s2))) / s
return x"""), "sigma = 0"),
    ],
    "heun_sampler": [
        (fn("heun_sampler", "D, x, sigmas, s_churn=0.0", HEUN.replace("LAST", "pass").replace("XE", "x_e")), "sigma = 0"),
        (fn("heun_sampler", "D, x, sigmas, s_churn=0.0", BATCH + """for s, s2 in zip(sigmas[:-1], sigmas[1:]):
    x = x + (s2 - s) * (x - D(x, b(s))) / s
return x"""), "Euler's method"),
        (fn("heun_sampler", "D, x, sigmas, s_churn=0.0", HEUN.replace("LAST", "if s2 == 0:\n        x = x_e\n        continue")
            .replace("XE", "x")), "Euler point"),
    ],
    "dpmpp_2m_sampler": [
        (fn("dpmpp_2m_sampler", "D, x, sigmas", DPM.replace("RATIO", "h / h_last").replace("HH", "h").replace("OLD", "den")),
         "inverted"),
        (fn("dpmpp_2m_sampler", "D, x, sigmas", DPM.replace("RATIO", "h_last / h").replace("HH", "h").replace("OLD", "None")),
         "first order"),
        (fn("dpmpp_2m_sampler", "D, x, sigmas", DPM.replace("RATIO", "h_last / h").replace("HH", "-h").replace("OLD", "den")),
         "opposite sign"),
    ],
    "vp_eps_to_denoiser": [
        (fn("vp_eps_to_denoiser", "eps_model, alpha_bar", VP.replace("BODY", "x - s * eps_model(x, t)")), "x / sqrt(1 + sigma^2)"),
        (fn("vp_eps_to_denoiser", "eps_model, alpha_bar", VP.replace("BODY", "x + s * eps_model(x / (1 + s ** 2).sqrt(), t)")),
         "minus"),
        (fn("vp_eps_to_denoiser", "eps_model, alpha_bar", VP.replace("0.5 * torch.log((1 - alpha_bar) / alpha_bar)",
                                                                     "0.5 * torch.log(1 - alpha_bar)").replace("BODY", VP_OK)),
         "sqrt(1 - alpha_bar_t)"),
    ],
    # questions (issue 13): other answers, each with the explanation its feedback must give
    "predict_heun_nfe": [
        (fn("predict_heun_nfe", "", "return 20"), "the last one included"),
        (fn("predict_heun_nfe", "", "return 10"), "Euler's count"),
        (fn("predict_heun_nfe", "", "return 21"), "10 steps, not 11"),
    ],
    "predict_ddim_is_euler": [
        (fn("predict_ddim_is_euler", "", 'return "a"'), "same expression rearranged"),
        (fn("predict_ddim_is_euler", "", 'return "c"'), "first-order method"),
        (fn("predict_ddim_is_euler", "", 'return "d"'), "deterministic"),
    ],
}

REWRITES = {
    "karras_sigmas": fn("karras_sigmas", "n, sigma_min, sigma_max, rho=7.0", """out = torch.zeros(n + 1)
for i in range(n):
    frac = i / (n - 1)
    out[i] = ((1 - frac) * sigma_max ** (1 / rho) + frac * sigma_min ** (1 / rho)) ** rho
return out"""),
    "x0_to_eps": fn("x0_to_eps", "xt, x0, alpha, sigma", "return xt.sub(alpha.view(-1, 1) * x0).div(sigma.view(-1, 1))"),
    "eps_to_x0": fn("eps_to_x0", "xt, eps, alpha, sigma", "return (xt - sigma.unsqueeze(1) * eps) / alpha.unsqueeze(1)"),
    "v_target": fn("v_target", "x0, eps, alpha, sigma", "return torch.einsum('b,bd->bd', alpha, eps) - torch.einsum('b,bd->bd', sigma, x0)"),
    "v_to_x0": fn("v_to_x0", "xt, v, alpha, sigma", """# solve [alpha, -sigma; sigma, alpha] [x0; eps] = [xt; v] for x0
a, s = alpha[:, None], sigma[:, None]
det = a * a + s * s
return (a * xt - s * v) / det"""),
    "edm_precond": fn("edm_precond", "sigma, sigma_data", """r = torch.rsqrt(sigma.pow(2) + sigma_data ** 2)
return (sigma_data * r) ** 2, sigma * sigma_data * r, r, 0.25 * torch.log(sigma)"""),
    "edm_denoiser": fn("edm_denoiser", "F, x, sigma, sigma_data", PRE + COL + """inner = F(x * col(c_in), c_noise)
return torch.lerp(inner * col(c_out), x, col(c_skip)) + col(c_skip) * inner * col(c_out)"""),
    "edm_loss": fn("edm_loss", "F, x0, sigma, noise, sigma_data", LOSS_PRE + "return torch.mean(torch.sum(w[:, None] * (D - x0) ** 2, dim=1))"),
    "euler_sampler": fn("euler_sampler", "D, x, sigmas", """sig = sigmas.tolist()
for k in range(len(sig) - 1):
    denoised = D(x, torch.full((len(x),), sig[k]))
    x = denoised + (sig[k + 1] / sig[k]) * (x - denoised)   # DDIM's form of the same step
return x"""),
    "heun_sampler": fn("heun_sampler", "D, x, sigmas, s_churn=0.0", """N = len(sigmas) - 1
slope = lambda y, s: (y - D(y, torch.full((len(y),), s))) / s
for i in range(N):
    s, s2 = sigmas[i].item(), sigmas[i + 1].item()
    if s_churn:
        g = min(s_churn / N, 2 ** 0.5 - 1)
        x = x + (((s * (1 + g)) ** 2 - s ** 2) ** 0.5) * torch.randn_like(x)
        s = s * (1 + g)
    d = slope(x, s)
    if s2 > 0:
        x = x + (s2 - s) * (d + slope(x + (s2 - s) * d, s2)) / 2
    else:
        x = x + (s2 - s) * d
return x"""),
    "dpmpp_2m_sampler": fn("dpmpp_2m_sampler", "D, x, sigmas", """lam = lambda s: -math.log(s)
prev = None
for i in range(len(sigmas) - 1):
    s, s2 = float(sigmas[i]), float(sigmas[i + 1])
    d = D(x, s * torch.ones(x.shape[0]))
    if s2 == 0:
        return d
    h = lam(s2) - lam(s)
    if prev is None:
        use = d
    else:
        h0, d0 = prev
        use = d + (d - d0) * h / (2 * h0)
    x = (s2 / s) * x + (1 - math.exp(-h)) * use
    prev = (h, d)
return x"""),
    "vp_eps_to_denoiser": fn("vp_eps_to_denoiser", "eps_model, alpha_bar", """sig_t = ((1 - alpha_bar) / alpha_bar).sqrt()
def D(x, sigma):
    t = torch.stack([(sig_t.log() - s.log()).abs().argmin() for s in sigma])
    ab = 1 / (1 + sigma ** 2)
    eps = eps_model(x * ab.sqrt()[:, None], t)
    return x - sigma[:, None] * eps
return D"""),
}
REWRITES["predict_heun_nfe"] = fn("predict_heun_nfe", "", "n_steps = 10\nreturn 2.0 * n_steps - 1")
REWRITES["predict_ddim_is_euler"] = fn("predict_ddim_is_euler", "", 'return " (B) "')

LIBRARY_ANSWERS = {
    "karras_sigmas": fn("karras_sigmas", "n, sigma_min, sigma_max, rho=7.0",
                        "from course.edm import karras_sigmas as k\nreturn k(n, sigma_min, sigma_max, rho)"),
    "edm_precond": "import course.edm as e\n\ndef edm_precond(sigma, sigma_data):\n    return e.edm_precond(sigma, sigma_data)\n",
    "heun_sampler": fn("heun_sampler", "D, x, sigmas, s_churn=0.0",
                       "import importlib\nlib = importlib.import_module('course.' + 'samplers')\n"
                       "return lib.sample_loop(getattr(lib, 'heun' + '_step'), D, x, sigmas)"),
    "dpmpp_2m_sampler": fn("dpmpp_2m_sampler", "D, x, sigmas",
                           "from course import samplers\nreturn samplers.dpmpp_2m_sampler(D, x, sigmas)"),
}


class TestNotebook09(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 09_samplers."""

    notebook = "09_samplers"
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_ANSWERS

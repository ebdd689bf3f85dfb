#!/usr/bin/env python
"""The course's 2D recipes side by side with the packages a learner would pick instead (issue 14).

On one 2D job (default: the eight-Gaussian mixture of notebooks 06 and 09), on this machine, in one run,
each recipe trains in chunks; after every chunk its samples are scored by the sliced Wasserstein distance
to fresh data, divided by the data floor (the same distance between two data samples of the same size).
The table reports the *training* time each recipe needs to reach ``--target`` x the floor (sampling and
scoring time excluded), and its ratio to the course's fastest recipe.

    python benchmarks/bench_peers.py                    # every recipe, up to --cap seconds of training each
    python benchmarks/bench_peers.py --quick            # small budgets, to see that everything runs
    python benchmarks/bench_peers.py --only edm_dpmpp torchcfm

Recipes
- course ``ddpm_ddim`` (notebooks 03-04): TimeMLP eps-model, the simple loss, linear schedule T = 1000,
  Adam 2e-3, batch 512, EMA 0.999; sampled by DDIM (eta = 0), 50 steps.
- course ``rectified_flow`` (06): TimeMLP velocity, conditional flow matching, same optimiser; Euler, 50 steps.
- course ``edm_dpmpp`` (09): ``course.edm.EDMMLP`` with EDM preconditioning and loss (ln sigma ~ N(P_mean, 1.2^2), P_mean
  scaled to sigma_data); DPM-Solver++(2M) on 16 Karras levels (16 NFE).
- ``torchcfm`` (optional: ``pip install torchcfm``): its README / 2D tutorial recipe: ``ConditionalFlowMatcher``,
  ``torchcfm.models.MLP(w=64, time_varying=True)``, Adam 1e-3, batch 256, source N(0, I); sampled with
  torchdyn's dopri5 when torchdyn is installed (as the tutorial), else Euler with 100 steps. sigma = 0 (the
  tutorial's 0.1 blurs the samples by that much, and it never reaches the target on a sharp mixture).
- ``smalldiffusion`` (optional: ``pip install smalldiffusion``): its README toy recipe: ``TimeInputMLP``
  ((16, 128, 128, 128, 128, 16)), ``ScheduleLogLinear(N=200, sigma_min=0.005, sigma_max=10)``,
  ``training_loop`` (AdamW 1e-3, batch 2048), sampled by ``samples(..., sample_sigmas(20), gam=2)``.
A peer that is not installed (or does not import) is reported as skipped, with the reason.
All recipes run on the CPU with the same number of threads (``COURSE_THREADS``, default 1).
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from course import data2d, metrics  # noqa: E402
from course.ddim import ddim_sample, ddim_timesteps  # noqa: E402
from course.ddpm import ddpm_loss  # noqa: E402
from course.edm import EDMMLP, GMMDenoiser, edm_denoiser, edm_loss, karras_sigmas, lognormal_sigmas  # noqa: E402
from course.nets import TimeMLP  # noqa: E402
from course.rectified_flow import cfm_loss, sample_ode  # noqa: E402
from course.samplers import dpmpp_2m_sampler  # noqa: E402
from course.schedules import make_schedule  # noqa: E402
from course.training import EMA  # noqa: E402


class Skip(Exception):
    """A peer that cannot run here (not installed, or fails to import)."""


def adam_step(net, opt, loss, ema=None):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    if ema is not None:
        ema.update(net)


# ---------------------------------------------------------------------------------------------
# Recipes: each returns (train(n_steps), sample(n) -> (n, 2) tensor)
# ---------------------------------------------------------------------------------------------
def course_ddpm_ddim(sample_data, gen):
    T = 1000
    _, alpha_bar = make_schedule(T, "linear")
    net = TimeMLP(dim=2, hidden=128, depth=3, emb_dim=32)
    ema, opt = EMA(net, 0.999), torch.optim.Adam(net.parameters(), lr=2e-3)

    def train(n):
        net.train()
        for _ in range(n):
            x0 = sample_data(512)
            t = torch.randint(0, T, (512,), generator=gen)
            adam_step(net, opt, ddpm_loss(net, x0, t, torch.randn(x0.shape, generator=gen), alpha_bar), ema)

    def sample(n):
        with torch.no_grad():
            return ddim_sample(ema.model, torch.randn(n, 2, generator=gen), ddim_timesteps(T, 50), alpha_bar)

    return train, sample


def course_rectified_flow(sample_data, gen):
    net = TimeMLP(dim=2, hidden=128, depth=3, emb_dim=32, time_scale=1000.0)
    ema, opt = EMA(net, 0.999), torch.optim.Adam(net.parameters(), lr=2e-3)

    def train(n):
        net.train()
        for _ in range(n):
            x1 = sample_data(512)
            adam_step(net, opt, cfm_loss(net, torch.randn(x1.shape, generator=gen), x1, torch.rand(512, generator=gen)), ema)

    def sample(n):
        with torch.no_grad():
            return sample_ode(ema.model, torch.randn(n, 2, generator=gen), 50)

    return train, sample


def course_edm_dpmpp(sample_data, gen, sigma_data):
    net = EDMMLP(dim=2, hidden=128, depth=3)
    ema, opt = EMA(net, 0.999), torch.optim.Adam(net.parameters(), lr=2e-3)
    p_mean = -1.2 + math.log(sigma_data / 0.5)
    sigmas = karras_sigmas(16, 0.01, 80.0)

    def train(n):
        net.train()
        for _ in range(n):
            x0 = sample_data(512)
            sigma = lognormal_sigmas(512, p_mean, 1.2, generator=gen)
            adam_step(net, opt, edm_loss(net, x0, sigma, torch.randn(x0.shape, generator=gen), sigma_data), ema)

    def sample(n):
        D = lambda x, s: edm_denoiser(ema.model, x, s, sigma_data)
        return dpmpp_2m_sampler(D, 80.0 * torch.randn(n, 2, generator=gen), sigmas)

    return train, sample


def peer_torchcfm(sample_data, gen):
    try:
        from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
        from torchcfm.models.models import MLP
    except Exception as exc:  # not installed, or a missing dependency (POT)
        raise Skip(f"torchcfm does not import ({type(exc).__name__}: {exc}); pip install torchcfm") from None
    model = MLP(dim=2, w=64, time_varying=True)
    opt = torch.optim.Adam(model.parameters())
    fm = ConditionalFlowMatcher(sigma=0.0)
    try:
        from torchdyn.core import NeuralODE
    except Exception:
        NeuralODE = None

    def train(n):
        model.train()
        for _ in range(n):
            x1 = sample_data(256)
            x0 = torch.randn(x1.shape, generator=gen)
            t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
            vt = model(torch.cat([xt, t[:, None]], dim=-1))
            loss = torch.mean((vt - ut) ** 2)
            opt.zero_grad(); loss.backward(); opt.step()

    def sample(n):
        model.eval()
        x = torch.randn(n, 2, generator=gen)
        with torch.no_grad():
            if NeuralODE is not None:
                class Wrapped(torch.nn.Module):
                    def forward(self, t, x, *args, **kwargs):
                        return model(torch.cat([x, t.expand(x.shape[0], 1)], dim=-1))

                node = NeuralODE(Wrapped(), solver="dopri5", sensitivity="adjoint", atol=1e-4, rtol=1e-4)
                return node.trajectory(x, t_span=torch.linspace(0, 1, 100))[-1]
            for i in range(100):
                t = torch.full((n, 1), i / 100)
                x = x + model(torch.cat([x, t], dim=-1)) / 100
        return x

    return train, sample


def _import_smalldiffusion():
    try:
        return importlib.import_module("smalldiffusion")
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision" and not str(exc).startswith("No module named 'torchvision"):
            raise Skip(f"smalldiffusion does not import ({exc}); pip install smalldiffusion") from None
    except Exception as exc:
        if "torchvision" not in str(exc):
            raise Skip(f"smalldiffusion does not import ({type(exc).__name__}: {exc})") from None
    # smalldiffusion imports torchvision only for its image data sets; a 2D job never calls it
    print("  (smalldiffusion: torchvision is unavailable; a stub stands in for torchvision.transforms, "
          "which only its image data helpers use)")
    for name in [m for m in sys.modules if m.startswith("smalldiffusion") or m.startswith("torchvision")]:
        del sys.modules[name]
    stub = types.ModuleType("torchvision")
    stub.transforms = types.ModuleType("torchvision.transforms")

    def _any_transform(name):  # Compose, ToTensor, ...: referenced at import, never called on a 2D job
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None

    stub.transforms.__getattr__ = _any_transform
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = stub, stub.transforms
    try:
        return importlib.import_module("smalldiffusion")
    except Exception as exc:
        raise Skip(f"smalldiffusion does not import ({type(exc).__name__}: {exc})") from None


def peer_smalldiffusion(sample_data, gen):
    sd = _import_smalldiffusion()
    from torch.utils.data import DataLoader, Dataset

    class Points(Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    loader = DataLoader(Points(sample_data(200_000)), batch_size=2048, shuffle=True)
    model = sd.TimeInputMLP(hidden_dims=(16, 128, 128, 128, 128, 16))
    schedule = sd.ScheduleLogLinear(N=200, sigma_min=0.005, sigma_max=10)
    trainer = sd.training_loop(loader, model, schedule, epochs=10 ** 9, lr=1e-3)

    def train(n):
        for _ in range(n):
            next(trainer)  # runs the previous batch's backward and step, then draws the next loss

    def sample(n):
        *_, x0 = sd.samples(model, schedule.sample_sigmas(20), gam=2, batchsize=n)
        return x0

    return train, sample


RECIPES = {
    "ddpm_ddim": ("course", course_ddpm_ddim),
    "rectified_flow": ("course", course_rectified_flow),
    "edm_dpmpp": ("course", course_edm_dpmpp),
    "torchcfm": ("peer", peer_torchcfm),
    "smalldiffusion": ("peer", peer_smalldiffusion),
}


def run(name, args, mixture, floor, x_ref):
    kind, make = RECIPES[name]
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    sample_data = lambda n: mixture.sample(n, gen)
    try:
        if name == "edm_dpmpp":
            train, sample = make(sample_data, gen, GMMDenoiser.from_mixture(mixture).sigma_data)
        else:
            train, sample = make(sample_data, gen)
    except Skip as exc:
        return {"recipe": name, "kind": kind, "skipped": str(exc)}
    seconds, steps, history, reached = 0.0, 0, [], None
    while seconds < args.cap:
        start = time.perf_counter()
        train(args.chunk)
        seconds += time.perf_counter() - start
        steps += args.chunk
        ratio = metrics.sliced_wasserstein(sample(args.n_eval), x_ref, generator=torch.Generator().manual_seed(2)) / floor
        history.append((steps, round(seconds, 1), round(ratio, 3)))
        if ratio <= args.target:
            reached = seconds
            break
    return {"recipe": name, "kind": kind, "seconds_to_target": reached, "steps": steps, "best": min(h[2] for h in history),
            "history": history}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", choices=list(RECIPES), help="recipes to run (default: all)")
    p.add_argument("--target", type=float, default=1.2, help="quality to reach, in multiples of the data floor")
    p.add_argument("--cap", type=float, default=180.0, help="training seconds allowed per recipe")
    p.add_argument("--chunk", type=int, default=250, help="training steps between evaluations")
    p.add_argument("--n-eval", type=int, default=4000, help="samples per evaluation (and for the floor)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny budgets: check that every recipe runs")
    args = p.parse_args(argv)
    if args.quick:
        args.cap, args.chunk, args.n_eval = 3.0, 50, 500
    threads = int(os.environ.get("COURSE_THREADS", "1"))
    torch.set_num_threads(threads)
    mixture = data2d.eight_gaussians_mixture()
    x_ref = mixture.sample(args.n_eval, torch.Generator().manual_seed(1))
    floor_gen = torch.Generator().manual_seed(3)
    floor = metrics.data_floor(lambda n: mixture.sample(n, floor_gen), args.n_eval, generator=torch.Generator().manual_seed(2))
    print(f"job: eight Gaussians (2D), target {args.target} x floor (floor {floor:.4f} at n = {args.n_eval}), "
          f"{threads} thread(s), training cap {args.cap:.0f} s per recipe, evaluation every {args.chunk} steps")
    rows = []
    for name in args.only or list(RECIPES):
        print(f"- {name} ...", flush=True)
        row = run(name, args, mixture, floor, x_ref)
        rows.append(row)
        if "skipped" in row:
            print(f"  SKIPPED: {row['skipped']}")
        else:
            print(f"  history (steps, train s, SW/floor): {row['history']}")
    course_times = [r["seconds_to_target"] for r in rows if r.get("kind") == "course" and r.get("seconds_to_target")]
    fastest = min(course_times) if course_times else None
    print(f"\n{'recipe':16s} {'kind':7s} {'train s to target':>18s} {'steps':>7s} {'best SW/floor':>14s} {'x fastest course':>17s}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['recipe']:16s} {r['kind']:7s} {'skipped (not installed or not importable)':>40s}")
            continue
        t = r["seconds_to_target"]
        t_text = f"{t:.1f}" if t else f"> {args.cap:.0f} (cap)"
        ratio = f"{t / fastest:.2f}" if (t and fastest) else ("> " + f"{args.cap / fastest:.1f}" if fastest else "-")
        print(f"{r['recipe']:16s} {r['kind']:7s} {t_text:>18s} {r['steps']:7d} {r['best']:14.3f} {ratio:>17s}")
    return rows


if __name__ == "__main__":
    main()

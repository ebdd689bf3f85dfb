"""Notebook 08 end to end: the reference scores full marks, the released stub zero, realistic
wrong answers lose points with the right hint, correct rewrites keep full marks, an answer that
calls the library scores zero, and the notebook runs in fast mode.

Wrong answers are the reference's own answer cells with one realistic edit each, so every
variant is otherwise correct code."""
from __future__ import annotations

import json
import time

from grader.engine.grade import grade_notebook
from support import SOLUTIONS, NotebookContract, assert_full, edited, grade_with, reference_answers

NB = "08_latent_unet"
SOLUTION = SOLUTIONS / f"{NB}.ipynb"


REF = reference_answers(NB)


def edit(exercise: str, *replacements: tuple[str, str]) -> str:
    """The reference answer of ``exercise`` with each (old, new) replaced (old must occur)."""
    return edited(REF, exercise, *replacements)


EMB_RETURN = "return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)"
RES_EMB = "h = h + self.emb_proj(F.silu(emb))[:, :, None, None]"
RES_RETURN = "return self.skip(x) + h"
ATTN_RETURN = "return x + self.proj(out.reshape(B, C, H, W))"
UNET_CAT = "h = up(block(torch.cat([h, kept.pop()], dim=1), emb))"
KL_LINE = "kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).flatten(1).sum(dim=1)  # (B,)"

# exercise -> three (or more) wrong answers: (source, text the feedback must contain)
WRONG = {
    "timestep_embedding": [
        (edit("timestep_embedding", (EMB_RETURN, "return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)")),
         "halves are swapped"),
        (edit("timestep_embedding", ("* i / half)", "* i / dim)")), "not i / dim"),
        (edit("timestep_embedding", (EMB_RETURN, "return torch.stack([torch.cos(args), torch.sin(args)], dim=-1)"
                                                 ".reshape(len(t), dim)")), "interleaved"),
    ],
    "ResBlock": [
        (edit("ResBlock", (RES_EMB, "h = h + 0 * self.emb_proj(F.silu(emb)).mean()")), "embedding is ignored"),
        (edit("ResBlock", (RES_RETURN, "return h")), "residual connection is missing"),
        (edit("ResBlock", (RES_EMB, "h = h + self.emb_proj(F.silu(emb)).mean(1)[:, None, None, None]")),
         "normalised away"),
        # a fourth variant, graded in a notebook of its own: it breaks the UNet built from it too
        (edit("ResBlock", ("nn.Conv2d(in_ch, out_ch, 3, padding=1)", "nn.Conv2d(in_ch, out_ch, 3)")), "pad by one pixel"),
    ],
    "Attention2d": [
        (edit("Attention2d", (ATTN_RETURN, "return self.proj(out.reshape(B, C, H, W))")),
         "residual connection is missing"),
        (edit("Attention2d", ("self.qkv = nn.Conv2d(ch, 3 * ch, 1)", "self.qkv = nn.Conv2d(ch, 3 * ch, 1)\n"
                              "        self.local = nn.Conv2d(ch, ch, 3, padding=1)"),
              ("        B, C, H, W = x.shape\n", "        return x + self.proj(self.local(self.norm(x)))\n"
                                                  "        B, C, H, W = x.shape\n")),
         "a convolution only sees its neighbours"),
        (edit("Attention2d",
              ("q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, d, H * W).unbind(1)",
               "q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, d, H * W).permute(1, 2, 3, 0, 4)"
               ".reshape(3, self.heads, d, B * H * W).unbind(0)"),
              ("out.reshape(B, C, H, W)", "out.reshape(self.heads, d, B, H * W).permute(2, 0, 1, 3).reshape(B, C, H, W)")),
         "stay within each image"),
        # a fourth variant: the softmax over the queries (differs from attention by up to about 0.1)
        (edit("Attention2d", ("@ k / math.sqrt(d), dim=-1)", "@ k / math.sqrt(d), dim=-2)")), "over the queries"),
    ],
    "UNet": [
        (edit("UNet", ("ResBlock(ch + chs[i], chs[i], emb_dim)", "ResBlock(ch, chs[i], emb_dim)"),
              (UNET_CAT, "kept.pop()\n            h = up(block(h, emb))")), "skip connections are missing"),
        (edit("UNet", ("emb = emb + self.label_emb(y)", "emb = emb + 0 * self.label_emb(y).mean()")),
         "label is ignored"),
        (edit("UNet", ("emb = self.time_mlp(timestep_embedding(t, self.emb_dim))",
                       "emb = self.time_mlp(timestep_embedding(torch.zeros_like(t), self.emb_dim))")),
         "time is ignored"),
    ],
    "reparameterize": [
        (edit("reparameterize", ("torch.exp(0.5 * logvar)", "logvar")), "not the standard deviation"),
        (edit("reparameterize", ("torch.exp(0.5 * logvar)", "torch.exp(logvar)")), "is the variance"),
        (edit("reparameterize", ("return mu + ", "return ")), "add the mean"),
    ],
    "vae_loss": [
        (edit("vae_loss", ("return (rec + beta * kl).mean()", "return (rec - beta * kl).mean()")), "wrong sign"),
        (edit("vae_loss", ("return (rec + beta * kl).mean()", "return rec.mean() + beta * kl.sum()")),
         "summed over the batch"),
        (edit("vae_loss", ("rec = ((x - x_rec) ** 2).flatten(1).sum(dim=1)", "rec = F.mse_loss(x_rec, x)")),
         "mean over all elements"),
    ],
    "latent_scale": [
        (edit("latent_scale", ("float(1.0 / latents.std())", "float(latents.std())")), "not std"),
        (edit("latent_scale", ("float(1.0 / latents.std())", "float(1.0 / latents.var())")), "1 / variance"),
        (edit("latent_scale", ("float(1.0 / latents.std())", "float(1.0 / latents.pow(2).mean().sqrt())")),
         "root-mean-square"),
    ],
    "derive_attention_params": [
        (edit("derive_attention_params", ("return 2 * ch + ", "return ")), "a scale and a shift per channel"),
        (edit("derive_attention_params", ("(3 * ch * ch + 3 * ch) + (ch * ch + ch)", "3 * ch * ch + 3 * ch")),
         "projection (C to C channels) is missing"),
        (edit("derive_attention_params", ("return 2 * ch + (3 * ch * ch + 3 * ch) + (ch * ch + ch)",
                                          "return heads * (2 * ch + (3 * ch * ch + 3 * ch) + (ch * ch + ch))")),
         "heads add no weights"),
    ],
    "predict_compression": [
        (edit("predict_compression", ("return 8", "return 4")), "factor per side"),
        (edit("predict_compression", ("return 8", "return 16")), "2 channels"),
        (edit("predict_compression", ("return 8", "return 2")), "halve H and W twice"),
    ],
}

REWRITES = {
    "timestep_embedding": """import math
import torch

def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    exponents = torch.arange(0, half).float() / half
    angles = t.reshape(-1, 1).to(torch.float32) * max_period ** (-exponents)
    return torch.cat((angles.cos(), angles.sin()), 1)
""",
    "ResBlock": """import torch
from torch import nn

class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, emb_dim):
        super().__init__()
        self.first = nn.Sequential(nn.GroupNorm(1, in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.to_shift = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_ch))
        self.second = nn.Sequential(nn.GroupNorm(1, out_ch), nn.SiLU(), nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x, emb):
        h = self.first(x) + self.to_shift(emb).view(x.shape[0], -1, 1, 1)
        h = self.second(h)
        return h + (x if self.shortcut is None else self.shortcut(x))
""",
    "Attention2d": """import torch
import torch.nn.functional as F
from torch import nn

class Attention2d(nn.Module):
    def __init__(self, ch, heads=1):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(1, ch)
        self.to_q, self.to_k, self.to_v = nn.Linear(ch, ch), nn.Linear(ch, ch), nn.Linear(ch, ch)
        self.out = nn.Linear(ch, ch)

    def forward(self, x):
        B, C, H, W = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        split = lambda z: z.reshape(B, H * W, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, HW, d)
        att = F.scaled_dot_product_attention(split(self.to_q(seq)), split(self.to_k(seq)), split(self.to_v(seq)))
        att = att.transpose(1, 2).reshape(B, H * W, C)
        return x + self.out(att).transpose(1, 2).reshape(B, C, H, W)
""",
    "UNet": """import torch
import torch.nn.functional as F
from torch import nn

class UNet(nn.Module):
    def __init__(self, in_ch, base_ch, ch_mult, emb_dim, n_classes=None):
        super().__init__()
        self.emb_dim, self.n_classes = emb_dim, n_classes
        self.t_net = nn.Sequential(nn.Linear(emb_dim, 2 * emb_dim), nn.GELU(), nn.Linear(2 * emb_dim, emb_dim))
        self.classes = nn.Embedding(n_classes + 1, emb_dim) if n_classes is not None else None
        widths = [base_ch * m for m in ch_mult]
        self.inp = nn.Conv2d(in_ch, widths[0], 3, padding=1)
        self.enc = nn.ModuleList()
        prev = widths[0]
        for w in widths:
            self.enc.append(ResBlock(prev, w, emb_dim))
            prev = w
        self.middle = nn.ModuleList([ResBlock(prev, prev, emb_dim), Attention2d(prev, heads=1),
                                     ResBlock(prev, prev, emb_dim)])
        self.dec = nn.ModuleList()
        for w in reversed(widths):
            self.dec.append(ResBlock(prev + w, w, emb_dim))
            prev = w
        self.head = nn.Conv2d(prev, in_ch, 1)

    def forward(self, x, t, y=None):
        emb = self.t_net(timestep_embedding(t, self.emb_dim))
        if self.classes is not None:
            y = torch.full((len(x),), self.n_classes, device=x.device) if y is None else y
            emb = emb + self.classes(y)
        h, skips = self.inp(x), []
        for i, block in enumerate(self.enc):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            h = block(h, emb)
            skips.append(h)
        h = self.middle[2](self.middle[1](self.middle[0](h, emb)), emb)
        for i, block in enumerate(self.dec):
            s = skips.pop()
            if h.shape[-1] != s.shape[-1]:
                h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
            h = block(torch.cat([s, h], 1), emb)
        return self.head(F.silu(h))
""",
    "reparameterize": "def reparameterize(mu, logvar, eps):\n    return eps * logvar.exp().sqrt() + mu\n",
    "vae_loss": """import torch.nn.functional as F

def vae_loss(x, x_rec, mu, logvar, beta):
    batch = x.shape[0]
    reconstruction = F.mse_loss(x_rec, x, reduction="sum") / batch
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / batch
    return reconstruction + beta * kl
""",
    "latent_scale": "def latent_scale(latents):\n    return 1 / latents.flatten().std(unbiased=False)\n",
    "derive_attention_params": "def derive_attention_params(ch, heads):\n"
                               "    norm, qkv, proj = 2 * ch, 3 * ch * (ch + 1), ch * (ch + 1)\n"
                               "    return norm + qkv + proj\n",
    "predict_compression": "def predict_compression():\n    return (16 * 16 * 1) / (2 * 4 * 4)\n",
}


LIBRARY_USE = {  # subclassing or calling the course library's implementation
    "UNet": "import course.unet\n\nclass UNet(course.unet.UNet):\n    pass\n",
    "vae_loss": "from course import autoencoder as ae\n\ndef vae_loss(x, x_rec, mu, logvar, beta):\n"
                "    return ae.vae_loss(x, x_rec, mu, logvar, beta)\n",
}


class TestNotebook08(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 08_latent_unet. ResBlock has a
    4th wrong answer, so the contract grades four variant notebooks."""

    notebook = NB
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_USE

    def test_solution_runs_in_fast_mode(self, tmp_path, monkeypatch):
        """The contract's test, within five minutes, and the claims the text makes at its figures: in the
        same training time, the latent model is faster per step and draws better digits than the pixel
        model (judge accuracy and Fréchet distance)."""
        metrics_file = tmp_path / "metrics.jsonl"
        monkeypatch.setenv("COURSE_METRICS_FILE", str(metrics_file))
        start = time.perf_counter()
        super().test_solution_runs_in_fast_mode()
        assert time.perf_counter() - start < 300
        m = {r["name"]: r["value"] for r in map(json.loads, metrics_file.read_text().splitlines())}
        assert m["latent_ms_per_step"] < m["pixel_ms_per_step"], m
        assert m["latent_cfg_judge_accuracy"] > m["pixel_cfg_judge_accuracy"], m
        assert m["latent_cfg_frechet"] < m["pixel_cfg_frechet"], m


def test_reference_scores_all_13_points():
    """Is the reference notebook worth 13 points (12 for the exercises, 2 x 0.5 for the questions), and does it
    get all of them?"""
    report = grade_notebook(SOLUTION, seed=7)
    assert report["score"] == report["max_score"] == 13


def test_calling_the_library_costs_only_those_exercises():
    """With library calls in UNet and vae_loss, does an exercise that doesn't call it keep full marks?"""
    report = grade_with(SOLUTION, LIBRARY_USE)
    assert_full(report, "latent_scale")

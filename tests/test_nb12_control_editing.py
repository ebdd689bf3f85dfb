"""Notebook 12 end to end: the reference scores full marks, the released stub zero, realistic wrong
answers lose points with the right hint, correct rewrites keep full marks, an answer that calls the
library scores zero, and the notebook runs in fast mode.

Wrong answers are the reference's own answer cells with one realistic edit each, so every variant
is otherwise correct code. Three wrong answers per exercise, so the contract grades three variant
notebooks (the hidden tests also hint at: inversion ignoring w_invert, merge() without the update,
the target velocity reversed)."""
from __future__ import annotations


from support import SOLUTIONS, NotebookContract, edited, reference_answers

NB = "12_control_editing"
SOLUTION = SOLUTIONS / f"{NB}.ipynb"


REF = reference_answers(NB)


def edit(exercise: str, *replacements: tuple[str, str]) -> str:
    """The reference answer of ``exercise`` with each (old, new) replaced (old must occur)."""
    return edited(REF, exercise, *replacements)


SD_START = "t_start = int(round(float(t0) * len(alpha_bar))) - 1"
INV_UP = "x = ddim_step(guided(x, t_model, y_src, w_invert), x, t, t_next, alpha_bar, 0.0, None)"
INV_DOWN = "x = ddim_step(guided(x, t_model, y_tgt, w_edit), x, t, t_prev, alpha_bar, 0.0, None)"
ZC_INIT = "        nn.init.zeros_(self.conv.weight)\n        nn.init.zeros_(self.conv.bias)\n"
LORA_A = "self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))"
LORA_B = "self.B = nn.Parameter(torch.zeros(base.out_features, rank))"
DB_RETURN = "return err[:n].mean() + prior_weight * err[n:].mean()"

WRONG = {
    "sdedit": [
        (edit("sdedit", (SD_START, "t_start = len(alpha_bar) - 1 if float(t0) > 0 else -1")),
         "whatever t0"),
        (edit("sdedit", ("    with torch.no_grad():\n        for t, t_prev", "    for t, t_prev in []:\n        for t, t_prev")),
         "returned the noised guide"),
        (edit("sdedit", ("x = ab.sqrt() * x_guide + (1 - ab).sqrt() * noise", "x = x_guide + (1 - ab).sqrt() * noise")),
         "scaled by sqrt(alpha_bar)"),
    ],
    "invert_then_edit": [
        (edit("invert_then_edit", ("up, down = [-1] + steps[::-1], steps + [-1]", "up, down = steps + [-1], steps + [-1]")),
         "wrong direction"),
        (edit("invert_then_edit", (INV_UP, INV_UP.replace("y_src", "y_tgt"))), "inverted under the target label"),
        (edit("invert_then_edit", (INV_UP, INV_UP.replace("w_invert", "w_edit")),
              (INV_DOWN, INV_DOWN.replace("w_edit", "w_invert"))), "swapped"),
    ],
    "ZeroConv": [
        (edit("ZeroConv", (ZC_INIT, "")), "is not zero"),
        # ControlAdapter's variants use the learner's ZeroConv: a frozen one (#1) sits beside an unfrozen
        # base, where ControlAdapter's own mistake still shows
        (edit("ZeroConv", (ZC_INIT, ZC_INIT + "        self.conv.requires_grad_(False)\n")), "trainable"),
        (edit("ZeroConv", ("nn.Conv2d(ch_in, ch_out, 1)", "nn.Conv2d(ch_in, ch_out, 1, bias=False)"),
              ("        nn.init.zeros_(self.conv.bias)\n", "")), "with a bias"),
    ],
    "ControlAdapter": [
        (edit("ControlAdapter", ("self.zero_levels = nn.ModuleList([ZeroConv(ch, ch) for ch in level_chs])",
                                 "self.zero_levels = nn.ModuleList([nn.Conv2d(ch, ch, 1) for ch in level_chs])")),
         "changed the base's output"),
        (edit("ControlAdapter", ("        for p in base.parameters():\n            p.requires_grad_(False)\n", "")),
         "not frozen"),
        (edit("ControlAdapter", ("h = self.copy_stem(x) + self.zero_cond(cond)", "h = self.copy_stem(x)")),
         "never reaches"),
    ],
    "LoRALinear": [
        (edit("LoRALinear", (LORA_B, "self.B = nn.Parameter(0.1 * torch.randn(base.out_features, rank))")),
         "must equal the base"),
        (edit("LoRALinear", (LORA_A, "self.A = nn.Parameter(torch.zeros(rank, base.in_features))")),
         "no gradient"),
        (edit("LoRALinear", ("self.scale = alpha / rank", "self.scale = alpha")), "not alpha"),
    ],
    "inject_lora": [
        (edit("inject_lora", ("    for p in model.parameters():\n        p.requires_grad_(False)\n", "")),
         "only LoRA's A and B train"),
        (edit("inject_lora", ('and any(name == n or name.endswith("." + n) for n in names)]',
                              "and name in names]")), "adapted the modules"),
        (edit("inject_lora", ('and any(name == n or name.endswith("." + n) for n in names)]', "]")),
         "adapted the modules"),
    ],
    "dreambooth_loss": [
        (edit("dreambooth_loss", (DB_RETURN, "return err[:n].mean() - prior_weight * err[n:].mean()")), "subtracted"),
        (edit("dreambooth_loss", (DB_RETURN, "return prior_weight * err[:n].mean() + err[n:].mean()")),
         "multiplies the prior term"),
        (edit("dreambooth_loss", (DB_RETURN, "return err.mean()")), "whole batch"),
    ],
    "in_context_tokens": [
        (edit("in_context_tokens", ("torch.cat([target_tokens, context_tokens], dim=1)",
                                    "torch.cat([context_tokens, target_tokens], dim=1)")), "come first"),
        (edit("in_context_tokens", ("torch.ones(L_c, dtype=torch.long)", "torch.zeros(L_c, dtype=torch.long)")),
         "frame offset"),
        (edit("in_context_tokens", ("index = torch.cat([torch.arange(L_t), torch.arange(L_c)])",
                                    "index = torch.arange(L_t + L_c)")), "restarts at 0"),
    ],
    "predict_sdedit_tradeoff": [
        ('def predict_sdedit_tradeoff():\n    return "b"\n', "more noise cannot keep the sketch"),
        ('def predict_sdedit_tradeoff():\n    return "c"\n', "wrong way round"),
        ('def predict_sdedit_tradeoff():\n    return "d"\n', "x_t0 itself changes"),
    ],
    "derive_lora_params": [
        ("def derive_lora_params(d_in, d_out, rank):\n    return d_in * d_out\n", "frozen weight"),
        ("def derive_lora_params(d_in, d_out, rank):\n    return rank * d_in * d_out\n", "copies of the full matrix"),
        ("def derive_lora_params(d_in, d_out, rank):\n    return rank * (d_in + d_out) + d_out\n", "bias is frozen"),
        ("def derive_lora_params(d_in, d_out, rank):\n    return 2 * rank * max(d_in, d_out)\n", "different shapes"),
    ],
}

REWRITES = {
    "sdedit": """import torch
from course.ddim import ddim_walk

def sdedit(D_or_model, x_guide, t0, sampler_args):
    ab_all = sampler_args["alpha_bar"]
    start = round(t0 * ab_all.shape[0]) - 1
    if start == -1:
        return x_guide
    ab = ab_all[start]
    xt = torch.sqrt(ab) * x_guide + torch.sqrt(1 - ab) * sampler_args["noise"]
    below = [int(s) for s in sampler_args["timesteps"].tolist() if s < start]
    return ddim_walk(D_or_model, xt, [start, *below, -1], ab_all)
""",
    "invert_then_edit": """from course.ddim import ddim_invert
from course.guidance import guided_sample

def invert_then_edit(model, x, y_src, y_tgt, w_invert, w_edit, timesteps, alpha_bar):
    src = lambda z, t: (1 + w_invert) * model(z, t, y_src) - w_invert * model(z, t)
    x_T = ddim_invert(src, x, timesteps, alpha_bar)
    return guided_sample(model, x_T, y_tgt, w_edit, timesteps, alpha_bar)
""",
    "ZeroConv": """import torch
import torch.nn.functional as F
from torch import nn

class ZeroConv(nn.Module):
    def __init__(self, ch_in, ch_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(ch_out, ch_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(ch_out))

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias)
""",
    "ControlAdapter": """import copy
import torch
from torch import nn

class ControlAdapter(nn.Module):
    def __init__(self, base, cond_ch):
        super().__init__()
        trainable = nn.ModuleDict(dict(stem=base.stem, down=base.down_blocks, ds=base.downsamples, mid=base.mid1))
        self.trainable = copy.deepcopy(trainable).requires_grad_(True)
        self.frozen = [base.requires_grad_(False)]  # a list: not a submodule of the adapter
        chs = [b.conv2.out_channels for b in base.down_blocks]
        self.hint = ZeroConv(cond_ch, base.stem.out_channels)
        self.outs = nn.ModuleList([ZeroConv(c, c) for c in chs + chs[-1:]])

    def forward(self, x, t, cond, y=None):
        base, c = self.frozen[0], self.trainable
        emb = base.embed(t, y, x.shape[0], x.device)
        g = c["stem"](x) + self.hint(cond)
        h = base.stem(x)
        skips = []
        for i in range(len(base.down_blocks)):
            g = c["down"][i](g, emb)
            h = base.down_blocks[i](h, emb)
            skips.append(h + self.outs[i](g))
            g, h = c["ds"][i](g), base.downsamples[i](h)
        h = base.mid2(base.mid_attn(base.mid1(h, emb)), emb) + self.outs[-1](c["mid"](g, emb))
        for block, up in zip(base.up_blocks, base.upsamples):
            h = up(block(torch.cat([h, skips.pop()], 1), emb))
        return base.out(h)
""",
    "LoRALinear": """import math
import torch
import torch.nn.functional as F
from torch import nn

class LoRALinear(nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        self.base, self.rank, self.alpha = base, rank, alpha
        self.A = nn.Parameter(torch.empty(rank, base.in_features))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def delta(self):
        return (self.alpha / self.rank) * self.B @ self.A

    def forward(self, x):
        return F.linear(x, self.base.weight + self.delta(), self.base.bias)

    def merge(self):
        out = nn.Linear(self.base.in_features, self.base.out_features)
        out.weight = nn.Parameter(self.base.weight.detach() + self.delta().detach())
        out.bias = nn.Parameter(self.base.bias.detach().clone())
        return out
""",
    "inject_lora": """from torch import nn

def inject_lora(model, rank, alpha, names):
    model.requires_grad_(False)

    def visit(module, prefix):
        for child_name, child in list(module.named_children()):
            full = prefix + child_name
            if isinstance(child, nn.Linear) and any(full.split('.')[-len(n.split('.')):] == n.split('.') for n in names):
                setattr(module, child_name, LoRALinear(child, rank, alpha))
            else:
                visit(child, full + '.')

    visit(model, '')
    return model
""",
    "dreambooth_loss": """import torch
import torch.nn.functional as F

def dreambooth_loss(model, x_inst, c_inst, x_prior, c_prior, prior_weight, noise, t):
    n = len(x_inst)
    def term(x, c, eps, tt):
        s = tt.view(-1, 1, 1, 1)
        return F.mse_loss(model(s * x + (1 - s) * eps, tt, c), x - eps)
    return term(x_inst, c_inst, noise[:n], t[:n]) + prior_weight * term(x_prior, c_prior, noise[n:], t[n:])
""",
    "in_context_tokens": """import torch

def in_context_tokens(target_tokens, context_tokens):
    n_t, n_c = target_tokens.size(1), context_tokens.size(1)
    positions = torch.tensor([[0, i] for i in range(n_t)] + [[1, j] for j in range(n_c)], dtype=torch.long)
    return torch.cat((target_tokens, context_tokens), 1), positions
""",
}

REWRITES["predict_sdedit_tradeoff"] = "def predict_sdedit_tradeoff():\n    return '(A)'\n"
REWRITES["derive_lora_params"] = ("import torch\nimport torch.nn as nn\n\ndef derive_lora_params(d_in, d_out, rank):\n"
                                  "    a, b = nn.Parameter(torch.zeros(rank, d_in)), nn.Parameter(torch.zeros(d_out, rank))\n"
                                  "    return a.numel() + b.numel()\n")

LIBRARY_USE = {
    "sdedit": "from course.editing import sdedit as lib\n\ndef sdedit(D_or_model, x_guide, t0, sampler_args):\n"
              "    return lib(D_or_model, x_guide, t0, sampler_args)\n",
    "LoRALinear": "import course.lora\n\nclass LoRALinear(course.lora.LoRALinear):\n    pass\n",
    "dreambooth_loss": "from course import personalize\n\n"
                       "def dreambooth_loss(model, x_inst, c_inst, x_prior, c_prior, prior_weight, noise, t):\n"
                       "    return personalize.dreambooth_loss(model, x_inst, c_inst, x_prior, c_prior, prior_weight, noise, t)\n",
}


class TestNotebook12(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 12_control_editing."""

    notebook = NB
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_USE


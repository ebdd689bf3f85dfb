"""Notebook 11 end to end: the reference scores full marks, the released stub zero, realistic
wrong answers lose points with the right hint, correct rewrites keep full marks, an answer that
calls the library scores zero, and the notebook runs in fast mode.

Wrong answers are the reference's own answer cells with one realistic edit each (or a whole
answer where one edit cannot express the mistake), so every variant is otherwise correct code."""
from __future__ import annotations

import pytest
import torch

from grader.engine.grade import grade_notebook
from support import SOLUTIONS, NotebookContract, assert_full, grade_with, edited, reference_answers

NB = "11_transformers_text"
SOLUTION = SOLUTIONS / f"{NB}.ipynb"


REF = reference_answers(NB)


def edit(exercise: str, *replacements: tuple[str, str]) -> str:
    """The reference answer of ``exercise`` with each (old, new) replaced (old must occur)."""
    return edited(REF, exercise, *replacements)


PATCH_PERMUTE = "x = x.permute(0, 2, 4, 1, 3, 5)  # (N, gh, gw, C, p, p)"
UNPATCH_PERMUTE = "x = x.permute(0, 3, 1, 4, 2, 5)  # (N, C, gh, p, gw, p)"
MODULATE = "return x * (1 + scale[:, None, :]) + shift[:, None, :]"
ZERO_INIT = ("        nn.init.zeros_(self.adaLN[1].weight)  # adaLN-Zero: every gate starts at 0\n"
             "        nn.init.zeros_(self.adaLN[1].bias)\n")
CROSS_MASK = "scores = scores.masked_fill(pad_mask[:, None, None, :], float(\"-inf\"))"
JOINT_MASK_CAT = "key_mask = torch.cat([torch.zeros(B, N, dtype=torch.bool, device=x.device), c_mask], dim=1)"

JOINT_SEPARATE = '''import math
import torch
from torch import nn

class JointAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv_x = nn.Linear(dim, 3 * dim)
        self.qkv_c = nn.Linear(dim, 3 * dim)
        self.proj_x = nn.Linear(dim, dim)
        self.proj_c = nn.Linear(dim, dim)

    def _attend(self, qkv, mask=None):
        B, T, D3 = qkv.shape
        d = D3 // 3 // self.heads
        q, k, v = (z.reshape(B, T, self.heads, d).transpose(1, 2) for z in qkv.chunk(3, dim=-1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        if mask is not None:
            scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D3 // 3)

    def forward(self, x, c, c_mask=None):
        # each modality attends to itself only: no joint attention
        return self.proj_x(self._attend(self.qkv_x(x))), self.proj_c(self._attend(self.qkv_c(c), c_mask))
'''

QUESTION = "def {name}():\n    return {answer}\n"

# exercise -> three (or more) wrong answers: (source, text the feedback must contain)
WRONG = {
    "patchify": [
        (edit("patchify", (PATCH_PERMUTE, "x = x.permute(0, 2, 4, 3, 5, 1)")), "channel first"),
        (edit("patchify", (PATCH_PERMUTE, "x = x.permute(0, 4, 2, 1, 3, 5)")), "column-major"),
        (edit("patchify", (PATCH_PERMUTE, "pass")), "plain reshape"),
    ],
    "unpatchify": [
        (edit("unpatchify", (UNPATCH_PERMUTE, "pass")), "plain reshape"),
        (edit("unpatchify", (UNPATCH_PERMUTE, "x = x.permute(0, 3, 2, 4, 1, 5)")), "undo patchify"),
        (edit("unpatchify", ("x = tokens.reshape(N, H // p, W // p, C, p, p)",
                             "x = tokens.reshape(N, H // p, W // p, p, p, C)"),
              (UNPATCH_PERMUTE, "x = x.permute(0, 5, 1, 3, 2, 4)")), "undo patchify"),
    ],
    "modulate": [
        (edit("modulate", (MODULATE, "return x * (1 + shift[:, None, :]) + scale[:, None, :]")), "swapped"),
        (edit("modulate", (MODULATE, "return x * scale[:, None, :] + shift[:, None, :]")), "scale = 0"),
        # a DiTBlock/DiT variant sits at each index < 3, and they call the learner's modulate: a modulate that
        # crashes them (per token) goes to index 3, where they are the reference's
        (edit("modulate", (MODULATE, "return (x + shift[:, None, :]) * (1 + scale[:, None, :])")),
         "added before the scaling"),
        (edit("modulate", (MODULATE, "return x * (1 + scale) + shift")), "per token, not per sample"),
    ],
    "DiTBlock": [
        (edit("DiTBlock", (ZERO_INIT, "")), "gates start at 0"),
        (edit("DiTBlock", (ZERO_INIT, ZERO_INIT + "        nn.init.zeros_(self.attn.proj.weight)\n"
                                                  "        nn.init.zeros_(self.attn.proj.bias)\n"
                                                  "        nn.init.zeros_(self.mlp[2].weight)\n"
                                                  "        nn.init.zeros_(self.mlp[2].bias)\n")),
         "only the modulation layer starts at zero"),
        (edit("DiTBlock", ("self.adaLN(c).chunk(6, dim=-1)", "self.adaLN(torch.zeros_like(c)).chunk(6, dim=-1)")),
         "c is ignored"),
    ],
    "DiT": [
        (edit("DiT", ("c = c + self.y_embed(y)", "c = c + 0 * self.y_embed(y)")), "label is ignored"),
        (edit("DiT", ("c = self.t_embed(timestep_embedding(t, self.dim))",
                      "c = self.t_embed(timestep_embedding(torch.zeros_like(t), self.dim))")), "time is ignored"),
        (edit("DiT", ("if self.y_embed is not None:", "if self.y_embed is not None and y is not None:")),
         "null label"),
    ],
    "tokenize": [
        (edit("tokenize", ("pad_mask = torch.ones(", "pad_mask = torch.zeros("),
              ("pad_mask[i, j] = False", "pad_mask[i, j] = True")), "inverted"),
        (edit("tokenize", ('vocab.get(word, vocab["<unk>"])', "vocab.get(word, 0)")), "got the padding id"),
        (edit("tokenize", ("ids[i, j] = ", "ids[i, max_len - len(words) + j] = "),
              ("pad_mask[i, j] = False", "pad_mask[i, max_len - len(words) + j] = False")), "pad at the end"),
    ],
    "CrossAttention": [
        (edit("CrossAttention", (CROSS_MASK, CROSS_MASK.replace("pad_mask[:, None", "~pad_mask[:, None"))), "inverted"),
        (edit("CrossAttention", ("k = self.to_k(ctx)", "k = self.to_k(x)"),
              ("self.to_k = nn.Linear(ctx_dim, dim)", "self.to_k = nn.Linear(dim, dim)")),
         "only the queries from the image"),
        (edit("CrossAttention", ("if pad_mask is not None:", "if False:")), "still get attention weight"),
        (edit("CrossAttention", ("out = scores.softmax(dim=-1) @ v", "out = scores.softmax(dim=-2) @ v")),
         "over the wrong axis"),
    ],
    "JointAttention": [
        (JOINT_SEPARATE, "attends only to itself"),
        (edit("JointAttention", (JOINT_MASK_CAT, JOINT_MASK_CAT.replace(", c_mask]", ", ~c_mask]"))), "inverted"),
        (edit("JointAttention", ("if c_mask is not None:", "if False:")), "padded text tokens are attended to"),
        (edit("JointAttention", ("out = (scores.softmax(dim=-1) @ v)", "out = (scores.softmax(dim=-2) @ v)")),
         "over the wrong axis"),
    ],
    "predict_patch_tokens": [
        (QUESTION.format(name="predict_patch_tokens", answer="4"), "patches along one side"),
        (QUESTION.format(name="predict_patch_tokens", answer="64"), "number of pixels"),
        (QUESTION.format(name="predict_patch_tokens", answer="8 * 8 // 2"), "divide by p twice"),
    ],
    "predict_cfg_w0": [
        (QUESTION.format(name="predict_cfg_w0", answer='"a"'), "drops out entirely"),
        (QUESTION.format(name="predict_cfg_w0", answer='"c"'), "always sum to 1"),
        (QUESTION.format(name="predict_cfg_w0", answer='"d"'), "carries noise to digits"),
    ],
}

REWRITES = {
    "patchify": """import torch.nn.functional as F

def patchify(x, p):
    return F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # (N, C p p, T) -> (N, T, C p p)
""",
    "unpatchify": """import torch.nn.functional as F

def unpatchify(tokens, p, C, H, W):
    return F.fold(tokens.transpose(1, 2), output_size=(H, W), kernel_size=p, stride=p)
""",
    "modulate": """import torch

def modulate(x, shift, scale):
    return torch.addcmul(shift.unsqueeze(1), x, scale.unsqueeze(1) + 1)
""",
    "DiTBlock": """import torch
from torch import nn

class DiTBlock(nn.Module):
    def __init__(self, dim, heads, cond_dim):
        super().__init__()
        self.ln_a = nn.LayerNorm(dim, elementwise_affine=False)
        self.ln_b = nn.LayerNorm(dim, elementwise_affine=False)
        self.att = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))
        self.to_mod = nn.Linear(cond_dim, 6 * dim)
        self.to_mod.weight.data.zero_()
        self.to_mod.bias.data.zero_()

    def forward(self, x, c):
        mods = self.to_mod(nn.functional.silu(c)).unsqueeze(1)  # (B, 1, 6 dim)
        b1, s1, g1, b2, s2, g2 = mods.chunk(6, dim=-1)
        h = self.ln_a(x) * (1 + s1) + b1
        x = x + g1 * self.att(h, h, h, need_weights=False)[0]
        h = self.ln_b(x) * (1 + s2) + b2
        return x + g2 * self.ff(h)
""",
    "DiT": """import torch
from torch import nn

class DiT(nn.Module):
    def __init__(self, in_ch, image_size, patch, dim, depth, heads, n_classes=None):
        super().__init__()
        self.p, self.d, self.k = patch, dim, n_classes
        self.embed = nn.Conv2d(in_ch, dim, patch, stride=patch)  # a linear map of each (C, p, p) patch
        self.pos = nn.Parameter(0.02 * torch.randn((image_size // patch) ** 2, dim))
        self.time = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))
        self.labels = nn.Embedding(n_classes + 1, dim) if n_classes is not None else None
        self.stack = nn.ModuleList(DiTBlock(dim, heads, dim) for _ in range(depth))
        self.head = FinalLayer(dim, dim, in_ch * patch * patch)

    def forward(self, x, t, y=None):
        B, C, H, W = x.shape
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos  # (B, T, dim), row-major
        c = self.time(timestep_embedding(t, self.d))
        if self.labels is not None:
            c = c + self.labels(torch.full((B,), self.k, device=x.device) if y is None else y)
        for block in self.stack:
            h = block(h, c)
        return unpatchify(self.head(h, c), self.p, C, H, W)
""",
    "tokenize": """import torch

def tokenize(captions, vocab, max_len):
    rows = [[vocab[w] if w in vocab else vocab["<unk>"] for w in c.split()][:max_len] for c in captions]
    ids = torch.tensor([r + [vocab["<pad>"]] * (max_len - len(r)) for r in rows], dtype=torch.long).reshape(-1, max_len)
    lengths = torch.tensor([len(r) for r in rows])
    return ids, torch.arange(max_len)[None, :] >= lengths[:, None]
""",
    "CrossAttention": """import torch
import torch.nn.functional as F
from torch import nn

class CrossAttention(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.h = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(ctx_dim, 2 * dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x, ctx, pad_mask=None):
        B, N, D = x.shape
        split = lambda z: z.reshape(B, z.shape[1], self.h, D // self.h).transpose(1, 2)
        k, v = self.kv(ctx).chunk(2, dim=-1)
        keep = None if pad_mask is None else ~pad_mask[:, None, None, :]  # True = may attend
        out = F.scaled_dot_product_attention(split(self.q(x)), split(k), split(v), attn_mask=keep)
        return self.o(out.transpose(1, 2).reshape(B, N, D))
""",
    "JointAttention": """import torch
import torch.nn.functional as F
from torch import nn

class JointAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv_x, self.qkv_c = nn.Linear(dim, 3 * dim), nn.Linear(dim, 3 * dim)
        self.proj_x, self.proj_c = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x, c, c_mask=None):
        B, N, D = x.shape
        seq = torch.cat([self.qkv_x(x), self.qkv_c(c)], 1)
        q, k, v = seq.reshape(B, seq.shape[1], 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        keep = None
        if c_mask is not None:
            keep = torch.cat([torch.ones(B, N, dtype=torch.bool), ~c_mask], 1)[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(B, -1, D)
        return self.proj_x(out[:, :N]), self.proj_c(out[:, N:])
""",
}

REWRITES["predict_patch_tokens"] = "def predict_patch_tokens():\n    return (8 // 2) ** 2\n"
REWRITES["predict_cfg_w0"] = "def predict_cfg_w0():\n    return ' (B) '\n"

LIBRARY_USE = {  # subclassing or calling the course library's implementation
    "DiT": "import course.dit\n\nclass DiT(course.dit.DiT):\n    pass\n",
    "modulate": "from course import dit as lib\n\ndef modulate(x, shift, scale):\n    return lib.modulate(x, shift, scale)\n",
}


class TestNotebook11(NotebookContract):
    """The standard contract (support.NotebookContract) for notebook 11_transformers_text."""

    notebook = NB
    WRONG, REWRITES, LIBRARY_USE = WRONG, REWRITES, LIBRARY_USE


def test_reference_scores_all_14_points():
    """Is the reference notebook worth 14 points (13 for the exercises, 2 x 0.5 for the questions), and
    does it get all of them (another seed)?"""
    report = grade_notebook(SOLUTION, seed=11)
    assert report["score"] == report["max_score"] == 14
    assert_full(report)


def test_calling_the_library_costs_only_those_exercises():
    """With library calls in DiT and modulate, does an exercise that doesn't call them keep full marks?"""
    report = grade_with(SOLUTION, LIBRARY_USE)
    assert_full(report, "tokenize")


@pytest.mark.parametrize("name", ["11_dit", "11_dit_adaln", "11_dit_in_context", "11_unet", "11_text_dit"])
def test_checkpoints_fit_the_library_models(name):
    """Does each checkpoint the notebook saves load into the library's model of the same configuration
    (so notebook 12 can reuse them), and is it small?"""
    from course import captions as cap
    from course.dit import DiT, TextDiT
    from course.pretrained import checkpoint_path, load
    from course.unet import UNet

    path = checkpoint_path(name)
    if not path.is_file():
        pytest.skip(f"{name}.pt not made yet (python scripts/train_checkpoints.py --only {NB})")
    model = {
        "11_dit": lambda: DiT(1, 8, 2, 48, 4, 4, n_classes=10),
        "11_dit_adaln": lambda: DiT(1, 8, 2, 48, 4, 4, n_classes=10, conditioning="adaln"),
        "11_dit_in_context": lambda: DiT(1, 8, 2, 48, 4, 4, n_classes=10, conditioning="in_context"),
        "11_unet": lambda: UNet(1, 20, (1, 2), 48, n_classes=10),
        "11_text_dit": lambda: TextDiT(1, 8, 2, 64, 4, 4, len(cap.VOCAB), cap.MAX_LEN, attention="cross"),
    }[name]()
    record, reason = load(name, model)
    assert reason is None, reason
    assert path.stat().st_size < 3 * 2 ** 20
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 1, 8, 8), torch.tensor([10, 900]), *(
            [torch.tensor([3, 4])] if name != "11_text_dit" else
            list(__import__("course.text", fromlist=["tokenize"]).tokenize(["a thick seven", ""], cap.VOCAB, cap.MAX_LEN))
        ))).all()


def _library_uses(source: str, library: set[str], aliases: dict | None = None) -> list[str]:
    """Where ``source`` reaches the library's implementation of an exercise (``"course.dit:DiT"``): imported
    by name, through a module alias (``aliases``: name -> module, kept from earlier cells), or by a library
    model built without the learner's parts."""
    import ast

    aliases = {"course": "course"} if aliases is None else aliases
    tree, found = ast.parse(source), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({(a.asname or a.name).split(".")[0]: (a.name if a.asname else a.name.split(".")[0])
                            for a in node.names if a.name.startswith("course")})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course"):
            for a in node.names:
                if f"{node.module}:{a.name}" in library:
                    found.append(f"from {node.module} import {a.name}")
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = ast.unparse(node.value)
            head, _, rest = base.partition(".")
            module = aliases.get(head, "") + (f".{rest}" if rest else "")
            if f"{module}:{node.attr}" in library:
                found.append(ast.unparse(node))
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func).split(".")[-1]
            keywords = {k.arg for k in node.keywords}
            if name == "TextDiT" and "parts" not in keywords or name == "conditioning_variant" and "modulate" not in keywords:
                found.append(f"{ast.unparse(node)[:60]}... without the learner's parts")
    return found


def test_the_notebook_reaches_no_library_implementation_of_its_own_exercises():
    """Notebook 11 runs in its staged bundle, where the library's patchify, ..., DiT, tokenize and the two
    attention classes are stubs: outside the answer cells, no cell imports or calls them, and the library's
    models that use them (TextDiT, conditioning_variant's adaLN blocks) are handed the learner's. (Before:
    the ablation built course.dit.DiT(conditioning=...), the text model the library's TextDiT.)"""
    from grader.engine.strip import notebook_code
    from grader.public.nb11_transformers_text import EXERCISES, LIBRARY

    library = set(LIBRARY.values())
    assert sorted(_library_uses("from course import dit as d\nm = d.DiT(1)\nfrom course.text import tokenize\n"
                                "import course.dit\ncourse.dit.modulate\nTextDiT(1)\n", library)) == [
        "TextDiT(1)... without the learner's parts", "course.dit.modulate", "d.DiT", "from course.text import tokenize"]
    aliases = {"course": "course"}  # the kernel's names, cell after cell
    uses = {i: _library_uses(src, library, aliases) for i, (gid, src) in enumerate(notebook_code(SOLUTION))
            if gid not in EXERCISES}
    assert {i: u for i, u in uses.items() if u} == {}

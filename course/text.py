"""Text for conditioning: tokenising captions, cross-attention, and MM-DiT's joint attention.

Shapes: image tokens x (B, N, dim); text tokens c (B, M, ctx_dim or dim); a *padding mask*
(B, M) bool is **True where the token is padding** (PyTorch's ``key_padding_mask`` convention):
padded tokens are never attended to. Every row must keep at least one real token as a key (a
model that allows empty captions adds a learned token that is never masked, as ``course.dit.TextDiT``).

References: Vaswani et al. 2017, *Attention Is All You Need* (arXiv:1706.03762), eq. 1;
Rombach et al. 2022 (arXiv:2112.10752), Sec. 3.3, cross-attention to a text encoder's tokens;
Saharia et al. 2022 (Imagen, arXiv:2205.11487), text tokens by cross-attention plus a pooled
text vector; Esser et al. 2024 (Stable Diffusion 3, arXiv:2403.03206), Sec. 4 and Fig. 2, MM-DiT:
separate weights per modality, one attention over the concatenated sequence.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def tokenize(captions, vocab: dict[str, int], max_len: int):
    """Word ids of each caption, padded with id 0 (or cut) to ``max_len``: (LongTensor (N, max_len),
    padding mask (N, max_len) bool, True at padded positions). Unknown words map to ``vocab["<unk>"]``."""
    ids = torch.zeros(len(captions), max_len, dtype=torch.long)
    for i, caption in enumerate(captions):
        words = caption.split()[:max_len]
        ids[i, :len(words)] = torch.tensor([vocab[w] if w in vocab else vocab["<unk>"] for w in words],
                                           dtype=torch.long)
        ids[i, len(words):] = vocab.get("<pad>", 0)
    lengths = torch.tensor([min(len(c.split()), max_len) for c in captions])
    pad_mask = torch.arange(max_len)[None, :] >= lengths[:, None]  # (N, max_len): True = padding
    return ids, pad_mask


def split_heads(z: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, dim) -> (B, heads, T, dim / heads)."""
    B, T, D = z.shape
    return z.reshape(B, T, heads, D // heads).transpose(1, 2)


def merge_heads(z: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d) -> (B, T, heads * d)."""
    B, H, T, d = z.shape
    return z.transpose(1, 2).reshape(B, T, H * d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad_mask: torch.Tensor | None = None):
    """softmax(q k^T / sqrt(d)) v per head (Vaswani et al. 2017, eq. 1), keys with pad_mask True
    excluded. q (B, h, N, d), k and v (B, h, M, d), pad_mask (B, M) -> (B, h, N, d)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, h, N, M)
    if pad_mask is not None:
        scores = scores.masked_fill(pad_mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1) @ v


class CrossAttention(nn.Module):
    """Image tokens attend to text tokens: queries from x, keys and values from the context.

    out = W_o softmax(W_q x (W_k c)^T / sqrt(d)) W_v c, per head, padded text tokens masked out
    (Rombach et al. 2022, Sec. 3.3). No residual: the block around it adds x.
    """

    def __init__(self, dim: int, ctx_dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, "dim must be divisible by heads"
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(ctx_dim, dim)
        self.to_v = nn.Linear(ctx_dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = split_heads(self.to_q(x), self.heads)  # (B, h, N, d)
        k = split_heads(self.to_k(ctx), self.heads)  # (B, h, M, d)
        v = split_heads(self.to_v(ctx), self.heads)
        return self.proj(merge_heads(attention(q, k, v, pad_mask)))  # (B, N, dim)


class JointAttention(nn.Module):
    """MM-DiT attention (Esser et al. 2024, Fig. 2b): each modality has its own q, k, v and output
    projections; the two sequences are concatenated and attend *jointly* (one softmax over all
    keys of both), and the result is split back into the image part and the text part.

    Layers (the grader reads them): ``qkv_x`` and ``qkv_c``, Linear(dim, 3 dim) whose outputs are
    [q | k | v] (each split into heads as (heads, dim / heads)); ``proj_x`` and ``proj_c``, Linear(dim, dim).
    ``forward(x (B, N, dim), c (B, M, dim), c_mask=None)`` returns ``(x_out (B, N, dim), c_out (B, M, dim))``;
    ``c_mask`` (B, M) True marks padded text tokens, never used as keys.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, "dim must be divisible by heads"
        self.heads = heads
        self.qkv_x = nn.Linear(dim, 3 * dim)
        self.qkv_c = nn.Linear(dim, 3 * dim)
        self.proj_x = nn.Linear(dim, dim)
        self.proj_c = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor, c_mask: torch.Tensor | None = None):
        N = x.shape[1]
        qkv = torch.cat([self.qkv_x(x), self.qkv_c(c)], dim=1)  # (B, N + M, 3 dim): image first, then text
        q, k, v = (split_heads(z, self.heads) for z in qkv.chunk(3, dim=-1))  # each (B, h, N + M, d)
        mask = None
        if c_mask is not None:
            mask = torch.cat([torch.zeros(x.shape[0], N, dtype=torch.bool, device=x.device), c_mask], dim=1)
        out = merge_heads(attention(q, k, v, mask))  # (B, N + M, dim)
        return self.proj_x(out[:, :N]), self.proj_c(out[:, N:])

"""In-context conditioning by sequence concatenation (Labs et al. 2025, *FLUX.1 Kontext: Flow Matching
for In-Context Image Generation and Editing in Latent Space*, arXiv:2506.15742, section 3).

An editing model sees the image to edit (the *context*) as extra tokens in the same sequence as
the noisy target: tokens = [target; context]. Both images use the same grid positions, so the
model needs a way to tell them apart: Kontext gives the context tokens a constant offset on the
first ("frame") coordinate of its 3D positions, target (0, h, w), context (1, h, w). Here a token's
position is the pair (frame, index of the token within its image). The model's output for the
first L_target tokens is the target's prediction; the context tokens' outputs are dropped.
"""
from __future__ import annotations

import torch


def in_context_tokens(target_tokens: torch.Tensor, context_tokens: torch.Tensor):
    """Concatenate target (N, L_t, D) and context (N, L_c, D) tokens along the sequence.

    Returns ``(tokens, positions)``: tokens (N, L_t + L_c, D), target first; positions a LongTensor
    (L_t + L_c, 2) of (frame, index): (0, 0..L_t-1) for the target, (1, 0..L_c-1) for the context.
    """
    L_t, L_c = target_tokens.shape[1], context_tokens.shape[1]
    tokens = torch.cat([target_tokens, context_tokens], dim=1)  # (N, L_t + L_c, D)
    frame = torch.cat([torch.zeros(L_t, dtype=torch.long), torch.ones(L_c, dtype=torch.long)])
    index = torch.cat([torch.arange(L_t), torch.arange(L_c)])
    return tokens, torch.stack([frame, index], dim=1).to(target_tokens.device)  # (L_t + L_c, 2)

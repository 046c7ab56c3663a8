"""Dropout with a cheaper mask on the CPU.

On the CPU `F.dropout` draws one 32-bit number per element through `bernoulli_`, one at a time:
about 12 ns an element, 9% of a training update of the Transformer 256 (its matmuls are 70%).
Here each 64-bit draw of torch's generator gives four 16-bit numbers, kept where they are at
least a threshold: 2.5x less time for the mask and the same generator, so a seed still fixes
the run and a checkpoint's RNG state still resumes it (docs/benchmarks.md). The drop rate is p
rounded to a multiple of 1/65,536 (within 7.7e-6 of p), and the kept values are scaled by
1 / (1 - that rate), so the expectation is unchanged. Elsewhere (CUDA) `F.dropout` is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_LEVELS = 1 << 16  # the 16-bit numbers compared with the threshold


def keep_mask(shape: torch.Size, dropped: int) -> torch.Tensor:
    """Elements kept, each dropped with probability `dropped` / 65,536 (0 < dropped < 65,536)."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64)
    words.random_(-(1 << 63), None)  # all 64 bits uniform
    return words.view(torch.int16)[:n].view(shape) >= dropped - _LEVELS // 2


class _MaskedScale(torch.autograd.Function):
    """x where `keep`, else 0, times `scale`; the backward applies the same to the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x * scale, 0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad * ctx.scale, 0.0), None, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)`, with the mask of `keep_mask` on the CPU."""
    dropped = round(p * _LEVELS) if training else 0
    if dropped == 0:
        return x
    if x.device.type != "cpu" or dropped >= _LEVELS:
        return F.dropout(x, p, training)
    return _MaskedScale.apply(x, keep_mask(x.shape, dropped), _LEVELS / (_LEVELS - dropped))

"""Label-smoothed cross-entropy (fairseq/HAT's criterion) and in-place distillation.

`projected_label_smoothed_nll` is the same loss computed from the decoder's features and the
output layer's weight, a block of target tokens at a time: the (tokens x vocabulary) logits
are never held whole, and their gradient is formed in place in forward (softmax minus the
smoothed target), so training needs no log-softmax output, no backward of gather and mean,
and far less memory (docs/benchmarks.md). In-place distillation (sandwich sampling) is
projected the same way: the teacher's distribution comes out of its own loss's blocks
(`projected_teacher_loss`), each student's KL(teacher || student) and its gradient
(softmax minus the teacher's distribution) a block at a time (`projected_distillation_loss`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hat.data.tokenizer import PAD_ID

# Bytes of one block of fp32 logits (512 target tokens for an 8k vocabulary): the memory a
# block needs; the speed is the same from 4 to 128 MB on this CPU (docs/benchmarks.md).
BLOCK_BYTES = 16 * 2**20


def label_smoothed_nll(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, nll) summed over non-pad target tokens, in nats.

    loss = (1 - eps) * nll + eps * mean over the vocabulary of -log p (uniform smoothing).
    """
    lprobs = F.log_softmax(logits.float(), dim=-1).view(-1, logits.shape[-1])
    target = target.reshape(-1)
    keep = target.ne(PAD_ID)
    nll = -lprobs.gather(1, target[:, None]).squeeze(1)[keep].sum()
    if smoothing == 0:
        return nll, nll
    smooth = -lprobs.mean(dim=-1)[keep].sum()
    return (1.0 - smoothing) * nll + smoothing * smooth, nll


class _ProjectedNLL(torch.autograd.Function):
    """(loss, nll, probs) of rows `x` (N, D) against `weight` (V, D) and targets (N,),
    blockwise; with `grads`, the gradients are formed on the way and scaled in backward; with
    `keep_probs`, probs is softmax(z) (N, V) in fp32 (else empty).

    Four passes over a block's logits z: max, subtract, exp, sum. The smoothing term's mean of
    z over the vocabulary is x . mean(weight); the gradient softmax(z) - (1 - eps) onehot - eps/V
    is taken as exp(z - max) with the target's entry lowered by (1 - eps) * sum, its division by
    the sum moved to the (rows x D) side of each matmul, and -eps/V added once for all rows
    (a rank-one term: -eps/V * sum(weight) to each row's gradient, -eps/V * sum(x) to each row
    of the weight's)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        target: torch.Tensor,
        eps: float,
        grads: bool,
        keep_probs: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vocab = weight.shape[0]
        rows = _block_rows(vocab)
        autocast = torch.is_autocast_enabled(x.device.type)
        grad_x = torch.empty_like(x) if grads else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if grads else None
        probs = x.new_empty((x.shape[0], vocab) if keep_probs else (0,), dtype=torch.float32)
        lse_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        picked_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, x.shape[0], rows):
            xb, tb = x[start : start + rows], target[start : start + rows, None]
            z = F.linear(xb, weight).float()  # (n, V) logits
            top = z.amax(dim=1, keepdim=True)
            picked_sum += z.gather(1, tb).sum().double()
            e = z.sub_(top).exp_()  # exp(z - max), in place
            total = e.sum(dim=1, keepdim=True)
            lse_sum += (top + total.log()).sum().double()
            inverse = total.reciprocal()
            if keep_probs:
                torch.mul(e, inverse, out=probs[start : start + rows])
            if grads:  # softmax(z) - (1 - eps) onehot, with the division by `total` moved
                e.scatter_add_(1, tb, total * (eps - 1.0))
                grad_x[start : start + rows] = (e @ weight) * inverse
                _add_weight_grad(grad_w, e, xb * inverse, autocast)
        x_sum = x.sum(dim=0, dtype=torch.float32)
        w_mean = weight.mean(dim=0, dtype=torch.float32)
        nll = lse_sum - picked_sum
        smooth = lse_sum - (x_sum.double() @ w_mean.double())  # sum of lse - mean of z
        if grads:  # the -eps/V of every logit's gradient
            grad_x -= eps * w_mean.to(grad_x.dtype)  # eps / V * sum(weight)
            grad_w -= (eps / vocab) * x_sum
            ctx.save_for_backward(grad_x, grad_w.to(weight.dtype))
        loss = ((1.0 - eps) * nll + eps * smooth).float()
        nll = nll.float()
        ctx.mark_non_differentiable(nll, probs)
        return loss, nll, probs

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, *_grad_outputs: torch.Tensor | None):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_loss, grad_w * grad_loss, None, None, None, None


class _ProjectedKL(torch.autograd.Function):
    """KL(teacher || softmax(x weight^T)) summed over rows `x` (N, D), `teacher` (N, V) the
    teacher's probabilities; blockwise, the gradient (softmax(z) - teacher) formed in forward.

    KL = sum p log p - sum p z + sum lse(z) (each row of p sums to 1)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, teacher: torch.Tensor, grads: bool
    ) -> torch.Tensor:
        rows = _block_rows(weight.shape[0])
        autocast = torch.is_autocast_enabled(x.device.type)
        grad_x = torch.empty_like(x) if grads else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if grads else None
        kl = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, x.shape[0], rows):
            xb, pb = x[start : start + rows], teacher[start : start + rows]
            z = F.linear(xb, weight).float()
            with torch.autocast(x.device.type, enabled=False):  # a sum of V x n products
                cross = torch.dot(pb.view(-1), z.view(-1))
            kl += (torch.special.xlogy(pb, pb).sum() - cross).double()
            top = z.amax(dim=1, keepdim=True)
            e = z.sub_(top).exp_()
            total = e.sum(dim=1, keepdim=True)
            kl += (top + total.log()).sum().double()
            if grads:
                g = e.mul_(total.reciprocal()).sub_(pb)  # softmax(z) - p, in place
                grad_x[start : start + rows] = g @ weight
                _add_weight_grad(grad_w, g, xb, autocast)
        if grads:
            ctx.save_for_backward(grad_x, grad_w.to(weight.dtype))
        return kl.float()

    @staticmethod
    def backward(ctx: Any, grad_kl: torch.Tensor):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_kl, grad_w * grad_kl, None, None


def _block_rows(vocab: int) -> int:
    return max(1, BLOCK_BYTES // (4 * vocab))


def _add_weight_grad(
    grad_w: torch.Tensor, g: torch.Tensor, xb: torch.Tensor, autocast: bool
) -> None:
    """grad_w += g^T xb; under autocast in its lower precision, as autograd's matmul would."""
    if autocast:
        grad_w += g.t() @ xb
    else:
        grad_w.addmm_(g.t(), xb)


def _rows(
    features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The features and targets of the non-pad target tokens; whether gradients are needed."""
    keep = target.reshape(-1).ne(PAD_ID)
    rows = features.reshape(-1, features.shape[-1])[keep]
    grads = torch.is_grad_enabled() and (rows.requires_grad or weight.requires_grad)
    return rows, target.reshape(-1)[keep], grads


def projected_label_smoothed_nll(
    features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`label_smoothed_nll(F.linear(features, weight), target, smoothing)`, computed a block of
    non-pad target tokens at a time (the same values, summation order aside)."""
    rows, kept, grads = _rows(features, weight, target)
    loss, nll, _ = _ProjectedNLL.apply(rows, weight, kept, smoothing, grads, False)
    return loss, nll


def projected_teacher_loss(
    features: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`projected_label_smoothed_nll` and the teacher's distribution over the vocabulary at
    each non-pad target token (N, V), detached, for `projected_distillation_loss`."""
    rows, kept, grads = _rows(features, weight, target)
    return _ProjectedNLL.apply(rows, weight, kept, smoothing, grads, True)


def projected_distillation_loss(
    features: torch.Tensor, weight: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """KL(teacher || softmax(F.linear(features, weight))) summed over the non-pad target
    tokens, a block at a time; `teacher` from `projected_teacher_loss` on the same batch."""
    rows, _, grads = _rows(features, weight, target)
    return _ProjectedKL.apply(rows, weight, teacher, grads)

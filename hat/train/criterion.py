"""Label-smoothed cross-entropy (fairseq/HAT's criterion) and in-place distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hat.data.tokenizer import PAD_ID


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


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """KL(teacher || student) summed over non-pad target tokens (teacher detached)."""
    keep = target.reshape(-1).ne(PAD_ID)
    vocab = student_logits.shape[-1]
    student = F.log_softmax(student_logits.float(), dim=-1).view(-1, vocab)[keep]
    teacher = F.log_softmax(teacher_logits.detach().float(), dim=-1).view(-1, vocab)[keep]
    return F.kl_div(student, teacher, log_target=True, reduction="sum")

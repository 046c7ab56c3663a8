"""The CPU dropout: its drop rate, its independence, its gradient, a seed that fixes it, and
the attention weights' dropout on the CPU."""

import pytest
import torch
import torch.nn.functional as F

from hat.nn.attention import MultiheadAttention
from hat.nn.dropout import dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.2, 0.3, 0.5])
def test_the_mask_drops_p_of_the_elements_independently(p: float):
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([1000, 1000]), round(p * 65536)).float()
    assert keep.mean().item() == pytest.approx(1 - p, abs=0.002)
    # neighbours come from the same 64-bit draw: still independent (both kept: (1 - p)^2)
    for shift in (1, 2, 3, 4, 1000):
        flat = keep.flatten()
        both = (flat[:-shift] * flat[shift:]).mean().item()
        assert both == pytest.approx((1 - p) ** 2, abs=0.003), shift


def test_dropout_scales_what_it_keeps_and_its_gradient_follows_the_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert 0.6 < kept.float().mean() < 0.9
    assert torch.allclose(y[kept], x[kept] / 0.75)
    weights = torch.randn_like(x)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, torch.where(kept, weights / 0.75, 0.0))
    ones = torch.ones(2000, 500)
    assert dropout(ones, 0.3, True).mean().item() == pytest.approx(1.0, abs=0.005)


def test_a_seed_fixes_the_mask_and_eval_or_zero_p_is_the_identity():
    x = torch.randn(10, 10)
    torch.manual_seed(5)
    a = dropout(x, 0.2, True)
    torch.manual_seed(5)
    assert torch.equal(dropout(x, 0.2, True), a)
    assert not torch.equal(dropout(x, 0.2, True), a)  # the generator moved on
    assert dropout(x, 0.2, training=False) is x and dropout(x, 0.0, True) is x
    assert torch.equal(dropout(x, 1.0, True), F.dropout(x, 1.0, True))  # all dropped


def test_attention_dropout_on_cpu_keeps_the_expectation(monkeypatch):
    """Training on the CPU drops attention weights with hat's mask (plain matmuls, whose causal
    and padding masks combine as the fused kernel's): calls differ, their mean is the evaluation
    output (the weights' expectation is unchanged), and the gradient reaches the inputs."""
    torch.manual_seed(0)
    attn = MultiheadAttention(16, 16, 4, dropout=0.3)
    x = torch.randn(2, 6, 16, requires_grad=True)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        expected = attn.eval()(x, padding, causal=True)
        monkeypatch.setattr(attn, "fused", False)
        assert torch.allclose(attn(x, padding, causal=True), expected, atol=1e-6)
        attn.train()
        a, b = attn(x, padding, causal=True), attn(x, padding, causal=True)
        mean = sum(attn(x, padding, causal=True) for _ in range(300)) / 300
    assert not torch.allclose(a, b)
    assert torch.allclose(mean, expected, atol=0.07)
    attn(x, padding, causal=True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

"""Training attention on the CPU with attention dropout: torch's fused kernel against hat's plain
matmuls with hat's dropout mask (`hat.nn.attention.attention_math`), forward + backward,
alternating in one process. Prints JSON: milliseconds per call (median) and the speed-up.

    python bench/attention_dropout.py                    # #17's shapes: 270 sentences of 16 tokens
    python bench/attention_dropout.py --threads 1 --rounds 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from hat.nn.attention import attention_math


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=270, help="sentences in the batch")
    parser.add_argument("--length", type=int, default=16, help="tokens per sentence")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds")
    parser.add_argument("--calls", type=int, default=5, help="calls timed per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, t, h, d = args.rows, args.length, args.heads, args.head_dim
    x = torch.randn(n, t, 3, h, d, requires_grad=True)  # a fused q/k/v projection's output
    padding = torch.zeros(n, t, dtype=torch.bool)
    padding[:, -3:] = torch.rand(n, 3) < 0.3
    cases = {  # name: (padding mask or None, causal)
        "encoder self-attention (padding)": (~padding[:, None, None, :], False),
        "decoder self-attention (causal)": (None, True),
    }
    paths = {
        "fused": lambda q, k, v, m, c: F.scaled_dot_product_attention(
            q, k, v, attn_mask=m, is_causal=c, dropout_p=args.dropout
        ),
        "matmuls": lambda q, k, v, m, c: attention_math(q, k, v, m, c, args.dropout),
    }
    results = {}
    for case, (mask, causal) in cases.items():
        times: dict[str, list[float]] = {name: [] for name in paths}
        for r in range(args.rounds):
            for name in list(paths) if r % 2 == 0 else list(paths)[::-1]:
                start = time.perf_counter()
                for _ in range(args.calls):
                    q, k, v = x.permute(2, 0, 3, 1, 4)
                    out = paths[name](q, k, v, mask, causal)
                    out.transpose(1, 2).reshape(n, t, h * d).sum().backward()
                times[name].append((time.perf_counter() - start) / args.calls * 1e3)
        ratios = [a / b for a, b in zip(times["fused"], times["matmuls"], strict=True)]
        results[case] = {
            **{f"{name}_ms": round(statistics.median(v), 2) for name, v in times.items()},
            "speedup_median_of_rounds": round(statistics.median(ratios), 3),
        }
    print(json.dumps({"settings": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()

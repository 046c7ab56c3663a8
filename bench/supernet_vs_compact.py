"""Benchmark: SuperTransformer (config set) vs its exported compact model. Prints JSON.

For random SubTransformers of a HAT space (default: IWSLT space1.yml), vocab 10k:
 (a) one train step (forward + backward, label-smoothed loss) on a 4096-token batch;
 (b) beam-5 decoding of one 30-token sentence (encoder + 30 incremental steps).
Runs of the two models alternate; each model's figure is the minimum and the median of its
runs (the minimum is the least disturbed by other load), so the ratios compare like with
like on a noisy machine.

    python bench/supernet_vs_compact.py [--space FILE] [--configs 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hat.generate import beam_search
from hat.space import SearchSpace
from hat.supernet import SuperTransformer
from hat.transformer import ModelSettings

DEFAULT_SPACE = (
    Path(__file__).resolve().parents[2]
    / "shared/data/hat-configs/iwslt14.de-en/supertransformer/space1.yml"
)


def train_step(model, src, prev, tgt) -> float:
    t = time.perf_counter()
    logits = model(src, prev)
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), tgt.view(-1), label_smoothing=0.1)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def decode_ms(model, src) -> float:
    """Encoder + beam-5 search forced to 30 decoder steps (the latency protocol's work)."""
    t = time.perf_counter()
    with torch.inference_mode():
        beam_search(
            model, src, beam=5, max_len_a=0, max_len_b=src.shape[1] - 1, min_len=src.shape[1] - 1
        )
    return (time.perf_counter() - t) * 1000


def stats(a: list[float], b: list[float]) -> dict:
    return {"min": [min(a), min(b)], "median": [statistics.median(a), statistics.median(b)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--space", default=str(DEFAULT_SPACE))
    p.add_argument("--configs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="timed train steps per model and config")
    p.add_argument(
        "--decode-repeats", type=int, default=10, help="timed decodes per model and config"
    )
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    space = SearchSpace.from_yaml(args.space)
    net = SuperTransformer(
        space, ModelSettings(vocab_size=args.vocab, qkv_dim=space.qkv_dim, dropout=0.3)
    )
    g = torch.Generator().manual_seed(args.seed)
    src = torch.randint(4, args.vocab, (128, 32), generator=g)  # 128 x 32 = 4096 tokens
    prev = torch.randint(4, args.vocab, (128, 32), generator=g)
    tgt = torch.randint(4, args.vocab, (128, 32), generator=g)
    rng = random.Random(args.seed)
    rows = []
    for k in range(args.configs):
        cfg = space.sample(rng)
        net.set_config(cfg)
        compact = net.export()
        net.train(), compact.train()
        train_step(net, src, prev, tgt), train_step(compact, src, prev, tgt)  # warm-up
        sup, com = [], []
        for _ in range(args.repeats):
            sup.append(train_step(net, src, prev, tgt))
            com.append(train_step(compact, src, prev, tgt))
        one = src[:1, :30]
        net.eval(), compact.eval()
        decode_ms(net, one), decode_ms(compact, one)  # warm-up
        dec_sup, dec_com = [], []
        for _ in range(args.decode_repeats):
            dec_sup.append(decode_ms(net, one))
            dec_com.append(decode_ms(compact, one))
        train, dec = stats(sup, com), stats(dec_sup, dec_com)
        row = {
            "config": k,
            "arch": str(cfg),
            "train_step_s [supernet, compact]": train,
            "decode_ms [supernet, compact]": dec,
            "train_ratio_supernet_over_compact": {m: v[0] / v[1] for m, v in train.items()},
            "decode_ratio_compact_over_supernet": {m: v[1] / v[0] for m, v in dec.items()},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "space": Path(args.space).name,
        "vocab": args.vocab,
        "batch_tokens": 4096,
    }
    for key in ("train_ratio_supernet_over_compact", "decode_ratio_compact_over_supernet"):
        for m in ("min", "median"):
            values = [r[key][m] for r in rows]
            summary[f"{key} ({m} of runs)"] = {
                "median over configs": statistics.median(values),
                "max": max(values),
            }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

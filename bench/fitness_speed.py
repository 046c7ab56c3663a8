"""Benchmark: the search's fitness evaluation, candidates scored per second (issue #17, item 3).

A SuperTransformer of --space (random weights: the cost does not depend on them) scores the
same N random SubTransformers on a validation split two ways, alternating in --rounds rounds:
  logits     the whole (tokens x vocabulary) logits, then label_smoothed_nll (before);
  projected  hat's Fitness: projected_label_smoothed_nll, a block of target tokens at a time.
Both give the same losses (the largest difference is printed). Prints JSON: candidates per
second of each (median over rounds) and their ratio.

    python bench/fitness_speed.py --data DATA_DIR [--space SPACE_YML] [--n 10] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time

import torch

from hat.cli.args import settings_from_args, space_from_args
from hat.cli.latency_dataset import build_parser
from hat.data.dataset import DataDir
from hat.search.fitness import Fitness
from hat.supernet import SuperTransformer
from hat.train.criterion import label_smoothed_nll


def logits_loss(fitness: Fitness, arch) -> float:
    """The fitness as computed before: full logits, then the loss."""
    fitness.net.set_config(arch)
    total, tokens = 0.0, 0.0
    with torch.no_grad():
        for batch in fitness.batches:
            logits = fitness.net(batch.src_tokens, batch.prev_output_tokens)
            total += label_smoothed_nll(logits, batch.target, fitness.smoothing)[0].item()
            tokens += batch.ntokens
    return total / tokens / math.log(2)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True, help="a hat data directory (with a valid split)")
    p.add_argument("--space", default="configs/multi30k/supertransformer/space1.yml")
    p.add_argument("--n", type=int, default=10, help="SubTransformers per round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--valid-cnt-max", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = DataDir(args.data)
    cli = build_parser().parse_args(
        [f"--configs={args.space}", "--vocab-size", str(data.vocab_size)]
    )
    space, settings = space_from_args(cli), settings_from_args(cli, data.vocab_size)
    torch.manual_seed(0)
    fitness = Fitness(
        SuperTransformer(space, settings),
        data.split("valid"),
        args.max_tokens,
        args.valid_cnt_max,
        cache=False,
    )
    archs = [space.sample(random.Random(i)) for i in range(args.n)]
    ways = {"logits": lambda a: logits_loss(fitness, a), "projected": fitness.loss}
    speed: dict[str, list[float]] = {k: [] for k in ways}
    losses: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name in ways if r % 2 == 0 else reversed(ways):
            start = time.perf_counter()
            losses[name] = [ways[name](a) for a in archs]
            speed[name].append(args.n / (time.perf_counter() - start))
    result = {
        "machine": f"{os.uname().nodename} ({os.cpu_count()} cpus)",
        "torch": torch.__version__,
        "args": vars(args),
        "tokens_per_candidate": sum(b.ntokens for b in fitness.batches),
        **{f"{k}_candidates_per_s": round(statistics.median(v), 3) for k, v in speed.items()},
        "per_round": {k: [round(x, 3) for x in v] for k, v in speed.items()},
        "speedup": round(
            statistics.median(speed["projected"]) / statistics.median(speed["logits"]), 3
        ),
        "max_loss_difference": max(
            abs(a - b) for a, b in zip(losses["logits"], losses["projected"], strict=True)
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

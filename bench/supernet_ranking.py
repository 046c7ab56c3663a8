"""Benchmark: how well a SuperTransformer ranks SubTransformers (nobody publishes this).

For N SubTransformers spread over the space (evenly by size), compare the validation loss with
weights inherited from each supernet given (e.g. one trained with HAT's uniform sampling, one
with the sandwich rule + in-place distillation, same budget) against the validation loss of
the same SubTransformer trained from scratch for a short fixed budget. Reports Kendall tau and
Spearman rho per supernet. From-scratch runs resume (their checkpoints live in --work-dir).

    python bench/supernet_ranking.py --data data/binary/multi30k_en_de \
        --supernet uniform=runs/m30k_super/checkpoint_last.pt \
        --supernet sandwich=runs/m30k_sandwich/checkpoint_last.pt \
        --n 8 --updates 500 --work-dir runs/ranking

On a GPU the from-scratch runs are launch-bound: train them in parallel processes with
`--shard I/K` (each trains every K-th SubTransformer and exits), then run once without it.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from hat.data.dataset import DataDir
from hat.latency.metrics import kendall_tau, spearman
from hat.profile import analytic_params
from hat.search.fitness import Fitness
from hat.space import ArchConfig
from hat.train.checkpoints import load_supernet
from hat.train.distributed import DistInfo
from hat.train.schedule import ScheduleConfig
from hat.train.trainer import TrainConfig, Trainer
from hat.transformer import Transformer


def spread_configs(space, n: int, seed: int) -> list[ArchConfig]:
    """n SubTransformers evenly spaced by #params among 400 uniform samples (ends included)."""
    rng = random.Random(seed)
    pool = sorted(
        {space.sample(rng) for _ in range(400)} | {space.smallest(), space.largest()},
        key=lambda a: analytic_params(a, space.qkv_dim),
    )
    return [pool[round(i * (len(pool) - 1) / (n - 1))] for i in range(n)]


def train_from_scratch(
    arch: ArchConfig,
    settings,
    data: DataDir,
    out: Path,
    updates: int,
    seed: int,
    device: torch.device,
) -> float:
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())["valid_loss"]
    torch.manual_seed(seed)
    model = Transformer(arch, settings)
    cfg = TrainConfig(
        save_dir=str(out),
        max_tokens=2048,
        max_update=updates,
        seed=seed,
        weight_decay=1e-4,
        schedule=ScheduleConfig(
            "inverse_sqrt", lr=1e-3, warmup_updates=min(200, updates // 4), warmup_init_lr=1e-7
        ),
        save_interval_updates=100,
        keep_interval_updates=1,
        keep_last_epochs=1,
        progress_bar=False,
    )
    trainer = Trainer(
        model,
        cfg,
        data,
        None,
        DistInfo(device=device),
    )
    trainer.resume()
    loss = trainer.train()["model_loss"]
    done.write_text(json.dumps({"valid_loss": loss, "arch": arch.to_dict()}))
    return loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--supernet", action="append", required=True, metavar="NAME=CHECKPOINT")
    p.add_argument("--n", type=int, default=8)
    p.add_argument(
        "--updates", type=int, default=500, help="from-scratch training updates per SubTransformer"
    )
    p.add_argument("--work-dir", default="runs/ranking")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--shard",
        metavar="I/K",
        help="only train the from-scratch runs i with i %% K == I, then exit",
    )
    p.add_argument(
        "--no-train",
        action="store_true",
        help="rank over the from-scratch runs already finished (e.g. shards stopped by a time "
        "limit)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    data = DataDir(args.data)
    loaded = {name: load_supernet(path) for name, path in (s.split("=", 1) for s in args.supernet)}
    supernets = {name: net for name, (net, _) in loaded.items()}
    first = next(iter(supernets.values()))
    archs = spread_configs(first.space, args.n, args.seed)
    if args.shard:
        shard, shards = map(int, args.shard.split("/"))
        for i in range(shard, len(archs), shards):
            train_from_scratch(
                archs[i],
                first.settings,
                data,
                Path(args.work_dir) / f"sub{i}",
                args.updates,
                args.seed,
                device,
            )
        return
    inherited = {}
    for name, net in supernets.items():
        fitness = Fitness(net, data.split("valid"), max_tokens=4096, device=device)
        inherited[name] = [fitness.loss(a) for a in archs]
    scratch, kept = [], []
    for i, arch in enumerate(archs):
        t = time.time()
        out = Path(args.work_dir) / f"sub{i}"
        if args.no_train and not (out / "result.json").exists():
            continue
        scratch.append(
            train_from_scratch(arch, first.settings, data, out, args.updates, args.seed, device)
        )
        kept.append(i)
        print(
            json.dumps(
                {
                    "sub": i,
                    "params": analytic_params(arch, first.space.qkv_dim),
                    "arch": str(arch),
                    "scratch_valid_loss": scratch[-1],
                    **{f"inherited_{k}": v[i] for k, v in inherited.items()},
                    "seconds": round(time.time() - t, 1),
                }
            ),
            flush=True,
        )
    summary = {"n": len(kept), "subs": kept, "updates": args.updates}
    for name, all_losses in inherited.items():
        losses = [all_losses[i] for i in kept]
        payload = loaded[name][1]
        summary[name] = {
            "kendall_tau": kendall_tau(losses, scratch),
            "spearman": spearman(losses, scratch),
            "supernet_updates": payload["train_state"]["updates"],
            "supernet_wall_s": round(payload["train_state"]["wall_seconds"], 1),
            "supernet_valid": {
                k: round(v, 3) for k, v in payload.get("valid", {}).items() if k.endswith("_loss")
            },
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

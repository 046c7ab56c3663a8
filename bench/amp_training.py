"""Benchmark: SuperTransformer training throughput in fp32, bf16 and fp16 (CUDA AMP). Prints JSON.

Trains a SuperTransformer of a HAT space on real data (uniform sampling, one SubTransformer
per update) for `--updates` updates in each precision, from the same initial weights and
the same batches. Precisions alternate in rounds of `--round` updates, so drift on a shared
machine hits them alike; the first round of each is a warm-up and is not timed. Reports
updates/s, target tokens/s, the speed-up over fp32 and the last training loss.

    python bench/amp_training.py --data data/binary/multi30k_en_de \
        --space configs/multi30k/supertransformer/space0.yml [--space other.yml] --updates 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from hat.data.dataset import DataDir
from hat.space import SearchSpace
from hat.supernet import SuperTransformer
from hat.train.distributed import DistInfo
from hat.train.sampling import ConfigSampler
from hat.train.schedule import ScheduleConfig
from hat.train.trainer import TrainConfig, Trainer
from hat.transformer import ModelSettings

PRECISIONS = ("fp32", "bf16", "fp16")


def build_trainers(
    space: SearchSpace, data: DataDir, max_tokens: int, work: Path, seed: int
) -> dict[str, Trainer]:
    device = torch.device("cuda")
    torch.manual_seed(seed)
    init = SuperTransformer(
        space, ModelSettings(vocab_size=data.vocab_size, qkv_dim=space.qkv_dim, dropout=0.1)
    )
    trainers = {}
    for precision in PRECISIONS:
        net = SuperTransformer(space, init.settings)
        net.load_state_dict(init.state_dict())
        cfg = TrainConfig(
            save_dir=str(work / precision),
            max_tokens=max_tokens,
            precision=precision,
            seed=seed,
            schedule=ScheduleConfig(
                "inverse_sqrt", lr=1e-3, warmup_updates=100, warmup_init_lr=1e-7
            ),
            progress_bar=False,
            log_interval=10**9,
        )
        Path(cfg.save_dir).mkdir(parents=True)
        trainers[precision] = Trainer(
            net,
            cfg,
            data,
            ConfigSampler(space, "uniform", seed),
            DistInfo(device=device),
        )
    return trainers


def run_space(space_path: str, data: DataDir, args: argparse.Namespace) -> dict:
    space = SearchSpace.from_yaml(space_path)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = build_trainers(space, data, args.max_tokens, Path(tmp), args.seed)
        batches = {p: t._epoch_batches(1) for p, t in trainers.items()}
        seconds = dict.fromkeys(PRECISIONS, 0.0)
        tokens = dict.fromkeys(PRECISIONS, 0.0)
        last = {}
        timed = 0
        for start in range(0, args.updates, args.round):
            for p, trainer in trainers.items():
                torch.cuda.synchronize()
                t = time.perf_counter()
                for i in range(start, min(start + args.round, args.updates)):
                    stats = trainer._update([batches[p][i % len(batches[p])]])
                    if start:
                        tokens[p] += stats["ntokens"]
                torch.cuda.synchronize()
                if start:
                    seconds[p] += time.perf_counter() - t
                last[p] = stats["loss"]
            timed += 0 if start == 0 else min(args.round, args.updates - start)
    n_params = sum(x.numel() for x in trainers["fp32"].model.parameters())
    result = {"space": Path(space_path).name, "supernet_params": n_params, "timed_updates": timed}
    for p in PRECISIONS:
        result[p] = {
            "updates_per_s": round(timed / seconds[p], 2),
            "tokens_per_s": round(tokens[p] / seconds[p]),
            "speedup_vs_fp32": round(seconds["fp32"] / seconds[p], 3),
            "last_loss": round(last[p], 3),
        }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument(
        "--space", action="append", required=True, help="HAT supertransformer YAML (repeatable)"
    )
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--round", type=int, default=50, help="updates per precision before switching")
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: this benchmark needs a CUDA device")
    data = DataDir(args.data)
    for space in args.space:
        print(
            json.dumps(
                {
                    "device": torch.cuda.get_device_name(),
                    "torch": torch.__version__,
                    "max_tokens": args.max_tokens,
                    **run_space(space, data, args),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

"""`hat search` / evo_search.py: find the best SubTransformer under latency budget(s).

  python evo_search.py --configs=configs/multi30k/supertransformer/space0.yml \\
      --evo-configs=configs/multi30k/evo_search/cpu_epyc.yml [--latency-constraint 150 200 300]
  python evo_search.py ... --pareto                      (NSGA-II front of loss vs latency)

Fitness is the validation loss with weights inherited from the trained SuperTransformer
(--restore-file); latency comes from the predictor (--ckpt-path). With --verify-top K the
final top K are timed on this device with the latency dataset's protocol and settings,
interleaved with its reference SubTransformers; the device's drift factor is reported apart
from the predictor's error, and a candidate whose normalized latency breaks the budget is
replaced by the next best that meets it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from hat.cli import run_command
from hat.cli.args import add_space_args, evolution_from_args, space_from_args
from hat.cli.parser import HatArgumentParser
from hat.data.dataset import DataDir
from hat.errors import HatError
from hat.fsutil import atomic_write, file_sha256
from hat.latency.predictor import load_predictor
from hat.latency.timing import RUNTIMES, dataset_measure
from hat.search.evolution import Evolution, EvolutionConfig, LatencyCheck
from hat.search.fitness import Fitness, fitness_inputs
from hat.search.pareto import pareto_search, plot_front
from hat.search.verify import search_budgets
from hat.settings import add_settings
from hat.space import SUPERNET_KEYS
from hat.train.checkpoints import load_supernet


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat search", __doc__, config_options=("--configs", "--evo-configs"))
    g = p.add_argument_group("evolutionary search (HAT's keys)")
    add_settings(g, EvolutionConfig)
    g.add_argument("--ckpt-path", required=True, help="latency predictor")
    g.add_argument(
        "--feature-norm", type=float, nargs="+", help="HAT's bare predictors: their feature-norm"
    )
    g.add_argument("--lat-norm", type=float, help="HAT's bare predictors: their lat-norm")
    g.add_argument("--restore-file", required=True, help="trained SuperTransformer checkpoint")
    g.add_argument(
        "--write-config-path", required=True, help="where the best SubTransformer's YAML goes"
    )
    g.add_argument(
        "--latency-constraint",
        type=float,
        nargs="+",
        required=True,
        help="budget(s) in ms: several give one SubTransformer each, sharing evaluations",
    )
    g.add_argument(
        "--data", required=True, help="data directory (its valid split gives the fitness)"
    )
    g.add_argument("--max-tokens", type=int, default=4096, help="tokens per validation batch")
    g.add_argument(
        "--valid-cnt-max", type=int, help="use at most this many validation batches (HAT)"
    )
    g.add_argument("--valid-subset", default="valid")
    g = p.add_argument_group("hat")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument(
        "--search-dir", help="state (resume) and log; default: beside --write-config-path"
    )
    g.add_argument(
        "--no-cache", action="store_true", help="re-evaluate every candidate (HAT's behaviour)"
    )
    g.add_argument(
        "--pareto", action="store_true", help="NSGA-II over (loss, predicted latency) instead"
    )
    g.add_argument(
        "--pareto-params", action="store_true", help="Pareto: #params as a third objective"
    )
    g.add_argument(
        "--verify-top", type=int, default=0, metavar="K", help="time the final top K on this device"
    )
    g.add_argument(
        "--sentence-length",
        type=int,
        help="--verify-top: dummy sentence length (default: the dataset's, else 30)",
    )
    g.add_argument("--beam", type=int, help="--verify-top: beam (default: the dataset's, else 5)")
    g.add_argument(
        "--latiter", type=int, help="--verify-top: timed runs (default: the dataset's, else 10)"
    )
    g.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="--verify-top: the runtime it ships on (default: the dataset's, else torch)",
    )
    g.add_argument(
        "--latgpu", action="store_true", help="--verify-top on the GPU (and evaluate there)"
    )
    g.add_argument(
        "--cpu", action="store_true", help="evaluate on the CPU even if CUDA is available"
    )
    g.add_argument("--no-progress-bar", action="store_true")
    g.add_argument("--json", action="store_true", help="last line: one JSON object")
    add_space_args(p)
    return p


def _require(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise HatError(
            f"{what} not found: {path} (set it with --{what.split(' ')[0]} or in the YAML)"
        )


_SUPERNET_DIMS = (
    "encoder_embed_dim",
    "decoder_embed_dim",
    "encoder_layers",
    "decoder_layers",
    "qkv_dim",
)


def output_path(base: str, budget: float, several: bool) -> Path:
    p = Path(base)
    return p.with_name(f"{p.stem}@{budget:g}ms{p.suffix}") if several else p


def run(args: argparse.Namespace) -> None:
    _require(args.restore_file, "restore-file (SuperTransformer checkpoint)")
    _require(args.ckpt_path, "ckpt-path (latency predictor)")
    cfg = evolution_from_args(args)
    device = "cuda" if (args.latgpu or (torch.cuda.is_available() and not args.cpu)) else "cpu"
    net, payload = load_supernet(args.restore_file)
    space = net.space
    if all(getattr(args, k.replace("-", "_")) is not None for k in SUPERNET_KEYS.values()):
        space = space_from_args(args)  # the YAML may narrow the choices, never the dims
        if [getattr(space, k) for k in _SUPERNET_DIMS] != [
            getattr(net.space, k) for k in _SUPERNET_DIMS
        ]:
            raise HatError(f"--configs describes another SuperTransformer than {args.restore_file}")
        for arch in (space.largest(), space.smallest()):
            net.space.validate(arch)
    predictor = load_predictor(args.ckpt_path, args.feature_norm, args.lat_norm)
    data = DataDir(args.data)
    if data.vocab_size != net.settings.vocab_size:
        raise HatError(
            f"{args.data} has a {data.vocab_size}-token vocabulary, the SuperTransformer "
            f"{net.settings.vocab_size}: use the data it was trained on"
        )
    fitness = Fitness(
        net,
        data.split(args.valid_subset),
        args.max_tokens,
        args.valid_cnt_max,
        device=device,
        cache=not args.no_cache,
    )
    latency = LatencyCheck(predictor, cfg.latency_std_k)
    search_dir = Path(args.search_dir or Path(args.write_config_path).parent)
    search_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if args.pareto:
        front, seen = pareto_search(
            space,
            fitness,
            latency,
            args.population_size,
            args.evo_iter,
            args.seed,
            args.pareto_params,
        )
        out = Path(args.write_config_path).with_suffix(".pareto.json")
        with atomic_write(out) as f:
            json.dump([c.to_dict() for c in front], f, indent=1)
        plot_front(
            front, seen, out.with_suffix(".png"), f"NSGA-II: {len(seen)} SubTransformers evaluated"
        )
        for c in front:
            print(f"loss {c.loss:.3f}  predicted {c.latency_ms:8.1f} ms  {c.arch}")
        print(
            f"Pareto front of {len(front)} -> {out} (+ .png); {fitness.evaluations} evaluations, "
            f"{time.time() - start:.0f} s"
        )
        return
    inputs = {
        **fitness_inputs(
            args.restore_file, data, args.valid_subset, args.max_tokens, args.valid_cnt_max
        ),
        "predictor": file_sha256(args.ckpt_path),
        "predictor_norms": [args.feature_norm, args.lat_norm],
    }
    evolution = Evolution(
        space,
        fitness,
        latency,
        cfg,
        state_path=search_dir / "search_state.json",
        log_path=search_dir / "search_log.jsonl",
        progress=not args.no_progress_bar,
        inputs=inputs,
    )
    evolution.restore()
    measure = None
    if args.verify_top:
        measure = dataset_measure(
            predictor.meta,
            device,
            sentence_length=args.sentence_length,
            beam=args.beam,
            iters=args.latiter,
            runtime=args.runtime,
        )
    chosen = search_budgets(
        evolution, args.latency_constraint, args.verify_top, net.export, measure, predictor.meta
    )
    results = []
    for budget, best, verified in chosen:
        path = output_path(args.write_config_path, budget, len(chosen) > 1)
        best.arch.to_yaml(
            path,
            header=f"found by hat search: budget {budget:g} ms, "
            f"predicted {best.latency_ms:.1f} ms, "
            f"validation loss {best.loss:.4f} (inherited weights)",
        )
        results.append(
            {"budget_ms": budget, **best.to_dict(), "config_path": str(path), "verified": verified}
        )
        print(
            f"budget {budget:g} ms: loss {best.loss:.3f}, predicted {best.latency_ms:.1f} "
            f"± {best.latency_std_ms:.1f} ms -> {path}"
        )
        for r in verified:
            drift = (
                f"  normalized {r['normalized_ms']:.1f} ms  drift x{r['drift']:.2f}"
                if r["drift"] is not None
                else ""
            )
            verdict = "ok" if r["meets_budget"] else "OVER BUDGET"
            print(
                f"   verify: loss {r['loss']:.3f}  predicted {r['predicted_ms']:.1f} ms  measured "
                f"{r['measured_ms']:.1f} ms{drift}  {verdict}"
            )
    summary = {
        "results": results,
        "evaluations": fitness.evaluations,
        "fitness_requests": fitness.requests,
        "evaluations_saved": fitness.saved,
        "seconds": time.time() - start,
    }
    print(
        f"{fitness.evaluations} fitness evaluations for {fitness.requests} requests "
        f"({fitness.saved} saved by the cache), {summary['seconds']:.0f} s"
    )
    if args.json:
        print(json.dumps(summary))


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)

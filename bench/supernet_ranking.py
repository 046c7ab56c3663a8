"""Benchmark: how well a SuperTransformer ranks SubTransformers (issue #15, item 2).

References: --per-depth SubTransformers for every decoder depth of the space, spread evenly by
#params within the depth (so the ranking within a depth is measured, not only across sizes),
each trained from scratch until converged: its validation loss changed by less than
--converge (1%) over the last 20% of its updates, both the last validation and the mean of
the last three (the trainer's --convergence-tolerance and --convergence-smoothing; validated
every --validate-every updates; --updates caps it). Each is then scored on the
validation split: loss and SacreBLEU (beam 5). The recipe is the standard one of
configs/multi30k/subtransformer/common.yml.
Supernets (--supernet NAME=CHECKPOINT, any number): each reference's validation loss with
inherited weights. A few-shot supernet is a comma-separated list of checkpoints, each trained
on a part of the space (bench/ranking_study.sh: one per decoder depth, started from the uniform
supernet): a reference is scored by the one whose space holds its decoder depth. Kendall tau
(and Spearman rho) of each supernet's order against the
references' BLEU order and loss order, over all references and within each decoder depth,
next to two free proxies: #params (bigger = better) and decoder depth (deeper = better).

    python bench/supernet_ranking.py --data data/binary/multi30k_en_de \\
        --supernet uniform=runs/m30k_super/checkpoint_last.pt \\
        --supernet sandwich=runs/m30k_sandwich/checkpoint_last.pt \\
        --per-depth 3 --updates 12000 --work-dir runs/ranking

From-scratch runs resume after a kill (their checkpoints live in --work-dir) and a finished one
is reused only when its recipe matches. On a GPU they are launch-bound: train them in parallel
processes with `--shard I/K` (each trains every K-th reference and exits), then run once
without it (`--no-train` ranks over the references finished so far).

Supernet scores can outlive their checkpoints too: with `--scores-ledger FILE` every supernet
named scores all the references (finished or not) and appends the losses there, keyed by the
checkpoints' contents, the arch and the fitness settings (validation data included); the
ranking then uses every supernet in that ledger (of each name, the checkpoints scored last on
every reference) next to those named. `--score-only` scores and exits, so a
supernet trained in stages is scored at each stage (bench/ranking_study.sh) and ranked in a
later session, after its references have finished and its checkpoints are gone. `--space-from
CHECKPOINT` takes the space and model settings from any checkpoint of the space (a 1-update
run) where no supernet is named.

`--finetune NAME` also trains a few references (`--finetune-refs`) from supernet NAME's
inherited weights, with the same recipe and criterion, and reports their BLEU, loss and updates
next to the from-scratch runs: whether the pipeline's --finetune-inherited reaches the same
BLEU (issue #15, item 4). It trains them under `--no-train` too (which leaves the from-scratch
references as they are), so it runs beside the shards that train those.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from hat.checkpoint import load_checkpoint
from hat.cli import setup_logging
from hat.cli.train import build_parser
from hat.data.dataset import DataDir
from hat.errors import HatError
from hat.evaluate import translate_dataset
from hat.fsutil import atomic_write, changed_keys, file_sha256
from hat.generate import MAX_LEN_B
from hat.latency.metrics import kendall_tau, spearman
from hat.ledger import Ledger
from hat.profile import analytic_params
from hat.search.fitness import Fitness, fitness_settings
from hat.settings import from_flags
from hat.space import ArchConfig, SearchSpace
from hat.supernet import SuperTransformer
from hat.train.checkpoints import load_supernet
from hat.train.distributed import DistInfo
from hat.train.trainer import TrainConfig, Trainer
from hat.transformer import ModelSettings, Transformer

log = logging.getLogger("supernet_ranking")

# The references train with the standard SubTransformer recipe (Adam, inverse sqrt, 2,048 tokens)
STANDARD_RECIPE = Path(__file__).resolve().parents[1] / "configs/multi30k/subtransformer/common.yml"


def reference_configs(space: SearchSpace, per_depth: int, seed: int) -> list[ArchConfig]:
    """`per_depth` SubTransformers of every decoder depth, evenly spaced by #params among
    uniform samples of that depth plus its homogeneous largest and smallest (ends included)."""
    rng = random.Random(seed)
    samples = {space.sample(rng) for _ in range(300 * len(space.decoder_layer_num_choice))}
    refs = []
    for depth in sorted(space.decoder_layer_num_choice):
        ends = {space.homogeneous(pick, decoder_layers=depth) for pick in (max, min)}
        pool = sorted(
            {a for a in samples if a.decoder_layer_num == depth} | ends,
            key=lambda a: analytic_params(a, space.qkv_dim),
        )
        n = min(per_depth, len(pool))
        refs += [pool[round(i * (len(pool) - 1) / max(n - 1, 1))] for i in range(n)]
    return refs


def reference_train_config(args: argparse.Namespace) -> TrainConfig:
    """The references' training settings: the standard recipe, trained until converged."""
    standard = build_parser().parse_args([f"--configs={STANDARD_RECIPE}"])
    return from_flags(
        TrainConfig,
        vars(standard),
        max_update=args.updates,
        convergence_tolerance=args.converge,
        validate_interval_updates=args.validate_every,
        save_interval_updates=args.validate_every,
        keep_interval_updates=1,
        keep_last_epochs=1,
        seed=args.seed,
        precision=args.precision,
        progress_bar=False,
    )


def reference_recipe(
    arch: ArchConfig,
    settings: ModelSettings,
    data: DataDir,
    args: argparse.Namespace,
    inherited_from: str | None = None,
) -> dict:
    """What a reference's result depends on (as JSON reads it back): its arch and model
    settings, the training settings, the data's contents (not their paths), the supernet it
    starts from (its checkpoint's sha256) and the BLEU test's output length."""
    train = dataclasses.asdict(reference_train_config(args))
    del train["save_dir"]
    recipe = {
        "arch": arch.to_dict(),
        **({"inherited_from": inherited_from} if inherited_from else {}),
        "model": settings.to_dict(),
        "train": train,
        "max_len_b": args.max_len_b,
        "data": data.content_sha256("train", "valid"),
    }
    return json.loads(json.dumps(recipe))


def few_shot_member(name: str, nets: list[SuperTransformer], arch: ArchConfig) -> SuperTransformer:
    """The supernet of group `name` that scores `arch`: the one whose space holds its decoder
    depth (a single supernet scores everything)."""
    if len(nets) == 1:
        return nets[0]
    depth = arch.decoder_layer_num
    holding = [n for n in nets if depth in n.space.decoder_layer_num_choice]
    if len(holding) != 1:
        raise HatError(
            f"--supernet {name}: {len(holding)} of its {len(nets)} supernets hold decoder depth "
            f"{depth} (a few-shot supernet needs exactly one per depth)"
        )
    return holding[0]


def score_settings(data: DataDir) -> dict:
    """The fitness settings of every supernet score: the validation split's contents and the
    search's validation batches and loss (hat.search.fitness's defaults)."""
    return fitness_settings(data, "valid")


def score_inputs(checkpoints: list[str], arch: ArchConfig, settings: dict) -> dict:
    """What a supernet's score of `arch` depends on: the supernet's checkpoints (sha256 of
    their contents), the arch and the fitness settings."""
    return {"supernet": checkpoints, "arch": arch.to_dict(), **settings}


def supernet_facts(name: str, payloads: list[dict]) -> dict:
    """A supernet's name and training: updates and wall seconds summed over its parts (a
    few-shot supernet's own, not those of the supernet they started from)."""
    return {
        "name": name,
        "updates": sum(p["train_state"]["updates"] for p in payloads),
        "wall_s": round(sum(p["train_state"]["wall_seconds"] for p in payloads), 1),
        "parts": len(payloads),
    }


def score_supernets(
    loaded: dict[str, list[tuple[SuperTransformer, dict]]],
    shas: dict[str, list[str]],
    archs: list[ArchConfig],
    indices: Iterable[int],
    data: DataDir,
    args: argparse.Namespace,
) -> dict[str, tuple[dict[int, float], dict]]:
    """Each named supernet's validation loss of `archs[i]` with inherited weights (lower =
    predicted better) for i in `indices`, by i, and its facts. With --scores-ledger, scores
    recorded there are reused and new ones appended (a checkpoint scored before under another
    name: its scores again, under this one)."""
    ledger = Ledger(args.scores_ledger) if args.scores_ledger else None
    settings = score_settings(data)
    valid, out = data.split(settings["valid_subset"]), {}
    for name, group in loaded.items():
        nets, facts = [net for net, _ in group], supernet_facts(name, [p for _, p in group])
        fitness: dict[int, Fitness] = {}  # by part, built at its first unscored arch
        losses = {}
        for i in indices:
            arch = archs[i]
            inputs = score_inputs(shas[name], arch, settings)
            found = ledger.find(inputs) if ledger else None
            if found is None:
                net = few_shot_member(name, nets, arch)
                if id(net) not in fitness:
                    fitness[id(net)] = Fitness(
                        net,
                        valid,
                        settings["max_tokens"],
                        settings["valid_cnt_max"],
                        settings["label_smoothing"],
                        device=args.device,
                    )
                losses[i] = fitness[id(net)].loss(arch)
            else:
                losses[i] = found["valid_loss"]
            if ledger and (found is None or found.get("name") != name):  # new, or renamed
                ledger.add(inputs, {**facts, "valid_loss": losses[i]})
        out[name] = (losses, facts)
    return out


def recorded_supernets(
    ledger: Ledger, archs: list[ArchConfig], data: DataDir
) -> dict[str, tuple[dict[int, float], dict]]:
    """The supernets scored in `ledger` on these archs with this data's fitness settings: for
    each name, the losses (by arch index) and facts of the checkpoints scored last under it
    that scored every arch (a scoring cut by a kill counts only where no other did)."""
    index = {json.dumps(a.to_dict(), sort_keys=True): i for i, a in enumerate(archs)}
    settings = score_settings(data)
    groups: dict[tuple, tuple[dict[int, float], dict]] = {}
    order: dict[str, list[tuple]] = {}  # name -> its checkpoints' keys, last scored last
    for record in ledger.entries():
        inputs, result = record["inputs"], record["result"]
        i = index.get(json.dumps(inputs.get("arch"), sort_keys=True))
        if i is None or any(inputs.get(k) != v for k, v in settings.items()):
            continue
        key = tuple(inputs["supernet"])
        losses = groups[key][0] if key in groups else {}
        losses[i] = result["valid_loss"]
        groups[key] = (losses, {k: v for k, v in result.items() if k != "valid_loss"})
        keys = order.setdefault(result["name"], [])
        keys[:] = [k for k in keys if k != key] + [key]
    chosen = {}
    for name, keys in order.items():
        whole = [k for k in keys if len(groups[k][0]) == len(archs)]
        chosen[name] = groups[(whole or keys)[-1]]
    return chosen


def add_to_ledger(ledger: Ledger, result: dict) -> None:
    """A reference's result under its recipe (the record's inputs, so not repeated in it)."""
    ledger.add(result["recipe"], {k: v for k, v in result.items() if k != "recipe"})


def finished_reference(out: Path, recipe: dict, args: argparse.Namespace) -> dict | None:
    """A finished run of `recipe`: in its work dir (refused if trained with another recipe;
    added to the --ledger if missing there) or in the --ledger; None if there is none."""
    ledger = Ledger(args.ledger) if args.ledger else None
    found = ledger.find(recipe) if ledger else None
    done = out / "result.json"
    if done.exists():
        result = json.loads(done.read_text())
        if result.get("recipe") != recipe:
            sys.exit(f"error: {done} was trained with another recipe: use another --work-dir")
        if ledger and found is None:
            add_to_ledger(ledger, result)
        return result
    return None if found is None else {"recipe": recipe, **found}


def _resumable(recipe: dict) -> dict:
    """A recipe as far as a run may resume under another: the cap on updates left out (it
    may be raised; the standard recipe's inverse-sqrt schedule does not depend on it)."""
    train = {k: v for k, v in recipe["train"].items() if k != "max_update"}
    train["schedule"] = {k: v for k, v in train["schedule"].items() if k != "max_update"}
    return {**recipe, "train": train}


def claim_work_dir(out: Path, recipe: dict, data: DataDir) -> None:
    """Record `recipe` in `out` before training there; refuse (a one-line error) an unfinished
    run of another recipe, which the trainer would otherwise resume. A checkpoint from before
    recipes were recorded must at least hold this arch, these model settings and vocabulary."""
    stamp, last = out / "recipe.json", out / "checkpoint_last.pt"
    if stamp.exists():
        before, now = _resumable(json.loads(stamp.read_text())), _resumable(recipe)
        differ = [
            f"train.{k}" if key == "train" else key
            for key in changed_keys(before, now)
            for k in (changed_keys(before[key], now[key]) if key == "train" else [key])
        ]
        if differ:
            sys.exit(
                f"error: {out} holds a run of another recipe ({', '.join(differ)} differ): "
                "use another --work-dir, or delete it"
            )
    elif last.exists():
        payload = load_checkpoint(last)
        held = json.loads(json.dumps([payload.get("arch"), payload.get("settings")]))
        spm = payload.get("spm_model")
        if (
            held != [recipe["arch"], recipe["model"]]
            or spm != (data.path / "spm.model").read_bytes()
        ):
            sys.exit(
                f"error: {last} holds another arch, model settings or vocabulary: use another "
                "--work-dir, or delete it"
            )
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(stamp) as f:
        json.dump(recipe, f)


def train_reference(
    arch: ArchConfig,
    settings: ModelSettings,
    data: DataDir,
    out: Path,
    args: argparse.Namespace,
    inherit: tuple[str, SuperTransformer] | None = None,
) -> dict:
    """Train `arch` until converged (or --updates): from scratch, or from the weights it
    inherits from `inherit` (its checkpoint's sha256 and the supernet); its validation loss and
    BLEU. A run finished before (work dir or --ledger) is reused, not trained again; an
    unfinished one in `out` is resumed only under the same recipe."""
    recipe = reference_recipe(arch, settings, data, args, inherit[0] if inherit else None)
    result = finished_reference(out, recipe, args)
    if result is not None:
        log.info("%s: finished before (valid BLEU %.2f)", out.name, result["valid_bleu"])
        return result
    claim_work_dir(out, recipe, data)
    log.info("%s: training %s into %s", out.name, arch, out)
    torch.manual_seed(args.seed)
    cfg = dataclasses.replace(reference_train_config(args), save_dir=str(out))
    device = torch.device(args.device)
    model = inherit[1].export(arch) if inherit else Transformer(arch, settings)
    trainer = Trainer(model, cfg, data, None, DistInfo(device=device))
    trainer.resume()
    valid = trainer.train()
    change, converged = trainer.convergence
    bleu = translate_dataset(
        trainer.model,
        data.split("valid"),
        data.tokenizer,
        beam=5,
        max_len_b=args.max_len_b,
        device=device,
    ).sacrebleu
    result = {
        "recipe": recipe,
        "valid_loss": valid["model_loss"],
        "valid_bleu": bleu,
        "updates": trainer.state.updates,
        "converged": converged,
        "last_change": change,
        "valid_history": trainer.state.valid_losses,  # [update, loss]: its curve outlives out/
    }
    log.info(
        "%s: %d updates, converged %s, valid loss %.3f, BLEU %.2f",
        out.name,
        result["updates"],
        converged,
        result["valid_loss"],
        bleu,
    )
    if args.ledger:  # first: a kill between the two leaves the result where it outlives out/
        add_to_ledger(Ledger(args.ledger), result)
    with atomic_write(out / "result.json") as f:
        json.dump(result, f)
    return result


def finetune_comparison(
    archs: list[ArchConfig],
    scratch: dict[int, dict],
    supernet: tuple[str, SuperTransformer],
    settings: ModelSettings,
    data: DataDir,
    args: argparse.Namespace,
) -> dict:
    """--finetune-refs trained from the inherited weights of `supernet` (its checkpoint, the
    net) with the references' recipe and criterion, next to their from-scratch runs:
    validation BLEU, loss and updates of both (unfinished references left out)."""
    n = len(archs)
    picked = args.finetune_refs or [n // 3, 2 * n // 3]
    missing = [i for i in picked if i not in scratch]
    if missing:
        print(f"--finetune-refs {missing}: not finished from scratch, left out", file=sys.stderr)
    rows = []
    for i in (i for i in picked if i in scratch):
        out = Path(args.work_dir) / f"ref{i}_finetune_{args.finetune}"
        sub = settings.for_subtransformer(archs[i])
        tuned = train_reference(archs[i], sub, data, out, args, supernet)
        rows.append(
            {
                "ref": i,
                **{
                    f"{kind}_{k}": r[k]
                    for kind, r in (("scratch", scratch[i]), ("finetuned", tuned))
                    for k in ("valid_bleu", "valid_loss", "updates", "converged")
                },
            }
        )
    return {"supernet": args.finetune, "refs": rows}


def _tau(score: list[float], truth: list[float]) -> float | None:
    """Kendall tau, None where it is undefined (fewer than 2 items, or a constant side)."""
    if len(score) < 2 or len(set(score)) < 2 or len(set(truth)) < 2:
        return None
    return kendall_tau(score, truth)


def rank_agreement(score: list[float], truth: list[float], depths: list[int]) -> dict:
    """Kendall tau of `score` (higher = predicted better) against `truth` (higher = better):
    over all references, within each decoder depth, and the mean of the within-depth taus."""
    within = {}
    for d in sorted(set(depths)):
        idx = [i for i, x in enumerate(depths) if x == d]
        within[d] = _tau([score[i] for i in idx], [truth[i] for i in idx])
    defined = [t for t in within.values() if t is not None]
    overall = _tau(score, truth)  # None where undefined: so is Spearman's rho (not NaN)
    return {
        "overall": overall,
        "spearman": spearman(score, truth) if overall is not None and len(score) > 2 else None,
        "within_depth": within,
        "within_depth_mean": sum(defined) / len(defined) if defined else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True)
    p.add_argument(
        "--supernet",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="a supernet to rank with (a few-shot one: its parts' checkpoints, comma-separated)",
    )
    p.add_argument(
        "--space-from",
        metavar="CHECKPOINT",
        help="the space and model settings: any checkpoint of the space (default: the first "
        "--supernet of the whole space)",
    )
    p.add_argument(
        "--scores-ledger",
        metavar="FILE",
        help="supernet scores: every --supernet scores all the references and appends the "
        "losses here; the ranking also uses the supernets scored here before",
    )
    p.add_argument(
        "--score-only",
        action="store_true",
        help="score the --supernet checkpoints into --scores-ledger and exit",
    )
    p.add_argument("--per-depth", type=int, default=3, help="references per decoder depth")
    p.add_argument("--updates", type=int, default=12000, help="cap on a reference's updates")
    p.add_argument(
        "--converge", type=float, default=0.01, help="converged: loss change over the last 20%%"
    )
    p.add_argument("--validate-every", type=int, default=200, help="updates between validations")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument(
        "--max-len-b", type=int, default=MAX_LEN_B, help="validation BLEU: output length cap"
    )
    p.add_argument("--work-dir", default="runs/ranking")
    p.add_argument(
        "--ledger",
        metavar="FILE",
        help="append each finished reference's result here (JSON lines) and reuse the ones "
        "there whose recipe matches: commit it, and a study survives the loss of --work-dir",
    )
    p.add_argument(
        "--out", help="also write the summary JSON here (hat pipeline's --ranking-study reads it)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--shard", metavar="I/K", help="only train the references i with i %% K == I, then exit"
    )
    p.add_argument(
        "--no-train",
        action="store_true",
        help="rank over the references already finished (e.g. shards stopped by a time limit)",
    )
    p.add_argument(
        "--finetune",
        metavar="NAME",
        help="also train --finetune-refs from this supernet's inherited weights until converged "
        "(the same recipe) and compare with from scratch (the pipeline's --finetune-inherited)",
    )
    p.add_argument(
        "--finetune-refs",
        type=int,
        nargs="+",
        metavar="I",
        help="references to fine-tune (default: two, at a third and two thirds of the list)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    data = DataDir(args.data)
    if any("=" not in s for s in args.supernet):
        sys.exit("error: --supernet takes NAME=CHECKPOINT")
    given = dict(s.split("=", 1) for s in args.supernet)
    if args.finetune and args.finetune not in given:
        sys.exit(f"error: --finetune {args.finetune}: no --supernet of that name")
    if args.finetune and "," in given[args.finetune]:
        sys.exit(f"error: --finetune {args.finetune}: a few-shot supernet (name one checkpoint)")
    if args.score_only and not (given and args.scores_ledger):
        sys.exit("error: --score-only needs --supernet and --scores-ledger")
    for path in (args.ledger, args.scores_ledger):
        if path:
            Ledger(path).check()  # a broken ledger fails now, not after hours of training
    paths = {name: joined.split(",") for name, joined in given.items()}
    shas = {name: [file_sha256(p) for p in group] for name, group in paths.items()}
    loaded = {name: [load_supernet(p) for p in group] for name, group in paths.items()}
    if shas != {name: [file_sha256(p) for p in group] for name, group in paths.items()}:
        sys.exit("error: a --supernet checkpoint changed while it was loaded (still training?)")
    supernets = {name: [net for net, _ in group] for name, group in loaded.items()}
    whole = [group[0] for group in supernets.values() if len(group) == 1]  # the whole space
    if args.space_from:
        whole.insert(0, load_supernet(args.space_from)[0])
    if not whole:
        sys.exit("error: name --space-from or a --supernet of the whole space (one checkpoint)")
    space, settings = whole[0].space, whole[0].settings
    archs = reference_configs(space, args.per_depth, args.seed)
    if args.score_only:
        scored = score_supernets(loaded, shas, archs, range(len(archs)), data, args)
        for losses, about in scored.values():
            print(json.dumps({**about, "scored": len(losses)}))
        return
    work = Path(args.work_dir)
    if args.shard:
        shard, shards = map(int, args.shard.split("/"))
        for i in range(shard, len(archs), shards):
            train_reference(
                archs[i], settings.for_subtransformer(archs[i]), data, work / f"ref{i}", args
            )
        return
    refs, kept, refs_by_index = [], [], {}
    for i, arch in enumerate(archs):
        out, t = work / f"ref{i}", time.time()
        sub = settings.for_subtransformer(arch)
        if (
            args.no_train
            and finished_reference(out, reference_recipe(arch, sub, data, args), args) is None
        ):
            continue
        refs.append(train_reference(arch, sub, data, out, args))
        kept.append(arch)
        refs_by_index[i] = refs[-1]
        row = {"ref": i, "params": analytic_params(arch, space.qkv_dim), "arch": str(arch)}
        print(json.dumps({**row, **refs[-1], "seconds": round(time.time() - t, 1)}), flush=True)
    if not refs:
        sys.exit("error: no finished reference to rank (train them first)")
    depths = [a.decoder_layer_num for a in kept]
    # with a ledger every reference is scored, so that later references rank without the net
    indices = range(len(archs)) if args.scores_ledger else list(refs_by_index)
    scored = score_supernets(loaded, shas, archs, indices, data, args)
    if args.scores_ledger:
        scored = {**recorded_supernets(Ledger(args.scores_ledger), archs, data), **scored}
    scores, facts, inherited = {}, {}, {}
    for name, (losses, about) in scored.items():  # lower loss = predicted better
        missing = [i for i in refs_by_index if i not in losses]
        if missing:
            print(f"supernet {name}: references {missing} not scored: left out", file=sys.stderr)
            continue
        scores[f"supernet_{name}"] = [-losses[i] for i in refs_by_index]
        facts[name] = {k: about[k] for k in ("updates", "wall_s", "parts")}
        inherited[name] = losses
    scores["proxy_params"] = [float(analytic_params(a, space.qkv_dim)) for a in kept]
    scores["proxy_depth"] = [float(d) for d in depths]
    truths = {"bleu": [r["valid_bleu"] for r in refs], "loss": [-r["valid_loss"] for r in refs]}
    summary = {
        "references": len(kept),
        "per_depth": args.per_depth,
        "converged": sum(r["converged"] for r in refs),
        "updates": {
            "cap": args.updates,
            "median": sorted(r["updates"] for r in refs)[len(refs) // 2],
        },
        "rank_by": {
            truth: {name: rank_agreement(s, values, depths) for name, s in scores.items()}
            for truth, values in truths.items()
        },
        "supernets": facts,
        "table": [  # each reference: what it scored trained alone, and with inherited weights
            {
                "ref": i,
                "depth": arch.decoder_layer_num,
                "params": analytic_params(arch, space.qkv_dim),
                **{k: ref[k] for k in ("valid_loss", "valid_bleu", "updates", "converged")},
                "inherited_loss": {name: losses[i] for name, losses in inherited.items()},
            }
            for (i, ref), arch in zip(refs_by_index.items(), kept, strict=True)
        ],
    }
    if args.finetune:
        summary["finetune"] = finetune_comparison(
            archs,
            refs_by_index,
            (shas[args.finetune][0], supernets[args.finetune][0]),
            settings,
            data,
            args,
        )
    print(json.dumps(summary))
    if args.out:
        with atomic_write(args.out) as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    setup_logging()  # each reference's start and end, and the trainer's lines, on stderr
    try:
        main()
    except HatError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

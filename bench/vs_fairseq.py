"""Benchmark: hat against fairseq side by side in one run, on Multi30k En-De (issue #17).

Both engines get the same data, model and recipe:
  data    hat's sentencepiece model and token ids; fairseq binarizes the same pieces with a
          dictionary written in hat's id order, so both see identical token ids;
  model   3+3 layers, d256, FFN 1024, 4 heads, shared embeddings, post-norm (fairseq's
          `transformer`, hat's compact Transformer);
  recipe  configs/multi30k/subtransformer/{common,transformer_256}.yml (read here and passed to
          fairseq as its flags), the same --max-tokens and batch packing, both on the CPU with
          torch's threads.
Steps, each engine alternating with the other in rounds (A/B, then B/A) so drift hits both:
  train      --updates updates in --rounds rounds; each round resumes the engine's last
             checkpoint. Throughput: target tokens / wall time of the updates from each engine's
             per-update log, the first update of every round left out (startup, checkpoint
             loading, validation and saving are outside it); the whole rounds' wall time too.
  loss       validation loss (label-smoothed, base 2) of both final models by one evaluator
             (hat's): fairseq's weights load into hat's model unchanged.
  translate  test_2016_flickr, beam 5, --max-tokens per batch, --translate-rounds times:
             fairseq-generate on fairseq's final checkpoint, and hat on the same weights in fp32
             and int8 (dynamic quantization). Sentences/s as each engine reports it (fairseq:
             decoding only; hat: batching, decoding and detokenization) and per whole command.
             Identical weights make "equal quality" exact; SacreBLEU of each shows it.
  memory     peak resident memory of each engine's process (max over its processes).
fairseq comes from a scratch venv (--fairseq-venv; ../shared/peers.md); without it the
benchmark says so and stops. Prints one JSON object; --out keeps the work directory, and
--translate-only reruns the translation step on the checkpoints an earlier run left there.

    python bench/vs_fairseq.py --multi30k ../shared/data/multi30k --updates 300 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sacrebleu
import torch

from hat.config import load_yaml
from hat.data.dataset import DataDir
from hat.data.preprocess import preprocess
from hat.data.tokenizer import EOS_ID
from hat.hub import convert_state_dict
from hat.train.checkpoints import load_model
from hat.train.criterion import label_smoothed_nll
from hat.train.trainer import LN2

ROOT = Path(__file__).resolve().parents[1]
RECIPE = [
    ROOT / "configs/multi30k/subtransformer/transformer_256.yml",
    ROOT / "configs/multi30k/subtransformer/common.yml",
]


def recipe() -> dict:
    """The hat recipe's keys (the SubTransformer's YAML over the common one)."""
    keys: dict = {}
    for path in reversed(RECIPE):
        keys.update(load_yaml(path))
    return keys


def fairseq_flags(r: dict, max_tokens: int, seed: int) -> list[str]:
    """fairseq-train flags for the same model and recipe as `r` (HAT's key names)."""
    flags = ["--arch", "transformer", "--share-all-embeddings", "--cpu", "--seed", str(seed)]
    for s in ("encoder", "decoder"):
        flags += [
            f"--{s}-layers",
            str(r[f"{s}-layer-num-subtransformer"]),
            f"--{s}-embed-dim",
            str(r[f"{s}-embed-dim-subtransformer"]),
            f"--{s}-ffn-embed-dim",
            str(r[f"{s}-ffn-embed-dim-all-subtransformer"][0]),
            f"--{s}-attention-heads",
            str(r[f"{s}-self-attention-heads-all-subtransformer"][0]),
        ]
    for key in (
        "optimizer",
        "adam-betas",
        "weight-decay",
        "dropout",
        "attention-dropout",
        "criterion",
        "label-smoothing",
        "warmup-updates",
        "lr-scheduler",
        "warmup-init-lr",
        "lr",
    ):
        flags += [f"--{key}", str(r[key])]
    # hat packs batches up to --max-tokens; fairseq also rounds each batch's sentences down to a
    # multiple of 8 by default (for GPU kernels), ~10% fewer tokens per update: off, same batches
    return flags + ["--max-tokens", str(max_tokens), "--required-batch-size-multiple", "1"]


def hat_flags(max_tokens: int, seed: int, precision: str) -> list[str]:
    return [
        f"--precision={precision}",
        f"--configs={RECIPE[0]}",
        f"--sub-configs={RECIPE[1]}",
        "--cpu",
        "--seed",
        str(seed),
        "--max-tokens",
        str(max_tokens),
        "--no-progress-bar",
    ]


def run(cmd: list[str], log: Path, env: dict | None = None) -> tuple[float, float, str]:
    """Run `cmd` to the end: (wall seconds, peak resident MB, its output). Fails loudly."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    text = log.read_text(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {' '.join(cmd[:3])} ... failed; its output is in {log}:\n{text[-2000:]}")
    return wall, usage.ru_maxrss / 1024, text


# --- data ---------------------------------------------------------------------------------------
def prepare(work: Path, multi30k: Path, vocab: int, fairseq_bin: Path) -> tuple[Path, Path]:
    """hat's data directory, and fairseq's binarization of the same token ids."""
    hat_data, fs_data = work / "hat-data", work / "fairseq-data"
    if not (hat_data / "metadata.json").exists():
        preprocess(
            "en",
            "de",
            str(multi30k / "train"),
            hat_data,
            validpref=str(multi30k / "val"),
            testpref=str(multi30k / "test_2016_flickr"),
            vocab_size=vocab,
            threads=2,
        )
    if not (fs_data / "dict.en.txt").exists():
        data = DataDir(hat_data)
        pieces = data.tokenizer.pieces()
        text = work / "pieces"
        text.mkdir(exist_ok=True)
        for split in ("train", "valid", "test"):
            ds = data.split(split)
            for lang, arr in (("en", ds.src), ("de", ds.tgt)):
                lines = (" ".join(pieces[t] for t in arr[i]) for i in range(len(arr)))
                (text / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
        # fairseq's Dictionary puts <s> <pad> </s> <unk> at 0-3, as hat's tokenizer does
        (text / "dict.txt").write_text("".join(f"{p} 1\n" for p in pieces[EOS_ID + 2 :]))
        run(
            [
                str(fairseq_bin / "fairseq-preprocess"),
                "--source-lang",
                "en",
                "--target-lang",
                "de",
                "--srcdict",
                str(text / "dict.txt"),
                "--joined-dictionary",
                "--trainpref",
                str(text / "train"),
                "--validpref",
                str(text / "valid"),
                "--testpref",
                str(text / "test"),
                "--destdir",
                str(fs_data),
                "--workers",
                "2",
            ],
            work / "fairseq-preprocess.log",
        )
    return hat_data, fs_data


# --- training -----------------------------------------------------------------------------------
def hat_round_speed(log: Path, first: int, last: int) -> tuple[float, float]:
    """(target tokens, seconds) of updates first+1..last from hat's train_log.jsonl."""
    rows = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if row.get("type") == "train":
            rows[int(row["update"])] = row
    tokens = sum(rows[u]["ntokens"] for u in range(first + 1, last + 1))
    return tokens, rows[last]["wall"] - rows[first]["wall"]


def fairseq_round_speed(text: str, first: int, last: int) -> tuple[float, float]:
    """(target tokens, seconds) of updates first+1..last from fairseq's per-update json log:
    each update's wps covers the time since the previous update was logged."""
    tokens = seconds = 0.0
    for m in re.finditer(r"\| train_inner \| (\{.*\})", text):
        row = json.loads(m.group(1))
        if first < int(row["num_updates"]) <= last:
            tokens += float(row["wpb"])
            seconds += float(row["wpb"]) / float(row["wps"])
    return tokens, seconds


def valid_loss(path: Path, data: DataDir, smoothing: float, sentences: int = 100) -> dict:
    """Label-smoothed loss and nll (base 2, per target token) of a hat checkpoint on valid."""
    model, _ = load_model(path)
    ds = data.split("valid")
    loss = nll = tokens = 0.0
    with torch.no_grad():
        for start in range(0, len(ds), sentences):
            batch = ds.collate(list(range(start, min(start + sentences, len(ds)))))
            lo, nl = label_smoothed_nll(
                model(batch.src_tokens, batch.prev_output_tokens), batch.target, smoothing
            )
            loss, nll, tokens = loss + lo.item(), nll + nl.item(), tokens + batch.ntokens
    return {"loss": round(loss / tokens / LN2, 4), "nll_loss": round(nll / tokens / LN2, 4)}


def fairseq_to_hat(fs_ckpt: Path, hat_ckpt: Path, out: Path, python: Path) -> Path:
    """A hat checkpoint holding fairseq's weights (same architecture as `hat_ckpt`)."""
    state = out.with_suffix(".state.pt")
    subprocess.run(
        [
            str(python),
            "-c",
            "import sys, torch; ck = torch.load(sys.argv[1], weights_only=False); "
            "torch.save({k: v.float() for k, v in ck['model'].items()}, sys.argv[2])",
            str(fs_ckpt),
            str(state),
        ],
        check=True,
    )
    model, _ = load_model(hat_ckpt)
    model.load_state_dict(convert_state_dict(torch.load(state, weights_only=True), True))
    model.save(out)
    return out


# --- translation --------------------------------------------------------------------------------
def fairseq_hypotheses(text: str) -> list[str]:
    hyps = {int(m.group(1)): m.group(2) for m in re.finditer(r"^D-(\d+)\t\S+\t(.*)$", text, re.M)}
    return [hyps.get(i, "") for i in range(len(hyps))]


def speed(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def train_side_by_side(
    args: argparse.Namespace, work: Path, hat_data: Path, fs_data: Path, fs_bin: Path, fs_env: dict
) -> dict:
    """Train both engines for --updates updates in --rounds alternating rounds: the target
    tokens and seconds of the timed updates, wall time and peak memory of each engine."""
    r = recipe()
    per_round = -(-args.updates // args.rounds)
    train = {
        e: {**dict.fromkeys(("tokens", "seconds", "updates", "wall", "rss"), 0.0), "rounds": []}
        for e in ("hat", "fairseq")
    }
    for k in range(args.rounds):
        first, last = k * per_round, min((k + 1) * per_round, args.updates)
        order = ["hat", "fairseq"] if k % 2 == 0 else ["fairseq", "hat"]
        for engine in order:
            if engine == "hat":
                wall, rss, _ = run(
                    [
                        sys.executable,
                        "train.py",
                        *hat_flags(args.max_tokens, args.seed, args.hat_precision),
                    ]
                    + [f"--data={hat_data}", f"--save-dir={work / 'hat-ckpt'}"]
                    + ["--max-update", str(last), "--log-interval", "1"],
                    work / f"hat-train-{k}.log",
                )
                tok, sec = hat_round_speed(work / "hat-ckpt/train_log.jsonl", first + 1, last)
            else:
                wall, rss, text = run(
                    [str(fs_bin / "fairseq-train"), str(fs_data)]
                    + fairseq_flags(r, args.max_tokens, args.seed)
                    + ["--save-dir", str(work / "fairseq-ckpt"), "--max-update", str(last)]
                    + ["--log-format", "json", "--log-interval", "1", "--no-epoch-checkpoints"],
                    work / f"fairseq-train-{k}.log",
                    fs_env,
                )
                tok, sec = fairseq_round_speed(text, first + 1, last)
            t = train[engine]
            t["tokens"], t["seconds"] = t["tokens"] + tok, t["seconds"] + sec
            t["rounds"].append(round(tok / sec))
            t["updates"] += last - first - 1  # the timed ones
            t["wall"], t["rss"] = t["wall"] + wall, max(t["rss"], rss)
    return train


def training_result(train: dict, hat_ckpt: Path, fs_as_hat: Path, data: DataDir) -> dict:
    """The `train_*` keys of the result: throughput, memory and validation loss of each."""
    result = {}
    for engine, ckpt in (("hat", hat_ckpt), ("fairseq", fs_as_hat)):
        t = train[engine]
        result[f"train_{engine}"] = {
            "tokens_per_s": round(t["tokens"] / t["seconds"]),
            "tokens_per_update": round(t["tokens"] / t["updates"]),
            "rounds_wall_s": round(t["wall"], 1),
            "peak_rss_mb": round(t["rss"]),
            "valid": valid_loss(ckpt, data, float(recipe()["label-smoothing"])),
        }
    th, tf = result["train_hat"], result["train_fairseq"]
    result["train_speedup"] = round(th["tokens_per_s"] / tf["tokens_per_s"], 3)
    result["train_speedup_per_round"] = [
        round(h / f, 3)
        for h, f in zip(train["hat"]["rounds"], train["fairseq"]["rounds"], strict=True)
    ]
    result["train_wall_speedup"] = round(tf["rounds_wall_s"] / th["rounds_wall_s"], 3)
    result["valid_loss_ratio"] = round(th["valid"]["loss"] / tf["valid"]["loss"], 4)
    return result


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--multi30k", type=Path, default=ROOT.parent / "shared/data/multi30k")
    p.add_argument("--fairseq-venv", type=Path, default=Path.home() / "peers/fairseq")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2, help="training rounds per engine")
    p.add_argument("--translate-rounds", type=int, default=2, help="0: training only")
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--hat-precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="hat's training precision (bf16: autocast, on CPUs with bf16 instructions)",
    )
    p.add_argument("--out", type=Path, help="keep the work directory here (default: a temp dir)")
    p.add_argument(
        "--translate-only",
        action="store_true",
        help="skip training: translate with the final checkpoints of an earlier run in --out",
    )
    args = p.parse_args()
    if args.translate_only and not (
        args.out and (args.out / "fairseq-ckpt/checkpoint_last.pt").exists()
    ):
        sys.exit("error: --translate-only needs --out with an earlier run's checkpoints")
    fs_bin = args.fairseq_venv / "bin"
    if not (fs_bin / "fairseq-train").exists():
        print(
            json.dumps(
                {
                    "skipped": f"no fairseq in {args.fairseq_venv}: set it up as "
                    "../shared/peers.md says, or pass --fairseq-venv"
                }
            )
        )
        return
    if not (args.multi30k / "train.en").exists():
        sys.exit(f"error: {args.multi30k} has no train.en (pass --multi30k)")
    work = args.out or Path(tempfile.mkdtemp(prefix="vs_fairseq_"))
    work.mkdir(parents=True, exist_ok=True)
    fs_env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    hat_data, fs_data = prepare(work, args.multi30k, args.vocab_size, fs_bin)
    result: dict = {
        "machine": f"{platform.node()} ({os.cpu_count()} cpus)",
        "torch": torch.__version__,
        "fairseq_python": subprocess.run(
            [
                str(fs_bin / "python"),
                "-c",
                "import torch, fairseq; print(torch.__version__, fairseq.__version__)",
            ],
            capture_output=True,
            text=True,
        ).stdout.split()[-2:],
        "max_tokens": args.max_tokens,
    }
    if not args.translate_only:
        result["updates"], result["hat_precision"] = args.updates, args.hat_precision

    if not args.translate_only:
        train = train_side_by_side(args, work, hat_data, fs_data, fs_bin, fs_env)
    hat_ckpt = work / "hat-ckpt/checkpoint_last.pt"
    fs_ckpt = work / "fairseq-ckpt/checkpoint_last.pt"
    fs_as_hat = fairseq_to_hat(fs_ckpt, hat_ckpt, work / "fairseq_in_hat.pt", fs_bin / "python")
    if not args.translate_only:
        result.update(training_result(train, hat_ckpt, fs_as_hat, DataDir(hat_data)))
    if args.translate_rounds > 0:
        result.update(
            translate_side_by_side(args, work, hat_data, fs_data, fs_bin, fs_env, fs_as_hat)
        )
    print(json.dumps(result), flush=True)
    (work / "result.json").write_text(json.dumps(result, indent=1))
    if not args.out:
        shutil.rmtree(work)


def translate_side_by_side(
    args: argparse.Namespace,
    work: Path,
    hat_data: Path,
    fs_data: Path,
    fs_bin: Path,
    fs_env: dict,
    fs_as_hat: Path,
) -> dict:
    """Beam-5 translation of test_2016_flickr by fairseq, hat and hat int8 from the same
    weights, in --translate-rounds alternating rounds: the `translate_*` keys of the result."""
    result: dict = {}
    int8 = work / "fairseq_in_hat_int8"
    run(
        [
            sys.executable,
            "-m",
            "hat",
            "quantize",
            f"--path={fs_as_hat}",
            "--method=int8",
            f"--out={int8}",
        ],
        work / "quantize.log",
    )
    refs = (args.multi30k / "test_2016_flickr.de").read_text().splitlines()
    gen = {e: {"sps": [], "wall": [], "rss": 0.0} for e in ("fairseq", "hat", "hat_int8")}
    for k in range(args.translate_rounds):
        order = list(gen) if k % 2 == 0 else list(reversed(gen))
        for engine in order:
            log = work / f"generate-{engine}-{k}.log"
            if engine == "fairseq":
                cmd = [str(fs_bin / "fairseq-generate"), str(fs_data)]
                cmd += ["--path", str(work / "fairseq-ckpt/checkpoint_last.pt"), "--cpu"]
                cmd += ["--gen-subset", "test", "--beam", "5", "--max-tokens", str(args.max_tokens)]
                cmd += ["--remove-bpe", "sentencepiece"]
                wall, rss, text = run(cmd, log, fs_env)
                sps = float(re.search(r"\(([\d.]+) sentences/s", text).group(1))
                hyps = fairseq_hypotheses(text)
            else:
                path = fs_as_hat if engine == "hat" else int8 / "model.pt"
                cmd = [sys.executable, "generate.py", f"--data={hat_data}", f"--path={path}"]
                cmd += ["--gen-subset", "test", "--beam", "5", "--max-tokens", str(args.max_tokens)]
                cmd += ["--cpu", "--quiet", "--json", f"--results-path={work / engine}"]
                wall, rss, text = run(cmd, log)
                sps = json.loads(text.strip().splitlines()[-1])["sentences_per_second"]
                hyps = (work / engine / "test.hyp.de").read_text().splitlines()
            g = gen[engine]
            g["sps"].append(sps)
            g["wall"].append(len(refs) / wall)
            g["rss"] = max(g["rss"], rss)
            g["bleu"] = round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
    for engine, g in gen.items():
        result[f"translate_{engine}"] = {
            "sentences_per_s": speed(g["sps"]),
            "sentences_per_s_whole_command": speed(g["wall"]),
            "peak_rss_mb": round(g["rss"]),
            "sacrebleu": g["bleu"],
        }
    fs = result["translate_fairseq"]["sentences_per_s"]
    result["translate_speedup_fp32"] = round(result["translate_hat"]["sentences_per_s"] / fs, 3)
    result["translate_speedup_int8"] = round(
        result["translate_hat_int8"]["sentences_per_s"] / fs, 3
    )
    return result


if __name__ == "__main__":
    main()

"""Kill tests: kill -9 train.py, latency_dataset.py, evo_search.py and `hat pipeline` (toy) at
random points, re-run the same command (resume) and compare with an uninterrupted run.
Prints one JSON object; exits 1 if any comparison fails (each failure is named in "failures").

    python bench/kill_resume.py [--kills 5] [--seed 1] [--work DIR] [--threads 1]
        [--only train latency search pipeline] [--pipeline-timer proxy|real]

Setup (in --work, or a temporary folder): the toy task (`hat toy` 2000/100/60 pairs, `hat
preprocess`, vocabulary 400) and a tiny space with every HAT dimension elastic (HAT's YAML keys).
Per command: one uninterrupted reference run, timing when its first state file appears (train
log, CSV, search state, pipeline's first stage: before that a kill only interrupts imports); then
--kills trials, each: start the command in a new session, sleep first + uniform(0.1, 0.9) x
(reference seconds - first) (seeded RNG), SIGKILL the process group, re-run the same command to
completion, compare:

- train.py (100 updates, a checkpoint every 5): every train record of the resumed run's log (the
  records before the kill and those after each resume) has the reference's loss, nll_loss, lr,
  gnorm and ntokens for that update, bit for bit; the run continues at the checkpoint's update + 1
  and ends at the same final update; the final validation losses and checkpoint_last.pt's weights
  are bitwise the reference's.
- latency_dataset.py (20 rows, latiter 2, 2 rounds against the reference SubTransformer):
  timings differ run to run, so the rows' configs are compared (config_id -> config, the same
  seed gives the same plan; every id once). rows_lost: rows complete on disk at the kill that the
  resumed file does not hold unchanged, plus a torn (half-written) last row, which resume cuts
  off; at most 1 per kill.
- evo_search.py (2 budgets): the --json results (arch, loss, predicted latency per budget), the
  YAMLs written and every search_log record (less its evaluation counts and seconds, which count
  this process's work) equal the reference's.
- hat pipeline (the tiny config of tests/test_pipeline.py): with --pipeline-timer proxy (default)
  the pipeline runs through hat.cli.pipeline with one change, a deterministic timer (the latency
  proxy of tests/test_pipeline.py's fake_timer), so the whole report.md (every table column:
  budget, predicted, measured, BLEU, params, FLOPs; predictor metrics; search counts) and every
  model's test hypotheses must be identical, and so must every stage's done.json result (less
  checkpoint digests: a checkpoint records its wall time). With --pipeline-timer real the
  latencies are measured, so the budgets (fractions of the predictor's range), hence the found
  models' names and architectures, differ even between two uninterrupted runs: only the
  baseline rows' model, kind, BLEU, #params and FLOPs, the number of HAT rows, the baselines'
  hypotheses and the done.json results of the stages before any timing (data, supernet, the
  baselines' training) are compared.

A kill that lands after the process has already finished counts as not landed (its re-run is
still compared). Child processes run with OMP_NUM_THREADS=--threads.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(REPO / "tests"))  # the tiny space and pipeline flags of the test suite
from conftest import tiny_space  # noqa: E402
from test_pipeline import fake_timer, tiny_args  # noqa: E402

SPACE = tiny_space().to_hat_dict()
TRAIN_KEYS = {
    "max-tokens": 600,
    "dropout": 0.2,
    "lr": 0.002,
    "warmup-updates": 20,
    "warmup-init-lr": 1e-5,
    "log-interval": 1,
    "no-progress-bar": True,
    "cpu": True,
    "seed": 3,
}
TRAIN_UPDATES, LAT_ROWS = 100, 20


# --- the pipeline child (--pipeline-timer proxy) -------------------------------------------
def pipeline_child(argv: list[str]) -> int:
    """`hat pipeline ARGV`, through hat.cli.pipeline, with the deterministic timer."""
    import functools

    import hat.cli.pipeline as cli
    from hat.pipeline.run import Pipeline

    cli.Pipeline = functools.partial(Pipeline, timer=fake_timer)
    return cli.main(argv)


# --- processes ----------------------------------------------------------------------------
class Runner:
    def __init__(self, threads: int):
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}

    def run(self, cmd: list[str], out: Path) -> tuple[float, int]:
        """Run `cmd` to the end (stdout+stderr appended to `out`); seconds and exit status."""
        start = time.perf_counter()
        with open(out, "a") as f:
            rc = subprocess.run(
                cmd,
                check=False,
                cwd=REPO,
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=1800,
            ).returncode
        return time.perf_counter() - start, rc

    def run_watching(self, cmd: list[str], out: Path, watch: Path) -> tuple[float, int, float]:
        """`run`, also timing when `watch` (the command's first state on disk) appears."""
        start, seen = time.perf_counter(), None
        with open(out, "a") as f:
            proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT)
            while proc.poll() is None:
                if seen is None and watch.exists():
                    seen = time.perf_counter() - start
                time.sleep(0.02)
        seconds = time.perf_counter() - start
        return seconds, proc.returncode, seconds if seen is None else seen

    def kill_after(self, cmd: list[str], out: Path, delay: float) -> bool:
        """Start `cmd` in a new session, SIGKILL its process group after `delay` s; True if the
        kill landed (the process was still running)."""
        with open(out, "a") as f:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=delay)
                return False
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        return proc.returncode == -signal.SIGKILL


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def drop_keys(x, key: str):
    if isinstance(x, dict):
        return {k: drop_keys(v, key) for k, v in x.items() if k != key}
    if isinstance(x, list):
        return [drop_keys(v, key) for v in x]
    return x


# --- the four commands ---------------------------------------------------------------------
class Command:
    name = ""
    first_state = ""  # the first file the command writes: kills are drawn after it appears

    def __init__(self, work: Path):
        self.work = work
        self.root = work / self.name

    def cmd(self, d: Path) -> list[str]:
        raise NotImplementedError

    def at_kill(self, d: Path) -> dict:
        """What the killed run left on disk (recorded before the resume)."""
        return {}

    def compare(self, ref: Path, d: Path, kill: dict, trial: dict) -> list[str]:
        """Failures of trial dir `d` against the reference dir `ref`; may add figures to `trial`."""
        raise NotImplementedError


class Train(Command):
    name = "train"
    first_state = "train_log.jsonl"
    FIELDS = ("loss", "nll_loss", "lr", "gnorm", "ntokens")

    def cmd(self, d):
        return [
            PY,
            str(REPO / "train.py"),
            f"--configs={self.work / 'train.yml'}",
            "--data",
            str(self.work / "bin"),
            "--save-dir",
            str(d),
            "--max-update",
            str(TRAIN_UPDATES),
            "--save-interval-updates",
            "5",
            "--keep-interval-updates",
            "2",
        ]

    def at_kill(self, d):
        import torch

        logged = [r["update"] for r in jsonl(d / "train_log.jsonl") if r["type"] == "train"]
        ckpt = d / "checkpoint_last.pt"
        saved = 0
        if ckpt.exists():
            saved = torch.load(ckpt, weights_only=True)["train_state"]["updates"]
        return {"logged_update": logged[-1] if logged else 0, "checkpoint_update": saved}

    def compare(self, ref, d, kill, trial):
        import torch

        fails = []
        try:
            log = jsonl(d / "train_log.jsonl")
        except ValueError as e:
            return [f"train_log.jsonl does not parse: {e}"]
        reference = {r["update"]: r for r in jsonl(ref / "train_log.jsonl") if r["type"] == "train"}
        train = [r for r in log if r["type"] == "train"]
        for r in train:
            want = reference.get(r["update"])
            diff = [k for k in self.FIELDS if want is None or r[k] != want[k]]
            if diff:
                fails.append(f"update {r['update']}: {', '.join(diff)} differ from the reference")
        updates = {r["update"] for r in train}
        if updates != set(reference) or train[-1]["update"] != max(reference):
            fails.append(
                f"updates logged {len(updates)}, last {train[-1]['update']}; "
                f"reference {len(reference)}, last {max(reference)}"
            )
        for i, r in enumerate(log):
            if r["type"] == "resume":
                nxt = next((x for x in log[i + 1 :] if x["type"] == "train"), None)
                if nxt is not None and nxt["update"] != r["update"] + 1:
                    fails.append(
                        f"resumed at update {r['update']} but continued at {nxt['update']}"
                    )
        resumes = [r["update"] for r in log if r["type"] == "resume"]
        if kill.get("checkpoint_update") and kill["checkpoint_update"] not in resumes:
            fails.append(
                f"killed with checkpoint_last at update {kill['checkpoint_update']}; "
                f"resumed at {resumes}"
            )
        trial["resumed_at_update"] = resumes[-1] if resumes else 0

        def losses(records: list[dict]) -> list[dict]:
            return [
                {k: v for k, v in r.items() if k.endswith("loss")}
                for r in records
                if r["type"] == "valid"
            ]

        last_valid, ref_valid = losses(log), losses(jsonl(ref / "train_log.jsonl"))
        if not last_valid or last_valid[-1] != ref_valid[-1]:
            fails.append(f"final validation {last_valid[-1:]} != reference {ref_valid[-1]}")
        a = torch.load(d / "checkpoint_last.pt", weights_only=True)["model"]
        b = torch.load(ref / "checkpoint_last.pt", weights_only=True)["model"]
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            fails.append("checkpoint_last.pt weights differ from the reference's")
        return fails


class Latency(Command):
    name = "latency"
    first_state = "lat.csv"

    def cmd(self, d):
        return [
            PY,
            str(REPO / "latency_dataset.py"),
            f"--configs={self.work / 'space.yml'}",
            "--lat-dataset-path",
            str(d / "lat.csv"),
            "--lat-dataset-size",
            str(LAT_ROWS),
            "--latiter",
            "2",
            "--warmup",
            "1",
            "--rounds",
            "2",
            "--sentence-length",
            "10",
            "--vocab-size",
            "400",
            "--seed",
            "1",
            "--latsilent",
            "--cpu",
        ]

    @staticmethod
    def rows(data: bytes) -> tuple[list[dict], bytes]:
        """Complete rows (dicts) and the torn tail after the last newline."""
        cut = data.rfind(b"\n") + 1
        rows = list(csv.DictReader(io.StringIO(data[:cut].decode("utf-8"), newline="")))
        return rows, data[cut:]

    def at_kill(self, d):
        path = d / "lat.csv"
        rows, torn = self.rows(path.read_bytes()) if path.exists() else ([], b"")
        return {"rows": rows, "torn": len(torn) > 0}

    def compare(self, ref, d, kill, trial):
        fails = []
        ref_data, data = (ref / "lat.csv").read_bytes(), (d / "lat.csv").read_bytes()
        header = ref_data.split(b"\n", 1)[0]
        if data.split(b"\n", 1)[0] != header or data.count(header) != 1:
            fails.append("header differs from the reference's or appears twice")
        rows, torn = self.rows(data)
        if torn:
            fails.append(f"the resumed file ends in a torn row: {torn[:40]!r}")
        ref_rows, _ = self.rows(ref_data)
        plan = {r["config_id"]: r["config"] for r in ref_rows}
        ids = sorted(int(r["config_id"]) for r in rows)
        if ids != list(range(LAT_ROWS)):
            fails.append(f"config_ids {ids} != 0..{LAT_ROWS - 1}")
        wrong = [r["config_id"] for r in rows if plan.get(r["config_id"]) != r["config"]]
        if wrong:
            fails.append(f"rows {wrong} hold other configs than the reference's")
        final = {r["config_id"]: r for r in rows}
        at_kill, torn_at_kill = kill.get("rows", []), kill.get("torn", False)
        lost = sum(final.get(r["config_id"]) != r for r in at_kill) + int(torn_at_kill)
        trial.update(rows_at_kill=len(at_kill), torn_row=torn_at_kill, rows_lost=lost)
        if lost > 1:
            fails.append(f"{lost} rows lost (at most 1 allowed)")
        return fails


class Search(Command):
    name = "search"
    first_state = "search_state.json"
    VOLATILE = ("evaluations", "evaluations_saved", "seconds")

    def __init__(self, work, budgets):
        super().__init__(work)
        self.budgets = budgets

    def cmd(self, d):
        return [
            PY,
            str(REPO / "evo_search.py"),
            f"--configs={self.work / 'space.yml'}",
            "--evo-iter",
            "15",
            "--population-size",
            "10",
            "--parent-size",
            "3",
            "--mutation-size",
            "4",
            "--crossover-size",
            "3",
            "--ckpt-path",
            str(self.work / "setup/predictor.pt"),
            "--restore-file",
            str(self.work / "setup/supernet.pt"),
            "--write-config-path",
            str(d / "best.yml"),
            "--latency-constraint",
            *map(str, self.budgets),
            "--data",
            str(self.work / "bin"),
            "--valid-cnt-max",
            "4",
            "--max-tokens",
            "600",
            "--seed",
            "1",
            "--no-progress-bar",
            "--json",
            "--cpu",
        ]

    def at_kill(self, d):
        try:
            states = json.loads((d / "search_state.json").read_text())["states"]
            return {"iterations": {b: s["iteration"] for b, s in states.items()}}
        except (OSError, ValueError, KeyError):
            return {"iterations": {}}

    @staticmethod
    def summary(d: Path) -> dict:
        out = (d / "stdout.txt").read_text().strip().splitlines()
        results = json.loads(out[-1])["results"]
        for r in results:
            r["config_path"] = Path(r["config_path"]).name
        return results

    def compare(self, ref, d, kill, trial):
        fails = []
        trial["state_at_kill"] = kill.get("iterations")
        try:
            if self.summary(d) != self.summary(ref):
                fails.append("--json results differ from the reference's")
        except (ValueError, IndexError, KeyError) as e:
            fails.append(f"no --json result: {e}")
        for y in sorted(ref.glob("best*.yml")):
            if not (d / y.name).exists() or (d / y.name).read_text() != y.read_text():
                fails.append(f"{y.name} differs from the reference's")

        def records(p: Path) -> list[dict]:
            return [
                {k: v for k, v in r.items() if k not in self.VOLATILE}
                for r in jsonl(p / "search_log.jsonl")
            ]

        def key(r: dict) -> tuple:
            return r["budget_ms"], r["iteration"]

        want = {key(r): r for r in records(ref)}
        got = records(d)
        if {key(r) for r in got} != set(want):
            fails.append("search_log iterations differ from the reference's")
        bad = [key(r) for r in got if want.get(key(r)) != r]
        if bad:
            fails.append(f"search_log records {bad} differ from the reference's")
        trial["duplicate_log_records"] = len(got) - len({key(r) for r in got})
        return fails


class PipelineCmd(Command):
    name = "pipeline"
    first_state = "run/data/inputs.json"

    def __init__(self, work, timer):
        super().__init__(work)
        self.timer = timer

    def cmd(self, d):
        head = [PY, "-m", "hat", "pipeline"]
        if self.timer == "proxy":
            head = [PY, str(Path(__file__).resolve()), "--pipeline-child"]
        return head + tiny_args(d / "run")

    def at_kill(self, d):
        run = d / "run"
        started = (
            sorted(
                p.parent.relative_to(run).as_posix()
                for p in run.glob("**/inputs.json")
                if not (p.parent / "done.json").exists()
            )
            if run.exists()
            else []
        )
        return {"stages_in_progress": started}

    @staticmethod
    def stage_results(d: Path) -> dict:
        """stage -> its done.json result, the run folder's path replaced, checkpoint digests dropped
        (a checkpoint records its wall time)."""
        run = d / "run"
        out = {}
        for p in run.glob("**/done.json"):
            record = json.loads(p.read_text().replace(str(run), "RUN"))
            result = drop_keys(record.get("result", record), "sha256")
            out[p.parent.relative_to(run).as_posix()] = result
        return out

    @staticmethod
    def table(d: Path) -> list[list[str]]:
        lines = (d / "run/report.md").read_text().splitlines()
        rows = [line for line in lines if line.startswith("| ") and not line.startswith("| model ")]
        return [[c.strip() for c in row.strip("|").split("|")] for row in rows]

    def compare(self, ref, d, kill, trial):
        fails = []
        trial["stages_in_progress_at_kill"] = kill.get("stages_in_progress")
        if not (d / "run/report.md").exists():
            return ["no report.md"]

        def evaluated(models: str):
            return (ref / "run/evaluate").glob(f"{models}/test.hyp.*")

        if self.timer == "proxy":
            if (d / "run/report.md").read_text() != (ref / "run/report.md").read_text():
                fails.append("report.md differs from the reference's")
            hyps = sorted(str(p.relative_to(ref / "run/evaluate")) for p in evaluated("*"))
        else:  # model | kind | budget | predicted | measured | BLEU | #params | FLOPs

            def det(rows):
                return (
                    [[r[0], r[1], r[5], r[6], r[7]] for r in rows if r[1] == "baseline"],
                    sum(r[1] == "HAT" for r in rows),
                )

            if det(self.table(d)) != det(self.table(ref)):
                fails.append(
                    f"report table (baselines: model, kind, BLEU, #params, FLOPs; HAT "
                    f"rows) {det(self.table(d))} != reference {det(self.table(ref))}"
                )
            hyps = sorted(
                str(p.relative_to(ref / "run/evaluate")) for p in evaluated("transformer_*")
            )
        want, got = self.stage_results(ref), self.stage_results(d)
        if self.timer == "real":  # the stages before any timing, and the baselines' training
            want = {
                k: v
                for k, v in want.items()
                if k in ("data", "supernet") or k.startswith("models/transformer_")
            }
        bad = sorted(k for k in want if got.get(k) != want[k])
        if bad:
            fails.append(f"done.json results of {bad} differ from the reference's")
        for h in hyps:
            mine = d / "run/evaluate" / h
            if not mine.exists() or mine.read_text() != (ref / "run/evaluate" / h).read_text():
                fails.append(f"evaluate/{h} differs from the reference's")
        return fails


# --- setup and trials ----------------------------------------------------------------------
def setup(work: Path, runner: Runner) -> None:
    import yaml

    (work / "space.yml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    (work / "train.yml").write_text(yaml.safe_dump({**SPACE, **TRAIN_KEYS}, sort_keys=False))
    if not (work / "bin/metadata.json").exists():
        log = work / "setup.txt"
        raw = work / "raw"
        for cmd in (
            [
                PY,
                "-m",
                "hat",
                "toy",
                "--out",
                str(raw),
                "--train-size",
                "2000",
                "--valid-size",
                "100",
                "--test-size",
                "60",
                "--seed",
                "7",
            ],
            [
                PY,
                "-m",
                "hat",
                "preprocess",
                "-s",
                "en",
                "-t",
                "de",
                "--trainpref",
                str(raw / "train"),
                "--validpref",
                str(raw / "valid"),
                "--testpref",
                str(raw / "test"),
                "--destdir",
                str(work / "bin"),
                "--vocab-size",
                "400",
                "--overwrite",
            ],
        ):
            _, rc = runner.run(cmd, log)
            if rc:
                raise SystemExit(f"setup failed: {' '.join(cmd)} (see {log})")


def reference(c: Command, runner: Runner) -> tuple[float, float]:
    """The reference run: its seconds, and when its first state appeared on disk."""
    ref = c.root / "ref"
    done = ref / "ref_seconds.json"
    if done.exists():  # kept from an earlier run with the same --work
        return tuple(json.loads(done.read_text()))
    shutil.rmtree(ref, ignore_errors=True)
    ref.mkdir(parents=True)
    seconds, rc, first = runner.run_watching(c.cmd(ref), ref / "stdout.txt", ref / c.first_state)
    if rc:
        raise SystemExit(
            f"{c.name}: the reference run failed (exit {rc}, see {ref / 'stdout.txt'})"
        )
    done.write_text(json.dumps([seconds, first]))
    return seconds, first


def search_inputs(work: Path, runner: Runner, train: Train, latency: Latency) -> list[float]:
    """The search's supernet (train.py's reference) and predictor (HAT's recipe on the latency
    reference); two budgets at 30% and 70% of the predicted range."""
    setup_dir = work / "setup"
    setup_dir.mkdir(exist_ok=True)
    reference(train, runner)
    reference(latency, runner)
    shutil.copyfile(train.root / "ref/checkpoint_last.pt", setup_dir / "supernet.pt")
    if not (setup_dir / "predictor.pt").exists():
        _, rc = runner.run(
            [
                PY,
                str(REPO / "latency_predictor.py"),
                "--lat-dataset-path",
                str(latency.root / "ref/lat.csv"),
                "--ckpt-path",
                str(setup_dir / "predictor.pt"),
                "--predictor",
                "hat",
                "--train-steps",
                "300",
                "--seed",
                "1",
            ],
            setup_dir / "predictor.txt",
        )
        if rc:
            raise SystemExit(f"predictor training failed (see {setup_dir / 'predictor.txt'})")
    from hat.latency.predictor import load_predictor
    from hat.search.evolution import LatencyCheck
    from hat.space import SearchSpace

    space = SearchSpace.from_hat_dict(SPACE)
    check = LatencyCheck(load_predictor(str(setup_dir / "predictor.pt")))
    lo, hi = check.bound(space.smallest()), check.bound(space.largest())
    return [round(lo + f * (hi - lo), 1) for f in (0.3, 0.7)]


def trials(c: Command, runner: Runner, kills: int, seed: int) -> tuple[dict, list[str]]:
    ref_seconds, first = reference(c, runner)
    rng = random.Random(f"{seed}-{c.name}")
    out = {
        "reference_seconds": round(ref_seconds, 1),
        "first_state_s": round(first, 1),
        "kills_tried": 0,
        "kills_landed": 0,
        "survived": 0,
        "trials": [],
    }
    failures = []
    for k in range(1, kills + 1):
        d = c.root / f"kill{k}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        delay = first + rng.uniform(0.1, 0.9) * (ref_seconds - first)
        landed = runner.kill_after(c.cmd(d), d / "killed.txt", delay)
        kill = c.at_kill(d)
        seconds, rc = runner.run(c.cmd(d), d / "stdout.txt")
        trial = {
            "kill_at_s": round(delay, 1),
            "landed": landed,
            "resume_seconds": round(seconds, 1),
        }
        if c.name == "train":
            trial.update(kill)
        fails = [f"resumed run exited {rc}"] if rc else c.compare(c.root / "ref", d, kill, trial)
        trial["ok"] = not fails
        out["kills_tried"] += 1
        out["kills_landed"] += landed
        out["survived"] += landed and not fails
        out["trials"].append(trial)
        where = f"{c.name} kill {k} (at {delay:.1f} s, {'landed' if landed else 'not landed'})"
        failures += [f"{where}: {f}" for f in fails]
    out["max_resume_seconds"] = max((t["resume_seconds"] for t in out["trials"]), default=0)
    if c.name == "latency":
        out["rows_lost"] = sum(t.get("rows_lost", 0) for t in out["trials"])
        out["max_rows_lost_per_kill"] = max(
            (t.get("rows_lost", 0) for t in out["trials"]), default=0
        )
    return out, failures


def main() -> int:
    if sys.argv[1:2] == ["--pipeline-child"]:
        return pipeline_child(sys.argv[2:])
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kills", type=int, default=5, help="kill trials per command")
    p.add_argument("--seed", type=int, default=1, help="seed of the kill times")
    p.add_argument("--work", help="work folder (kept; reference runs found there are reused)")
    p.add_argument(
        "--only",
        nargs="+",
        choices=("train", "latency", "search", "pipeline"),
        default=["train", "latency", "search", "pipeline"],
    )
    p.add_argument("--pipeline-timer", choices=("proxy", "real"), default="proxy")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the commands")
    args = p.parse_args()
    tmp = None if args.work else tempfile.mkdtemp(prefix="hat_kill_")
    work = Path(args.work or tmp).resolve()
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(args.threads)
    start = time.perf_counter()
    setup(work, runner)
    train, latency = Train(work), Latency(work)
    commands: list[Command] = []
    for name in args.only:
        if name == "train":
            commands.append(train)
        elif name == "latency":
            commands.append(latency)
        elif name == "search":
            commands.append(Search(work, search_inputs(work, runner, train, latency)))
        else:
            commands.append(PipelineCmd(work, args.pipeline_timer))
    result = {
        "kills": args.kills,
        "seed": args.seed,
        "threads": args.threads,
        "pipeline_timer": args.pipeline_timer,
        "commands": {},
    }
    failures: list[str] = []
    for c in commands:
        result["commands"][c.name], fails = trials(c, runner, args.kills, args.seed)
        failures += fails
    per = result["commands"].values()
    result["totals"] = {
        "kills_tried": sum(r["kills_tried"] for r in per),
        "kills_landed": sum(r["kills_landed"] for r in per),
        "survived": sum(r["survived"] for r in per),
        "rows_lost": result["commands"].get("latency", {}).get("rows_lost"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    result["failures"] = failures
    if tmp and not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp:
        result["work"] = str(work)
    print(json.dumps(result))
    if failures:
        print("\n".join(["FAILED:"] + failures), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

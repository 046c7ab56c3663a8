"""bench/supernet_ranking.py: references per decoder depth trained until converged, ranked
against supernets and the free proxies, over all references and within each depth."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, tiny_space
from test_train import TRAIN_KEYS

from hat.ledger import Ledger
from hat.pipeline.baselines import baselines
from hat.profile import analytic_params
from hat.space import ArchConfig


def test_ranking_study_converges_references_and_ranks_within_depths(tmp_path: Path, toy_bin: Path):
    space = tiny_space(decoder_layers=2, decoder_layer_num_choice=[2, 1])
    cfg = tmp_path / "space.yml"
    cfg.write_text(yaml.safe_dump({**space.to_hat_dict(), **TRAIN_KEYS}, sort_keys=False))
    supernet = tmp_path / "supernet"
    subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"--configs={cfg}", "--data", str(toy_bin)]
        + ["--save-dir", str(supernet), "--max-update", "6"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    bench = [sys.executable, str(REPO / "bench/supernet_ranking.py"), "--data", str(toy_bin)]
    bench += [f"--supernet=a={supernet / 'checkpoint_last.pt'}", "--per-depth", "2"]
    bench += ["--updates", "40", "--validate-every", "2", "--max-len-b", "12"]
    bench += ["--work-dir", str(tmp_path / "refs")]

    def run_bench(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([*bench, *flags], capture_output=True, text=True, timeout=600)

    lone = run_bench("--score-only")  # scores that would be lost: refused
    assert (
        lone.returncode == 1 and "--score-only needs --supernet and --scores-ledger" in lone.stderr
    )
    run = run_bench("--converge", "0.5")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    refs, summary = lines[:-1], lines[-1]
    archs = [ArchConfig.from_dict(r["recipe"]["arch"]) for r in refs]
    assert sorted(a.decoder_layer_num for a in archs) == [1, 1, 2, 2]
    for depth in (1, 2):  # two sizes per depth
        assert len({analytic_params(a, 32) for a in archs if a.decoder_layer_num == depth}) == 2
    # converged well before the cap: the loss moved < 50% since the validation at <= 80%
    assert all(r["converged"] and r["updates"] < 40 and r["last_change"] < 0.5 for r in refs)
    assert all(0 <= r["valid_bleu"] <= 100 and r["valid_loss"] > 0 for r in refs)
    # the validation curve, kept with the result: it ends where the reference stopped
    assert all(r["valid_history"][-1] == [r["updates"], r["valid_loss"]] for r in refs)
    assert summary["references"] == 4 and summary["converged"] == 4
    for truth in ("bleu", "loss"):
        ranks = summary["rank_by"][truth]
        assert set(ranks) == {"supernet_a", "proxy_params", "proxy_depth"}
        assert -1 <= ranks["supernet_a"]["overall"] <= 1
        assert set(ranks["proxy_params"]["within_depth"]) == {"1", "2"}
        assert ranks["proxy_depth"]["within_depth"] == {"1": None, "2": None}  # constant there

    out = tmp_path / "ranking.json"
    again = run_bench("--converge", "0.5", "--no-train", f"--out={out}")
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1]) == summary
    assert json.loads(out.read_text()) == summary  # what hat pipeline --ranking-study reads
    # --no-train leaves the from-scratch references alone; --finetune still trains its runs
    tuned = run_bench(
        "--converge", "0.5", "--no-train", "--finetune", "a", "--finetune-refs", "0", "3"
    )
    assert tuned.returncode == 0, tuned.stderr
    finetune = json.loads(tuned.stdout.splitlines()[-1])["finetune"]
    assert finetune["supernet"] == "a" and [r["ref"] for r in finetune["refs"]] == [0, 3]
    by_index = {r["ref"]: r for r in refs}
    for r in finetune["refs"]:  # next to the same reference from scratch
        assert r["scratch_valid_bleu"] == by_index[r["ref"]]["valid_bleu"]
        assert r["scratch_updates"] == by_index[r["ref"]]["updates"]
        assert 0 < r["finetuned_updates"] <= 40 and r["finetuned_valid_loss"] > 0
    result = json.loads((tmp_path / "refs/ref3_finetune_a/result.json").read_text())
    assert len(result["recipe"]["inherited_from"]) == 64  # the supernet's sha256
    other = run_bench("--converge", "0.2")
    assert other.returncode == 1 and "another recipe" in other.stderr

    # the ledger: results appended there outlive the work dir, and only their own recipe's
    ledger = tmp_path / "ledger.jsonl"
    shutil.rmtree(tmp_path / "refs")
    first = run_bench("--converge", "0.5", f"--ledger={ledger}")
    assert first.returncode == 0, first.stderr
    assert len(ledger.read_text().splitlines()) == 4  # one line per finished reference
    with ledger.open("a") as f:
        f.write('{"recipe": {"arch"')  # torn by a kill mid-append: ignored
    shutil.rmtree(tmp_path / "refs")
    reused = run_bench("--converge", "0.5", f"--ledger={ledger}")
    assert reused.returncode == 0, reused.stderr
    assert reused.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]  # nothing retrained
    assert not (tmp_path / "refs").exists()
    moved = run_bench("--converge", "0.4", f"--ledger={ledger}", "--no-train")
    assert moved.returncode == 1 and "no finished reference" in moved.stderr
    # appended after the torn line: that is cut, and the rest stays readable
    shard = run_bench("--converge", "0.4", f"--ledger={ledger}", "--shard", "0/4")
    assert shard.returncode == 0 and ledger.read_text().count("\n") == 5
    assert all(json.loads(line)["inputs"]["arch"] for line in ledger.read_text().splitlines())
    ledger.write_text("[]\n")
    broken = run_bench("--converge", "0.5", f"--ledger={ledger}", "--no-train")
    assert (
        broken.returncode == 2
        and broken.stderr == f"error: results ledger {ledger}: line 1 is not a record\n"
    )


def test_ranking_study_script_trains_every_step_and_resumes_from_the_ledger(
    tmp_path: Path, toy_bin: Path
):
    """bench/ranking_study.sh: the references (two shards side by side), the three supernets
    beside them in stages (sandwich-ce: no distillation), each stage scored into the scores
    ledger, the few-shot supernet's parts (one per depth), then the ranking; rerun without its
    work dir's references and supernets, nothing trains again and the ranking comes from the two
    ledgers."""
    space = tiny_space(decoder_layers=2, decoder_layer_num_choice=[2, 1])
    cfg = tmp_path / "space.yml"
    keys = {k: v for k, v in TRAIN_KEYS.items() if k != "cpu"}  # the script passes --cpu
    cfg.write_text(yaml.safe_dump({**space.to_hat_dict(), **keys}, sort_keys=False))
    work, ledger, scores = tmp_path / "work", tmp_path / "ledger.jsonl", tmp_path / "scores.jsonl"
    env = {
        **os.environ,
        "SPACE": str(cfg),
        "DATA": str(toy_bin),
        "WORK": str(work),
        "LEDGER": str(ledger),
        "SCORES": str(scores),
        "PER_DEPTH": "2",
        "UPDATES": "12",
        "VALIDATE_EVERY": "4",
        "MAX_LEN_B": "12",
        "UNIFORM_UPDATES": "8",
        "SANDWICH_UPDATES": "4",
        "STAGE": "4",  # the uniform supernet scored at 4 and 8 updates
        "FEWSHOT_FROM": "4",  # the uniform supernet's checkpoint at 4 updates, then 2 per depth
        "FEWSHOT_UPDATES": "2",
        "NICE": "0",
        "PYTHON": sys.executable,
    }

    def study(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(REPO / "bench/ranking_study.sh")],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=600,
        )

    first = study()
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.splitlines()[-1])
    assert summary["references"] == 4 and len(ledger.read_text().splitlines()) == 4
    assert set(summary["rank_by"]["loss"]) == {
        "supernet_uniform_4",
        "supernet_uniform_8",
        "supernet_sandwich_4",
        "supernet_sandwich-ce_4",
        "supernet_fewshot_8",  # 4 updates of the uniform supernet, then 2 per depth
        "proxy_params",
        "proxy_depth",
    }
    assert summary["supernets"]["uniform_8"]["updates"] == 8
    assert summary["supernets"]["uniform_4"]["updates"] == 4
    for stage in (4, 8):  # each stage's checkpoint is kept, for a search in the winner
        assert len(list((work / "super_uniform").glob(f"checkpoint_*_{stage}.pt"))) == 1
    for name, distill in (("sandwich", 1.0), ("sandwich-ce", 0.0)):
        args = torch.load(work / f"super_{name}/checkpoint_last.pt", weights_only=True)["args"]
        assert (args["sampling"], args["distill_weight"]) == ("sandwich", distill)
    # every stage of every supernet scored each of the 4 references once
    assert len(scores.read_text().splitlines()) == 4 * 5
    assert summary["supernets"]["fewshot_8"] == {
        "updates": 4,  # its parts' own: 2 each, from the uniform supernet's weights at 4
        "wall_s": summary["supernets"]["fewshot_8"]["wall_s"],
        "parts": 2,
    }
    for depth in (1, 2):  # each part trained its own depth only
        part = torch.load(work / f"fewshot_d{depth}/checkpoint_last.pt", weights_only=True)
        assert part["space"]["decoder-layer-num-choice"] == [depth]
        log = (work / f"logs/fewshot_d{depth}.log").read_text()
        assert re.search(r"resumed from .*checkpoint_last.pt: epoch 1, update 0\n", log)
    assert json.loads((work / "ranking.json").read_text()) == summary
    # the table: each reference's own loss (references' ledger) beside its inherited ones
    trained = {
        json.dumps(e["inputs"]["arch"]): e["result"]
        for e in map(json.loads, ledger.read_text().splitlines())
    }
    inherited = {}
    for e in map(json.loads, scores.read_text().splitlines()):
        name, loss = e["result"]["name"], e["result"]["valid_loss"]
        inherited.setdefault(json.dumps(e["inputs"]["arch"]), {})[name] = loss
    rows = summary["table"]
    assert [r["ref"] for r in rows] == [0, 1, 2, 3] and {r["depth"] for r in rows} == {1, 2}
    assert sorted(r["valid_loss"] for r in rows) == sorted(
        r["valid_loss"] for r in trained.values()
    )
    assert sorted(tuple(sorted(r["inherited_loss"].items())) for r in rows) == sorted(
        tuple(sorted(v.items())) for v in inherited.values()
    )
    plot = tmp_path / "taus.png"  # tau against each supernet's updates
    cmd = [sys.executable, str(REPO / "bench/ranking_curves.py"), "--out", str(plot)]
    drawn = subprocess.run(
        [*cmd, "--ranking", str(work / "ranking.json")], capture_output=True, text=True
    )
    assert drawn.returncode == 0, drawn.stderr
    points = {r["supernet"]: r for r in map(json.loads, drawn.stdout.splitlines())}
    assert set(points) == {"uniform_4", "uniform_8", "sandwich_4", "sandwich-ce_4", "fewshot_8"}
    assert points["uniform_8"]["updates"] == points["fewshot_8"]["updates"] == 8
    assert plot.read_bytes().startswith(b"\x89PNG")
    tau = summary["rank_by"]["bleu"]["supernet_sandwich_4"]["overall"]
    assert points["sandwich_4"]["tau"]["bleu"] == tau
    assert "ref3: training" in (work / "logs/refs1.log").read_text()  # shard 1: refs 1, 3
    resumed = study(STEPS="supernets fewshot")  # all finished: nothing trained or scored again
    assert resumed.returncode == 0, resumed.stderr
    assert len(scores.read_text().splitlines()) == 4 * 5
    # a supernet's directory trains on only under the settings it began with
    other = study(STEPS="supernets", SUPERNETS="uniform", PRECISION="bf16")
    assert other.returncode == 1 and "precision=default), not " in other.stderr
    assert "precision=bf16: use another WORK, or delete it" in other.stderr
    assert f"error: {work}/super_uniform began with other settings (space=" in other.stderr
    assert len(scores.read_text().splitlines()) == 4 * 5

    for gone in (
        "refs",
        "super_uniform",
        "super_sandwich",
        "super_sandwich-ce",
        "fewshot_d1",
        "fewshot_d2",
    ):
        shutil.rmtree(work / gone)
    again = study(STEPS="references ranking")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1]) == summary
    assert not (work / "refs").exists() and len(ledger.read_text().splitlines()) == 4

    failed = study(SPACE=str(tmp_path / "none.yml"), WORK=str(tmp_path / "other"))
    assert failed.returncode == 1
    log = tmp_path / "other/logs/init.log"
    assert failed.stderr == f"error: the init run failed: see {log}\n" and log.stat().st_size


def test_the_device_script_brings_back_the_references_and_the_baselines(
    tmp_path: Path, toy_raw: Path, toy_bin: Path
):
    """bench/ranking_study_on_device.sh (run here on the CPU): the references and, beside them,
    the comparison's baselines (`hat pipeline --stop-after baselines` on raw text carried under
    Multi30k's file names), each appended to its ledger under $OUT, after the kept lines."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for split, name in (("train", "train"), ("valid", "val"), ("test", "test_2016_flickr")):
        for lang in ("en", "de"):
            shutil.copy(toy_raw / f"{split}.{lang}", raw / f"{name}.{lang}")
    space = tiny_space(decoder_layers=2, decoder_layer_num_choice=[2, 1])
    cfg = tmp_path / "space.yml"
    keys = {k: v for k, v in TRAIN_KEYS.items() if k != "cpu"}
    cfg.write_text(yaml.safe_dump({**space.to_hat_dict(), **keys}, sort_keys=False))
    pipeline = tmp_path / "pipeline.yml"
    recipe = {
        "toy": False,
        "source-lang": "en",
        "target-lang": "de",
        "trainpref": "elsewhere",  # the script passes RAW's
        "vocab-size": 400,
        "max-tokens": 1500,
        "subtransformer-max-update": 6,
        "warmup-updates": 5,
        "max-len-b": 12,
        "gen-beam": 2,
        "baselines": 1,
        "seeds": [1, 2],
    }
    pipeline.write_text(yaml.safe_dump({**recipe, **space.to_hat_dict()}, sort_keys=False))
    kept = tmp_path / "kept.jsonl"
    Ledger(kept).add({"a reference": "finished before"}, {"valid_loss": 1.0})
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "OUT": str(out),
        "KEPT": str(kept),
        "KEPT_SCORES": str(tmp_path / "none.jsonl"),
        "KEPT_MODELS": str(tmp_path / "none.jsonl"),
        "BASELINES": str(pipeline),
        "BASELINE_JOBS": "2",
        "RAW": str(raw),
        "WHEELS": "",
        "DEVICE": "cpu",
        "JOBS": "1",
        "SPACE": str(cfg),
        "DATA": str(toy_bin),
        "WORK": str(tmp_path / "work"),
        "PER_DEPTH": "1",
        "UPDATES": "8",
        "VALIDATE_EVERY": "4",
        "MAX_LEN_B": "12",
        "PYTHON": sys.executable,
    }
    script = [str(REPO / "bench/ranking_study_on_device.sh")]
    nowhere = {**env, "RAW": str(tmp_path / "nowhere")}
    missing = subprocess.run(script, env=nowhere, text=True, capture_output=True, timeout=60)
    assert missing.returncode == 2 and "no train.en there" in missing.stderr
    done = subprocess.run(script, env=env, text=True, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr
    references = (out / "references.jsonl").read_text().splitlines()
    assert len(references) == 1 + 2  # the kept line, then one reference per decoder depth
    models = [json.loads(line) for line in (out / "models.jsonl").read_text().splitlines()]
    assert len(models) == 2 * len(baselines(space, 1))  # two seeds each, tested
    assert all("test_bleu" in m["result"] for m in models)
    assert {m["inputs"]["training"]["train"]["seed"] for m in models} == {1, 2}
    assert f"baselines in the ledger: {len(models)} (0 before)" in done.stdout
    assert "references in the ledger: 3 (1 before)" in done.stdout
    assert (out / "logs.tgz").exists()


def test_an_unfinished_reference_resumes_only_under_its_own_recipe(tmp_path: Path, toy_bin: Path):
    """A reference's work dir records its recipe before training; a run of another recipe there
    is refused instead of resumed (a raised cap on updates is not another recipe)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from supernet_ranking import claim_work_dir
    finally:
        sys.path.pop(0)
    from hat.data.dataset import DataDir

    data, arch = DataDir(toy_bin), tiny_space().smallest().to_dict()
    train = {"seed": 1, "max_update": 40, "schedule": {"lr": 0.001, "max_update": 40}}
    recipe = {"arch": arch, "model": {"dropout": 0.1}, "train": train, "data": "ab12"}
    out = tmp_path / "ref0"
    claim_work_dir(out, recipe, data)  # a new run: its recipe recorded
    assert json.loads((out / "recipe.json").read_text()) == recipe
    raised = {**train, "max_update": 80, "schedule": {**train["schedule"], "max_update": 80}}
    claim_work_dir(out, {**recipe, "train": raised}, data)  # resumes
    other = {**recipe, "train": {**raised, "seed": 2}, "data": "cd34"}
    with pytest.raises(SystemExit, match=r"another recipe \(data, train.seed differ\)"):
        claim_work_dir(out, other, data)
    # a checkpoint from before recipes were recorded: its arch, settings and vocabulary checked
    legacy = tmp_path / "ref1"
    legacy.mkdir()
    spm = (toy_bin / "spm.model").read_bytes()
    held = {"arch": arch, "settings": recipe["model"], "spm_model": spm}
    torch.save(held, legacy / "checkpoint_last.pt")
    claim_work_dir(legacy, recipe, data)
    (legacy / "recipe.json").unlink()
    largest = {**recipe, "arch": tiny_space().largest().to_dict()}
    with pytest.raises(SystemExit, match="checkpoint_last.pt holds another arch"):
        claim_work_dir(legacy, largest, data)
    torch.save({**held, "spm_model": b"other"}, legacy / "checkpoint_last.pt")
    with pytest.raises(SystemExit, match="or vocabulary"):
        claim_work_dir(legacy, recipe, data)
    assert not (legacy / "recipe.json").exists()


def test_a_few_shot_supernet_scores_each_depth_with_its_own_part():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from supernet_ranking import few_shot_member
    finally:
        sys.path.pop(0)
    from hat.errors import HatError
    from hat.supernet import SuperTransformer
    from hat.transformer import ModelSettings

    def part(*depths: int) -> SuperTransformer:
        space = tiny_space(decoder_layer_num_choice=list(depths))
        return SuperTransformer(space, ModelSettings(vocab_size=50, qkv_dim=space.qkv_dim))

    whole, shallow, deep = part(3, 2, 1), part(1), part(3, 2)
    arch = whole.space.homogeneous(max, decoder_layers=2)
    assert few_shot_member("whole", [whole], arch) is whole
    assert few_shot_member("few", [shallow, deep], arch) is deep
    assert few_shot_member("few", [shallow, deep], whole.space.smallest()) is shallow
    with pytest.raises(HatError, match="2 of its 3 supernets hold decoder depth 2"):
        few_shot_member("few", [shallow, deep, part(2)], arch)


def test_reference_curves_mark_where_each_criterion_stops(tmp_path: Path):
    """bench/reference_curves.py: each reference's validation history from its checkpoint,
    and the first validation at which the criterion stops it, alone and smoothed."""
    arch = tiny_space().smallest().to_dict()
    falling = [[100 * i, 5.0 - 0.075 * i] for i in range(1, 8)]
    noisy = [*falling, [800, 4.30], [900, 4.40], [1000, 4.28]]  # a lucky low at 800
    for name, history in (("ref0", noisy), ("ref1", noisy[:3])):
        (tmp_path / name).mkdir()
        state = {"train_state": {"valid_losses": history}, "arch": arch}
        torch.save(state, tmp_path / name / "checkpoint_last.pt")
    # a finished reference whose work dir is gone, recorded twice (the last counts), one
    # without a history, and ref0's arch (its work dir counts)
    other = tiny_space().homogeneous(max, decoder_layers=2).to_dict()
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.add({"arch": other, "v": 1}, {"valid_history": falling[:2]})
    ledger.add({"arch": other, "v": 2}, {"valid_history": falling})
    ledger.add({"arch": tiny_space().smallest().to_dict()}, {"valid_history": falling})
    ledger.add({"arch": tiny_space().homogeneous(min, decoder_layers=2).to_dict()}, {})
    fine_tuned = {"arch": tiny_space().homogeneous(min, decoder_layers=1).to_dict()}
    ledger.add({**fine_tuned, "inherited_from": "ab12"}, {"valid_history": falling})
    out = tmp_path / "curves.png"
    cmd = [sys.executable, str(REPO / "bench/reference_curves.py"), "--work-dir", str(tmp_path)]
    cmd += ["--ledger", str(ledger.path), "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = {r["ref"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert set(rows) == {"ref0", "ref1", "ledger#1"} and rows["ledger#1"]["arch"] == other
    assert rows["ledger#1"]["validations"] == 7
    # at 1,000 the last validation moved 0.5% since 800, the means of three 2.6%
    assert rows["ref0"]["stops"] == {"1": {"update": 1000, "loss": 4.28}, "3": None}
    assert rows["ref1"]["stops"] == {"1": None, "3": None} and rows["ref1"]["validations"] == 3
    assert out.read_bytes().startswith(b"\x89PNG")


def test_recorded_supernets_take_each_names_last_complete_scoring(tmp_path: Path, toy_bin: Path):
    """The scores ledger: for each name, the checkpoints scored last under it that scored every
    reference (a scoring cut by a kill counts only where there is no other); scores of other
    fitness settings are not mixed in."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from supernet_ranking import recorded_supernets, score_inputs, score_settings
    finally:
        sys.path.pop(0)
    from hat.data.dataset import DataDir

    data, space = DataDir(toy_bin), tiny_space()
    archs = [space.smallest(), space.largest(), space.homogeneous(max, decoder_layers=1)]
    settings = score_settings(data)
    ledger = Ledger(tmp_path / "scores.jsonl")

    def score(sha: str, name: str, losses: list[float], **changed) -> None:
        for arch, loss in zip(archs, losses, strict=False):
            inputs = score_inputs([sha], arch, {**settings, **changed})
            ledger.add(inputs, {"name": name, "updates": 1, "valid_loss": loss})

    score("a", "uniform_2000", [5.0, 4.0, 4.5])
    score("b", "uniform_2000", [6.0])  # the same stage again, cut by a kill after one
    score("c", "sandwich_2000", [5.5, 4.5])  # only ever cut
    score("d", "uniform_4000", [4.0, 3.0, 3.5], max_tokens=123)  # other fitness settings
    found = recorded_supernets(ledger, archs, data)
    assert set(found) == {"uniform_2000", "sandwich_2000"}
    assert found["uniform_2000"][0] == {0: 5.0, 1: 4.0, 2: 4.5}
    assert found["sandwich_2000"][0] == {0: 5.5, 1: 4.5}
    score("e", "uniform_2000", [5.2, 4.1, 4.4])  # scored anew, whole: the latest counts
    assert recorded_supernets(ledger, archs, data)["uniform_2000"][0] == {0: 5.2, 1: 4.1, 2: 4.4}

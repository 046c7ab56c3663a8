"""`hat pipeline` on a tiny configuration: every stage, the report, and resume after kills."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import tiny_space

from hat.cli.pipeline import build_parser, pipeline_config
from hat.errors import HatError
from hat.fsutil import file_sha256
from hat.latency.measure import Latency
from hat.latency.plan import proxy_cost
from hat.pipeline.baselines import DIMENSION, LAYERS, baselines
from hat.pipeline.report import write_report
from hat.pipeline.run import Pipeline, summary_rows
from hat.search.fitness import Fitness
from hat.train.trainer import Trainer


def fake_timer(model, measure) -> Latency:
    """Deterministic 'latency' (the proxy cost), so reports can be compared exactly."""
    ms = proxy_cost(model.arch, measure.sentence_length, measure.beam, model.settings.qkv_dim) / 1e5
    return Latency(
        ms * 0.2, ms * 0.8, 0.0, 0.0, "cpu", 1, measure.sentence_length, measure.beam, measure.iters
    )


def tiny_args(run_dir: Path) -> list[str]:
    space = tiny_space().to_hat_dict()
    flags = [
        f"--run-dir={run_dir}",
        "--toy-train-size=1500",
        "--toy-valid-size=80",
        "--toy-test-size=60",
        "--vocab-size=400",
        "--max-tokens=1500",
        "--supernet-max-update=25",
        "--subtransformer-max-update=12",
        "--lat-dataset-size=16",
        "--latiter=1",
        "--lat-warmup=0",
        "--sentence-length=6",
        "--evo-iter=2",
        "--population-size=8",
        "--parent-size=2",
        "--mutation-size=3",
        "--crossover-size=3",
        "--latency-constraint-fraction",
        "0.3",
        "0.8",
        "--verify-top=1",
        "--gen-beam=2",
        "--baselines=2",
        "--warmup-updates=5",
        "--lr=0.001",
        "--weight-decay=0.0001",
        "--dropout=0.1",
        "--max-len-b=12",
        "--train-jobs=1",  # in this process, so the tests can kill it (one test: side by side)
    ]  # barely trained models: short outputs
    for key, value in space.items():
        flags += [f"--{key}"] + (
            [str(v) for v in value] if isinstance(value, list) else [str(value)]
        )
    return flags


def slow_timer(model, measure) -> Latency:
    """The fake timer on a device 1.5x slower than when the latency dataset was measured."""
    lat = fake_timer(model, measure)
    return dataclasses.replace(
        lat, encoder_ms=lat.encoder_ms * 1.5, decoder_ms=lat.decoder_ms * 1.5, runs_ms=()
    )


def run_pipeline(run_dir: Path, *extra: str, timer=fake_timer) -> str | None:
    """The report (None when --stop-after ended the run)."""
    cfg = pipeline_config(build_parser().parse_args(tiny_args(run_dir) + list(extra)))
    results = Pipeline(cfg, timer=timer, progress=False).run()
    if "stopped_after" in results:
        return None
    env = {"device": "test", "torch": "x", "sentence_length": 6, "beam": 5}
    return write_report(results, summary_rows(results), run_dir, env).read_text()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[Path, str]:
    """One finished run with the tiny defaults and its report, shared by this module's tests:
    read it as is, or `copy_run` it to change a setting (a run directory may be moved: its
    stages find their files under it and check inputs by content)."""
    run = tmp_path_factory.mktemp("default") / "run"
    return run, run_pipeline(run)


def copy_run(default_run: tuple[Path, str], to: Path) -> Path:
    shutil.copytree(default_run[0], to)
    return to


def fail_after(monkeypatch, owner, name: str, calls: int) -> None:
    original = getattr(owner, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt(f"killed in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def test_pipeline_runs_every_stage_and_resumes_to_the_same_report(
    tmp_path: Path, monkeypatch, default_run
):
    run, straight = default_run
    for stage in ("data", "supernet", "latency", "predictor", "search", "evaluate"):
        assert (run / stage / "done.json").exists(), stage
    assert all(
        (run / png).stat().st_size > 10_000
        for png in ("bleu_vs_latency.png", "predicted_vs_measured.png", "search_convergence.png")
    )
    assert "| hat@" in straight and "baseline" in straight and "SacreBLEU" in straight
    search = json.loads((run / "search/done.json").read_text())["result"]
    assert len(search["results"]) == 2 and search["evaluated"] < search["without_cache"]
    # 2 found + 3 baselines: 2 per family, the full-size model they share once
    assert len(list((run / "models").iterdir())) == 5

    killed = tmp_path / "killed"
    import hat.pipeline.run as pipeline_run

    # killed in every stage, and stopped after some (--stop-after): the same report
    stop = "stop"
    steps = [
        (pipeline_run, "collect", 0),  # as the latency stage starts
        (stop, "predictor", "supernet"),  # done: the device timed; not yet: any training
        (Trainer, "_update", 10),  # in the supernet's training (25 updates)
        (Trainer, "_update", 20),  # in the first baseline's (12 updates)
        (Fitness, "loss", 5),  # in the search
        (stop, "search", "evaluate"),
        (Trainer, "_update", 15),  # in the second found model's
    ]
    for owner, name, calls in steps:
        if owner is stop:
            assert run_pipeline(killed, f"--stop-after={name}") is None
            assert (killed / name / "done.json").exists() and not (killed / calls).exists()
            continue
        with monkeypatch.context() as m:
            fail_after(m, owner, name, calls)
            with pytest.raises(KeyboardInterrupt):
                run_pipeline(killed)
    assert run_pipeline(killed) == straight

    # searching in the same SuperTransformer, given instead of trained, finds the same models
    supernet = run / "supernet/checkpoint_last.pt"
    adopted = tmp_path / "adopted"
    assert run_pipeline(adopted, f"--supernet-checkpoint={supernet}", "--stop-after=search") is None
    assert json.loads((adopted / "supernet/done.json").read_text())["result"]["updates"] == 25

    def found(r: Path) -> list:
        return json.loads((r / "search/done.json").read_text())["result"]["results"]

    assert found(adopted) == found(run)
    mismatch = tmp_path / "mismatch"  # refused as soon as the data is there
    with pytest.raises(HatError, match=r"does not fit this run: model setting dropout differ"):
        run_pipeline(mismatch, f"--supernet-checkpoint={supernet}", "--dropout=0.3")
    assert (mismatch / "data/done.json").exists() and not (mismatch / "latency").exists()
    with pytest.raises(HatError, match="is this run's own supernet stage"):
        run_pipeline(run, f"--supernet-checkpoint={supernet}")


def test_training_side_by_side_matches_one_at_a_time(tmp_path: Path, caplog, default_run):
    """Two worker processes train the supernet and the baselines, then the found models: the
    same stages, the same losses, and a rerun skips them all."""
    serial_run, serial = default_run
    with caplog.at_level("INFO"):
        parallel = run_pipeline(tmp_path / "parallel", "--train-jobs=2")
    assert "side by side" in caplog.text and "models/dim_" in caplog.text  # the workers' logs

    def losses(run: Path) -> dict[str, float]:
        return {
            str(done.parent.relative_to(run)): json.loads(done.read_text())["result"]["valid"]
            for done in [run / "supernet/done.json", *(run / "models").glob("*/done.json")]
        }

    one, two = losses(serial_run), losses(tmp_path / "parallel")
    assert one.keys() == two.keys() and len(one) == 6
    for stage in one:
        for key, value in one[stage].items():
            assert two[stage][key] == pytest.approx(value, rel=1e-3), (stage, key)
    assert parallel.count("| hat@") == serial.count("| hat@")
    n = len((tmp_path / "parallel/pipeline_log.jsonl").read_text().splitlines())
    run_pipeline(tmp_path / "parallel", "--train-jobs=2")
    assert len((tmp_path / "parallel/pipeline_log.jsonl").read_text().splitlines()) == n


def test_evaluation_latency_is_normalized_like_the_budgets(tmp_path: Path, default_run):
    """The models are timed with the latency dataset's reference: on a device 1.5x slower than
    when the dataset was measured, the report's latencies stay, the raw ones and the drift show
    it."""
    run = copy_run(default_run, tmp_path / "run")
    quiet = json.loads((run / "results.json").read_text())["models"]
    report = run_pipeline(run, "--lenpen", "1.2", timer=slow_timer)  # evaluate reruns, slower
    slow = json.loads((run / "results.json").read_text())["models"]
    assert [m["name"] for m in quiet] == [m["name"] for m in slow]
    for q, s in zip(quiet, slow, strict=True):
        assert q["drift"] == pytest.approx(1.0) and s["drift"] == pytest.approx(1.5)
        assert s["measured_ms"] == pytest.approx(q["measured_ms"], abs=0.01)
        assert s["raw_ms"] == pytest.approx(1.5 * q["raw_ms"], rel=1e-3)
    assert "median drift factor 1.50" in report


def test_models_with_the_same_architecture_train_once(tmp_path: Path, default_run):
    run = copy_run(default_run, tmp_path / "run")  # the search and its models rerun
    before = set((run / "models").iterdir())
    budgets = ["--latency-constraint", "1000", "2000"]  # both beyond the largest: one model
    report = run_pipeline(run, *budgets)
    evaluated = json.loads((run / "evaluate/done.json").read_text())["result"]
    archs = {name: json.dumps(r["arch"], sort_keys=True) for name, r in evaluated.items()}
    assert len(set(archs.values())) < len(archs) == 5  # 2 found + 3 baselines
    found = {a for name, a in archs.items() if name.startswith("hat@")}
    baseline = {a for name, a in archs.items() if not name.startswith("hat@")}
    assert len(found) == 1 and len(set((run / "models").iterdir()) - before) == len(
        found - baseline
    )
    assert report.count("| hat@1000.0ms | HAT |") == report.count("| hat@2000.0ms | HAT |") == 1


def test_a_changed_setting_reruns_its_stage_and_everything_after_it(
    tmp_path: Path, caplog, default_run
):
    run = copy_run(default_run, tmp_path / "run")

    def stages_run() -> list[str]:
        return [
            json.loads(line)["stage"]
            for line in (run / "pipeline_log.jsonl").read_text().splitlines()
        ]

    first = stages_run()
    with caplog.at_level("INFO"):
        run_pipeline(run, "--latency-constraint-fraction", "0.35", "0.8")  # one budget edited
    rerun = stages_run()[len(first) :]
    assert rerun[0] == "search" and rerun[-1] == "evaluate"
    assert not {"data", "supernet", "latency", "predictor"} & set(rerun)
    assert [s for s in rerun if s.startswith("models/")] == [
        "models/hat@" + s.split("@")[1] for s in rerun if s.startswith("models/hat@")
    ]
    assert "stage search        reruns: settings changed" in caplog.text
    assert re.search(
        r"stage evaluate +reruns: .*upstream models/hat@[\d.]+ms.* changed", caplog.text
    )
    done = json.loads((run / "search/done.json").read_text())
    assert {"settings", "upstream supernet", "upstream predictor", "upstream data"} == done[
        "inputs"
    ].keys()
    n = len(stages_run())
    run_pipeline(
        run, "--latency-constraint-fraction", "0.35", "0.8"
    )  # nothing changed: nothing runs
    assert len(stages_run()) == n
    run_pipeline(run, "--latency-constraint-fraction", "0.35", "0.8", "--lenpen", "1.2")
    assert stages_run()[n:] == ["evaluate"]


def test_report_compares_with_the_baseline_frontier():
    from hat.pipeline.report import comparison

    def row(model, kind, bleu, ms, budget=None):
        return {"model": model, "kind": kind, "bleu": bleu, "latency_ms": ms, "budget_ms": budget}

    rows = [
        row("hat@31.2ms", "HAT", 50.68, 27.5, 31.2),
        row("hat@39.8ms", "HAT", 55.0, 35.0, 39.8),
        row("big", "baseline", 58.21, 38.8),
        row("mid", "baseline", 19.87, 19.2),
        row("small", "baseline", 27.06, 17.4),
    ]
    text = comparison(rows)
    assert "50.68 BLEU at 27.5 ms" in text
    assert (
        "at least as accurate, big (58.21 BLEU), takes 38.8 ms: HAT's model is 1.41x faster" in text
    )
    assert (
        "at least as fast (up to 5% slower), small (17.4 ms), scores 27.06 BLEU (+23.62 for HAT's"
        in text
    )
    assert "No baseline is as fast" in comparison([rows[0], rows[2]])
    assert "No baseline is as accurate" in comparison([rows[0], rows[3]])


def test_frontier_verdicts_account_for_seed_spread():
    from hat.pipeline.report import frontier

    def row(model, kind, bleu, ms, spread=0.0, budget=None):
        seeds = {"1": bleu - spread / 2, "2": bleu + spread / 2}
        return {
            "model": model,
            "kind": kind,
            "bleu": bleu,
            "bleu_spread": spread,
            "bleu_by_seed": seeds,
            "latency_ms": ms,
            "budget_ms": budget,
        }

    base = [row("small", "baseline", 20.0, 10.0, 1.0), row("big", "baseline", 30.0, 30.0, 0.4)]
    found = [
        row("clear", "HAT", 22.0, 10.0, 0.5, 12),  # +2.0 over 'small', spreads 0.5 / 1.0
        row("noisy", "HAT", 20.8, 10.0, 0.5, 13),  # +0.8: within small's spread of 1.0
        row("fast", "HAT", 30.0, 20.0, 2.0, 25),  # as accurate as 'big', 1.5x faster
        row("fastest", "HAT", 15.0, 5.0, 0.1, 6),  # none as fast; 'small' 2x slower, better
        row("twin", "HAT", 19.5, 7.0, 0.2, 8),  # matches 'small' (spread 1.0) 1.43x faster
        row("slow", "HAT", 29.0, 25.0, 0.1, 28),  # above 'small' but 'big' only 1.2x slower
    ]
    v = {x["model"]: x for x in frontier(base + found)}
    assert v["clear"]["beats_faster_baselines"] and v["clear"]["above_frontier"]
    assert v["clear"]["smallest_margin"] == 2.0
    assert v["noisy"]["beats_faster_baselines"] is False and not v["noisy"]["above_frontier"]
    assert v["fast"]["speedup_at_equal_bleu"] == 1.5 and v["fast"]["above_frontier"]
    assert v["fast"]["cheapest_as_accurate"] == "big"
    assert v["noisy"]["cheapest_as_accurate"] == "big" and not v["noisy"]["matches_its_bleu"]
    assert v["fastest"]["beats_faster_baselines"] is None and not v["fastest"]["above_frontier"]
    assert v["twin"]["matches_its_bleu"] and v["twin"]["above_frontier"]
    assert v["twin"]["speedup_at_equal_bleu"] == 1.43
    close = frontier([*base, row("close", "HAT", 21.0, 9.6, 0.4, 10)])[0]  # small: 4% slower
    assert close["baselines_as_fast"] == 1 and close["smallest_margin"] == 1.0
    assert v["slow"]["beats_faster_baselines"] and v["slow"]["above_frontier"]
    assert v["slow"]["speedup_at_equal_bleu"] == 1.2


def test_seeds_train_every_model_twice_and_report_mean_and_spread(tmp_path: Path, default_run):
    run = copy_run(default_run, tmp_path / "run")  # seed 1's models are there: seed 2's train
    report = run_pipeline(run, "--seeds", "1", "2")
    models = {d.name for d in (run / "models").iterdir()}
    assert len(models) == 10 and all(f"{m}.seed2" in models for m in models if "." not in m)
    doc = json.loads((run / "results.json").read_text())
    for m in doc["models"]:
        assert set(m["test_bleu"]) == {"1", "2"}
        values = list(m["test_bleu"].values())
        assert m["test_bleu_mean"] == pytest.approx(sum(values) / 2, abs=0.01)
        assert m["test_bleu_spread"] == pytest.approx(max(values) - min(values), abs=0.01)
        assert set(m["training"]) == {"1", "2"}
        assert all(t["updates"] == 12 and t["converged"] is None for t in m["training"].values())
    assert " ± " in report and "above the frontier" in report
    assert len(doc["frontier"]) == 2


def test_mixed_precision_settings(tmp_path: Path):
    parse = build_parser().parse_args
    assert pipeline_config(parse(tiny_args(tmp_path))).train.precision == "fp32"
    assert pipeline_config(parse(tiny_args(tmp_path) + ["--bf16"])).train.precision == "bf16"
    assert (
        pipeline_config(parse(tiny_args(tmp_path) + ["--fp16", "--latgpu"])).train.precision
        == "fp16"
    )
    with pytest.raises(HatError, match="--fp16 trains on the GPU"):
        pipeline_config(parse(tiny_args(tmp_path) + ["--fp16"]))
    with pytest.raises(HatError, match="at least 16 rows"):
        pipeline_config(parse(tiny_args(tmp_path) + ["--lat-dataset-size=15"]))
    for bad in ('{"references": 3}', '{"rank_by": {"bleu": {"supernet_a": 0.5}}}'):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(HatError, match="--ranking-study .*bad.json: not a ranking study"):
            pipeline_config(parse(tiny_args(tmp_path) + [f"--ranking-study={tmp_path}/bad.json"]))
    with pytest.raises(HatError, match="--ranking-study .*none.json: cannot read it"):
        pipeline_config(parse(tiny_args(tmp_path) + [f"--ranking-study={tmp_path}/none.json"]))
    with pytest.raises(HatError, match="--supernet-checkpoint .*nope.pt: no such file"):
        pipeline_config(parse(tiny_args(tmp_path) + [f"--supernet-checkpoint={tmp_path}/nope.pt"]))


def test_baselines_are_hats_two_families():
    space = tiny_space()
    found = baselines(space, 3)
    dims = [b.arch for b in found if b.family == DIMENSION]
    layers = [b.arch for b in found if b.family == LAYERS]
    largest = space.homogeneous(max, 4, 3, ende=-1)
    assert dims[0] == largest and largest not in layers  # listed once
    assert all(a.encoder_layer_num == 4 and a.decoder_layer_num == 3 for a in dims)
    assert [a.encoder_embed_dim for a in dims] == [64, 48, 32]  # scaled down together
    assert [a.decoder_ende_attention_heads[0] for a in dims] == [4, 2, 1]
    assert [a.decoder_layer_num for a in layers] == [2, 1]  # full width, shallower
    assert all(a.encoder_embed_dim == 64 and a.decoder_ffn_embed_dim[0] == 80 for a in layers)
    assert len({b.name for b in found}) == len(found) == 5
    assert [b.arch for b in baselines(space, 2)] == [dims[0], dims[2], layers[1]]


RANKING = {  # bench/supernet_ranking.py's summary, in short
    "references": 4,
    "converged": 3,
    "rank_by": {
        truth: {
            "supernet_sandwich": {"overall": 0.67, "within_depth_mean": 1.0},
            "proxy_params": {"overall": 0.33, "within_depth_mean": None},
        }
        for truth in ("bleu", "loss")
    },
}


def test_convergence_tolerance_stops_the_subtransformers_not_the_supernet(tmp_path: Path):
    run = tmp_path / "run"
    study = tmp_path / "ranking.json"
    study.write_text(json.dumps(RANKING))
    report = run_pipeline(
        run,
        "--convergence-tolerance=0.9",
        "--convergence-smoothing=1",  # the single validations: a verdict from update 4 on
        "--validate-interval-updates=2",
        f"--ranking-study={study}",
    )
    supernet = json.loads((run / "supernet/done.json").read_text())["result"]
    assert supernet["updates"] == 25 and supernet["converged"] is None
    doc = json.loads((run / "results.json").read_text())
    for m in doc["models"]:
        (training,) = m["training"].values()
        # validated every 2 updates: at update 4 the loss changed by less than 90% since update 2
        assert training["converged"] is True and training["updates"] < 12, m["name"]
        assert training["loss_change"] < 0.9 and training["valid_loss"] > 0
    assert " converged (validation loss changed less than" in report
    assert doc["ranking"] == RANKING  # the ranking study's taus, in the report too
    assert (
        "## Supernet ranking" in report and "| supernet_sandwich | 0.67 | 1.00 | 0.67 |" in report
    )


def test_command_line_stops_after_the_predictor(tmp_path: Path, capsys):
    from hat.cli.pipeline import main

    assert main(tiny_args(tmp_path / "run") + ["--stop-after=predictor"]) == 0
    assert "stopped after the predictor stage (--stop-after)" in capsys.readouterr().out
    assert (tmp_path / "run/predictor/done.json").exists()
    assert not (tmp_path / "run/report.md").exists()


def test_the_baselines_train_first_before_anything_is_timed(tmp_path: Path, caplog):
    """--stop-after baselines trains them into the results ledger with no device timing and no
    SuperTransformer; a later run, in a new run directory, takes them from the ledger."""
    run, ledger = tmp_path / "run", tmp_path / "ledger.jsonl"
    assert run_pipeline(run, f"--results-ledger={ledger}", "--stop-after=baselines") is None
    names = {b.name for b in baselines(tiny_space(), 2)}
    assert {d.name for d in (run / "models").iterdir()} == names
    assert all((run / "models" / n / "done.json").exists() for n in names)
    assert not (run / "latency").exists() and not (run / "supernet").exists()
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert len(records) == len(names) and all("test_bleu" in r["result"] for r in records)
    with caplog.at_level("INFO"):
        later = tmp_path / "later"
        assert run_pipeline(later, f"--results-ledger={ledger}", "--stop-after=supernet") is None
    assert caplog.text.count("trained before, taken from") == len(names)
    assert (later / "predictor/done.json").exists() and (later / "supernet/done.json").exists()
    assert len(ledger.read_text().splitlines()) == len(names)  # nothing trained again


def test_a_results_ledger_keeps_the_trained_models_beyond_the_run_dir(tmp_path: Path, caplog):
    run, ledger = tmp_path / "run", tmp_path / "ledger.jsonl"
    first = run_pipeline(run, f"--results-ledger={ledger}", "--seeds", "2")  # not --seed's 1
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    trained = {d.name for d in (run / "models").iterdir()}
    assert len(records) == len(trained)  # each model added once it was trained and tested
    doc = json.loads((run / "results.json").read_text())
    assert sorted({m["test_bleu"]["2"] for m in doc["models"]}) == sorted(
        {r["result"]["test_bleu"] for r in records}
    )
    for r in records:
        assert r["inputs"]["test"]["len_penalty"] == 1.0 and len(r["inputs"]["data"]) == 64
    assert all(t["ledger"] is None for m in doc["models"] for t in m["training"].values())

    run_pipeline(run, f"--results-ledger={ledger}", "--seeds", "2", "--lenpen", "1.2")  # tested
    assert len(ledger.read_text().splitlines()) == 2 * len(trained)
    for name in trained:  # the run dir's models lost (a new machine): the ledger has them
        shutil.rmtree(run / "models" / name)
    with caplog.at_level("INFO"):
        again = run_pipeline(run, f"--results-ledger={ledger}", "--seeds", "2")
    assert caplog.text.count("trained before, taken from") == len(trained)
    assert f"; {len(trained)} taken from the results ledger" in again
    assert (
        again.replace(
            f"; {len(trained)} taken from the results ledger (trained by an earlier run)", ""
        )
        == first
    )
    doc = json.loads((run / "results.json").read_text())
    assert all(t["ledger"] == str(ledger) for m in doc["models"] for t in m["training"].values())
    assert not list((run / "models").glob("*/checkpoint_last.pt"))  # nothing trained
    assert len(ledger.read_text().splitlines()) == 2 * len(trained)
    with pytest.raises(HatError, match="not the trained model .*holds no test BLEU"):
        run_pipeline(run, f"--results-ledger={ledger}", "--seeds", "2", "--lenpen", "1.3")
    from hat.cli.pipeline import main

    ledger.write_text("{}\n")  # not a ledger: refused before any stage
    assert main([*tiny_args(tmp_path / "new"), f"--results-ledger={ledger}"]) == 2
    assert not (tmp_path / "new").exists()


def test_a_kept_searchs_inputs_hold_the_validation_subset_and_the_checkpoints_path(
    tmp_path: Path, default_run
):
    """What a kept search is looked up by: the split its fitness is scored on, and a given
    SuperTransformer's path (its contents are checked by sha256 while the file is there)."""
    run, given = tmp_path / "run", default_run[0] / "supernet/checkpoint_last.pt"
    run.mkdir()
    (run / "data").symlink_to(default_run[0] / "data")  # the inputs name the data's contents

    def inputs(*extra: str) -> dict:
        flags = tiny_args(run) + [f"--supernet-checkpoint={given}", *extra]
        pipeline = Pipeline(pipeline_config(build_parser().parse_args(flags)), timer=fake_timer)
        return pipeline._search_inputs({}, None)

    assert inputs()["search"]["valid_subset"] == "valid" and inputs() == inputs()
    assert inputs("--valid-subset=test")["search"]["valid_subset"] == "test"
    assert inputs()["supernet"] == {"checkpoint": str(given)}


def test_a_kept_search_outlives_the_supernet(tmp_path: Path, default_run, caplog):
    """--search-result keeps each search with its inputs: a run directory that lost its
    SuperTransformer and search takes the found models from it (nothing trained or searched
    again, the same report but for where the search came from); other search inputs search."""
    kept = tmp_path / "search.jsonl"
    run = copy_run(default_run, tmp_path / "run")
    assert run_pipeline(run, f"--search-result={kept}") == default_run[1]  # recorded at its end
    (record,) = [json.loads(line) for line in kept.read_text().splitlines()]
    supernet = run / "supernet/checkpoint_last.pt"
    assert record["result"]["supernet_sha256"] == file_sha256(supernet)
    search_log = (run / "search/search_log.jsonl").read_text().splitlines()
    assert record["result"]["log"] == [json.loads(line) for line in search_log]
    searched = json.loads((run / "search/done.json").read_text())["result"]

    shutil.rmtree(run / "supernet")  # a new machine: the checkpoints are gone, the file is not
    shutil.rmtree(run / "search")
    with caplog.at_level("INFO"):
        report = run_pipeline(run, f"--search-result={kept}")
    assert "not searched again" in caplog.text
    assert not (run / "supernet").exists()
    restored = json.loads((run / "search/done.json").read_text())["result"]
    assert restored["results"] == searched["results"] and restored["kept"]["file"] == str(kept)
    assert sorted(p.name for p in (run / "search").glob("hat@*.yml")) == sorted(
        f"hat@{r['budget_ms']:.1f}ms.yml" for r in searched["results"]
    )
    kept_line = re.search(r"\nKept in `.*?this run's\.\n", report)
    assert kept_line and report.replace(kept_line.group(0), "") == default_run[1]
    doc = json.loads((run / "results.json").read_text())
    assert doc["search"]["kept"]["host"] == record["recorded"]["host"]
    with pytest.raises(HatError, match="--finetune-inherited needs the SuperTransformer"):
        run_pipeline(run, f"--search-result={kept}", "--finetune-inherited")

    partial = tmp_path / "partial.jsonl"  # a record without the search's log: one-line error
    del record["result"]["log"]
    partial.write_text(json.dumps(record) + "\n")
    with pytest.raises(HatError, match=f"{partial}: a record of this search lacks log "):
        run_pipeline(run, f"--search-result={partial}")

    other = run_pipeline(run, f"--search-result={kept}", "--evo-iter=1", "--stop-after=search")
    assert other is None and (run / "supernet/done.json").exists()  # trained, then searched
    assert len(kept.read_text().splitlines()) == 2
    shutil.rmtree(run / "search")  # fine-tuning needs the SuperTransformer: the run's own is here
    caplog.clear()
    with caplog.at_level("INFO"):
        again = run_pipeline(
            run,
            f"--search-result={kept}",
            "--evo-iter=1",
            "--finetune-inherited",
            "--stop-after=search",
        )
    assert again is None and "not searched again" in caplog.text

    # a given SuperTransformer is named by its path: a search kept for another path is not taken
    given, kept_given = tmp_path / "given.pt", tmp_path / "given.jsonl"
    shutil.copy(run / "supernet/checkpoint_last.pt", given)
    flags = (f"--search-result={kept_given}", "--evo-iter=1", "--stop-after=search")
    assert run_pipeline(run, f"--supernet-checkpoint={given}", *flags) is None
    given.unlink()  # gone: its kept search is taken
    caplog.clear()
    with caplog.at_level("INFO"):
        assert run_pipeline(run, f"--supernet-checkpoint={given}", *flags) is None
    assert "not searched again" in caplog.text
    with pytest.raises(HatError, match="checkpoint not found: .*elsewhere.pt"):
        run_pipeline(run, f"--supernet-checkpoint={tmp_path / 'elsewhere.pt'}", *flags)

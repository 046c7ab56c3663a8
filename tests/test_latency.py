"""Latency: protocol, datasets (resume, drift, sampling), predictors (HAT's files, training)."""

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    assert_one_line_error,
    outside_tiny_space,
    recording_timer,
    run_cli,
    tiny_space,
)

from hat.errors import HatError
from hat.latency.dataset import collect, recheck
from hat.latency.features import cost_terms_from_hat, hat_features
from hat.latency.measure import Latency, trimmed_stats
from hat.latency.metrics import kendall_tau, regression_metrics, spearman, split_indices
from hat.latency.plan import plan_configs, proxy_cost, reference_archs
from hat.latency.predictor import load_predictor
from hat.latency.rows import EXTRA_COLUMNS, HAT_COLUMNS, read_rows
from hat.latency.table import drift_report, load_table, normalise_by_reference
from hat.latency.timing import MeasureSettings, calibrate, interleaved, normalize
from hat.latency.training import train_ensemble, train_hat_recipe
from hat.space import ArchConfig
from hat.transformer import ModelSettings

FAST = MeasureSettings(sentence_length=4, beam=2, iters=2, warmup=1)
MIDDLE = dataclasses.replace(FAST, reference="middle")


def test_authors_predictors_reproduce_their_published_outputs(shared_data: Path):
    expected = json.loads((shared_data / "hat-latency/expected_predictions.json").read_text())
    for name, info in expected["predictors"].items():
        predictor = load_predictor(
            str(shared_data / f"hat-latency/predictors/{name}.pt"),
            expected["feature_norm"],
            info["lat_norm"],
        )
        for cfg, want in info["predictions"].items():
            arch = ArchConfig.from_yaml(shared_data / cfg)
            assert hat_features(arch) == pytest.approx(want["features"])
            mean, _ = predictor.predict_archs([arch])
            assert abs(mean[0] - want["predicted_ms"]) <= 1e-3, (name, cfg)


def test_bare_hat_predictor_needs_its_norms(shared_data: Path):
    path = str(shared_data / "hat-latency/predictors/iwslt14deen_gpu_titanxp.pt")
    with pytest.raises(HatError, match="give --feature-norm and --lat-norm"):
        load_predictor(path)
    with pytest.raises(HatError, match="takes 10 features"):
        load_predictor(path, [1.0] * 9, 200)


def test_rank_metrics_and_trimmed_stats():
    a = np.arange(10.0)
    assert (
        kendall_tau(a, a) == 1
        and kendall_tau(a, -a) == -1
        and spearman(a, a**3) == pytest.approx(1)
    )
    m = regression_metrics(np.array([110.0, 90.0]), np.array([100.0, 100.0]))
    assert (
        m["mape"] == pytest.approx(10)
        and m["rmse"] == pytest.approx(10)
        and m["max_ape"] == pytest.approx(10)
    )
    mean, std = trimmed_stats([10.0] * 8 + [1.0, 100.0])  # the outliers are outside 10-90%
    assert mean == 10 and std == 0
    train, valid, test = split_indices(1000, 3)
    assert (len(train), len(valid), len(test)) == (800, 100, 100)
    assert len(set(train) | set(valid) | set(test)) == 1000


def test_predictors_train_save_load_and_rank(shared_data: Path, tmp_path: Path):
    table = load_table(shared_data / "hat-latency/wmt14ende_cpu_xeon_all.csv")
    assert table.features.shape == (2000, 10) and table.configs is None
    train, _, test = split_indices(len(table.latency), 0)
    cost = cost_terms_from_hat(table.features)
    ours = train_ensemble(
        table.features[train],
        cost[train],
        table.latency[train],
        [640, 6, 2048, 6, 640, 6, 2048, 6, 6, 2],
        "hat10",
        members=3,
        steps=400,
    )
    mean, std = ours.predict(table.features[test], cost[test])
    metrics = regression_metrics(mean, table.latency[test])
    assert metrics["mape"] < 10 and metrics["kendall_tau"] > 0.75 and (std > 0).all()
    ours.save(str(tmp_path / "p.pt"))
    again = load_predictor(str(tmp_path / "p.pt"))
    assert np.allclose(again.predict(table.features[test], cost[test])[0], mean)
    with pytest.raises(HatError, match="was trained with feature-norm"):
        load_predictor(str(tmp_path / "p.pt"), [1.0] * 10)
    hat = train_hat_recipe(
        table.features[train],
        table.latency[train],
        [640, 6, 2048, 6, 640, 6, 2048, 6, 6, 2],
        300,
        steps=200,
    )
    assert hat.kind == "hat-mlp" and set(hat.nets[0].state_dict()) >= {
        "first_layer.weight",
        "layers.2.bias",
        "predict.weight",
    }


def test_latency_predictor_cli(shared_data: Path, tmp_path: Path):
    cfg = shared_data / "hat-configs/wmt14.en-de/latency_predictor/cpu_xeon.yml"
    ckpt = tmp_path / "xeon.pt"
    common = [
        f"--configs={cfg}",
        "--lat-dataset-path",
        str(shared_data / "hat-latency/wmt14ende_cpu_xeon_all.csv"),
        "--ckpt-path",
        str(ckpt),
        "--json",
    ]
    result = run_cli(
        *common, "--predictor", "hat", "--train-steps", "300", script="latency_predictor.py"
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"rmse", "mape", "max_ape", "kendall_tau", "spearman", "train_seconds"} <= metrics.keys()
    assert ckpt.with_suffix(".png").stat().st_size > 10_000
    sub = (
        shared_data
        / "hat-configs/wmt14.en-de/subtransformer/HAT_wmt14ende_xeon@137.9ms_bleu@25.8.yml"
    )
    result = run_cli("latency-predictor", "--ckpt-path", str(ckpt), "--predict", str(sub), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["latency_ms"] > 0
    result = run_cli(
        "latency-predictor", "--ckpt-path", str(ckpt), "--predict", str(sub), "--lat-norm", "200"
    )
    assert_one_line_error(result, "was trained with lat-norm 300.0")


def test_csv_with_missing_columns_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("encoder_embed_dim,latency_mean_encoder\n512,3.0\n")
    result = run_cli(
        "latency-predictor", "--lat-dataset-path", str(bad), "--ckpt-path", str(tmp_path / "p.pt")
    )
    assert_one_line_error(result, "lacks the column(s)", "decoder_embed_dim")


def test_collect_writes_hat_columns_resumes_and_reports_drift(tmp_path: Path):
    space = tiny_space()
    settings = ModelSettings(vocab_size=50, qkv_dim=32)
    path = tmp_path / "lat.csv"
    seen = []

    def stop_after_three(row):
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt  # a kill between rows

    with pytest.raises(KeyboardInterrupt):
        collect(
            space, settings, FAST, path, size=7, seed=2, progress=False, on_row=stop_after_three
        )
    assert len(read_rows(path)) == 3
    with open(path, "a") as f:
        f.write("512,6,10")  # a half-written row, as after kill -9 during a write
    report = collect(space, settings, FAST, path, size=7, seed=2, progress=False)
    rows = read_rows(path)
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header == HAT_COLUMNS + EXTRA_COLUMNS  # HAT's 14 columns first, in HAT's order
    assert sorted(int(r["config_id"]) for r in rows) == list(range(7))
    plan = plan_configs(space, 7, 2)
    for r in rows:
        arch = ArchConfig.from_dict(json.loads(r["config"]))
        assert arch == plan[int(r["config_id"])]
        assert [float(r[c]) for c in HAT_COLUMNS[:10]] == pytest.approx(hat_features(arch))
        assert (
            float(r["latency_mean_decoder"]) > 0
            and r["threads"]
            and r["torch_version"]
            and r["device"]
        )
        assert (
            r["protocol"] == "beam-search"
            and r["cores"]
            and float(r["normalized_ms"])
            == pytest.approx(
                normalize(
                    [float(r["latency_ratio"]), float(r["latency_ratio2"])],
                    [float(r["calibration_ms"]), float(r["calibration2_ms"])],
                ),
                rel=1e-3,
            )
        )
    # one calibration per reference and file, kept on resume; the references by default
    assert len({(r["calibration_ms"], r["calibration2_ms"]) for r in rows}) == 1
    assert [json.loads(rows[0][k]) for k in ("reference", "reference2")] == [
        a.to_dict() for a in reference_archs(space, "bracket", 4, 2)
    ]
    assert (
        report["reference_measurements"] >= 3
        and "drift_range_pct" in report
        and report["calibration_ms"] > 0
    )
    with pytest.raises(HatError, match="another plan"):
        collect(space, settings, FAST, path, size=7, seed=3, progress=False)
    with pytest.raises(HatError, match="other reference SubTransformers"):
        collect(space, settings, MIDDLE, path, size=8, seed=2, progress=False)
    table = load_table(path, drift_normalize=True)
    assert len(table.configs) == 7 and table.reference_ms is not None


def test_drift_normalisation_and_report():
    rows = [{"reference_ms": str(v)} for v in (10, 10, 12, 12, 11)]
    report = drift_report(rows)
    assert report["reference_measurements"] == 3 and report["drift_range_pct"] == pytest.approx(
        2 / 11 * 100
    )
    assert normalise_by_reference(np.array([20.0, 24.0]), np.array([10.0, 12.0])) == pytest.approx(
        [22.0, 22.0]
    )


def test_stratified_sampling_covers_the_latency_range():
    from test_space import SPACE

    from hat.space import SearchSpace

    space = SearchSpace(**SPACE)  # HAT's IWSLT space
    cost = lambda cfgs: np.array([proxy_cost(c, 23, 5, 512) for c in cfgs])  # noqa: E731
    uniform, strat = (
        cost(plan_configs(space, 300, 1)),
        cost(plan_configs(space, 300, 1, "stratified")),
    )
    edges = np.linspace(min(uniform.min(), strat.min()), max(uniform.max(), strat.max()), 11)
    spread = lambda c: np.histogram(c, edges)[0].std()  # noqa: E731
    assert spread(strat) < spread(uniform) / 2  # far flatter over the latency proxy's range
    assert plan_configs(space, 20, 5, "stratified") == plan_configs(space, 20, 5, "stratified")


def test_measure_one_config_and_hat_yaml(tmp_path: Path, shared_data: Path):
    space = tmp_path / "space.yml"
    space.write_text(yaml.safe_dump(tiny_space().to_hat_dict()))
    sub = tmp_path / "sub.yml"
    tiny_space().smallest().to_yaml(sub)
    result = run_cli(
        "latency-dataset",
        f"--configs={space}",
        "--measure",
        str(sub),
        "--latiter",
        "2",
        "--sentence-length",
        "5",
        "--vocab-size",
        "60",
        "--qkv-dim",
        "32",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    lat = json.loads(result.stdout.strip().splitlines()[-1])
    assert lat["encoder_ms"] > 0 and lat["beam"] == 5 and lat["sentence_length"] == 5
    from hat.cli.latency_dataset import build_parser

    for f in (shared_data / "hat-configs").glob("*/latency_dataset/*.yml"):
        args = build_parser().parse_args([f"--configs={f}"])
        device = "cuda" if "gpu" in f.name else "cpu"
        assert args.lat_dataset_size == 2000 and args.lat_device == device


def test_measure_refuses_a_config_outside_the_space(tmp_path: Path):
    space = tmp_path / "space.yml"
    space.write_text(yaml.safe_dump(tiny_space().to_hat_dict()))
    sub = tmp_path / "sub.yml"
    outside_tiny_space().to_yaml(sub)
    result = run_cli(
        "latency-dataset", f"--configs={space}", "--measure", str(sub), "--qkv-dim", "32"
    )
    assert_one_line_error(
        result, "encoder-embed-dim-subtransformer = 128 is larger than the supernet"
    )


def test_oob_shrinkage_keeps_a_real_correction_and_shrinks_noise():
    import torch

    from hat.latency.training import oob_shrinkage

    class Fixed(torch.nn.Module):
        def __init__(self, out: torch.Tensor):
            super().__init__()
            self.out = out

        def forward(self, x):
            return self.out

    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(60, 3)
    target = torch.rand(60, generator=gen) - 0.5  # log(latency / physics)
    boots = [torch.randint(0, 60, (60,), generator=gen) for _ in range(5)]
    real = [Fixed(target.clone()) for _ in boots]
    noise = [Fixed(torch.randn(60, generator=gen)) for _ in boots]
    assert oob_shrinkage(real, boots, x, target) == 1.0
    assert oob_shrinkage(noise, boots, x, torch.zeros(60)) == 0.25


def test_interleaving_alternates_in_random_order_and_cancels_a_burst():
    import random

    from hat.transformer import Transformer

    space, settings = tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32)
    sub, ref = Transformer(space.smallest(), settings), Transformer(space.middle(), settings)
    measure = MeasureSettings(sentence_length=4, beam=2, iters=10, warmup=3, rounds=4)
    calls: list = []
    burst = {3, 4}  # a burst of load slows the second round, both its timings
    res = interleaved(
        sub,
        [ref],
        measure,
        recording_timer(calls, lambda n: 3.0 if n in burst else 1.0),
        random.Random(0),
    )
    assert len(res.order) == 8 and all(
        sorted(res.order[i : i + 2]) == ["ref0", "sub"] for i in range(0, 8, 2)
    )
    assert [c[0] == ref.arch for c in calls] == [o == "ref0" for o in res.order]
    assert (
        sum(c[1] for c in calls if c[0] == sub.arch)
        == 10
        == sum(c[1] for c in calls if c[0] == ref.arch)
    )
    assert [c[2] for c in calls] == [
        3,
        3,
        1,
        1,
        1,
        1,
        1,
        1,
    ]  # full dry runs first, one after a switch
    quiet = [recording_timer([])(m, measure).total_ms for m in (sub, ref)]
    assert res.ratios[0] == pytest.approx(quiet[0] / quiet[1])  # the burst cancels
    assert res.normalized_ms([quiet[1]]) == pytest.approx(quiet[0])  # ratio x calibration
    orders = set()
    for seed in range(8):
        orders.add(
            tuple(interleaved(sub, [ref], measure, recording_timer([]), random.Random(seed)).order)
        )
    assert len(orders) > 1  # the order inside a round is random


def test_the_ratio_is_the_median_of_the_rounds_ratios_of_median_runs():
    """A slow spell that hits a round hits both models and cancels; one slow run moves neither
    its round's median nor, in pairs of single runs, the median over the pairs."""
    import random

    from hat.transformer import Transformer

    space, settings = tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32)
    sub, ref = Transformer(space.smallest(), settings), Transformer(space.middle(), settings)
    measure = MeasureSettings(sentence_length=4, beam=2, iters=9, warmup=1, rounds=3)
    runs = {  # round 2 runs in a spell twice as slow, for both
        sub.arch: iter([[10, 10, 40], [24, 20, 22], [9, 30, 10]]),
        ref.arch: iter([[20] * 3, [40] * 3, [20] * 3]),
    }

    def timer(model, m):
        r = next(runs[model.arch])
        return Latency(sum(r) / 3, 0.0, 0.0, 0.0, "cpu", 1, 4, 2, 3, runs_ms=tuple(r))

    res = interleaved(sub, [ref], measure, timer, random.Random(0))
    assert res.ratios == pytest.approx([0.5])  # rounds: 10/20, 22/40, 10/20 (pooled: 20/20 = 1)
    assert res.latency.iters == 9 and sorted(res.latency.run_totals)[4] == 20  # runs pooled

    def quiet(model, m):
        return Latency(50.0, 0.0, 0.0, 0.0, "cpu", 1, 4, 2, 3, runs_ms=(25.0, 21.0, 99.0))

    assert calibrate(ref, measure, quiet) == 25.0  # the median run, the statistic of the ratio


def test_by_default_each_round_is_a_pair_of_single_runs_without_dry_runs_after_the_first():
    import random

    from hat.transformer import Transformer

    space, settings = tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32)
    sub, ref = Transformer(space.smallest(), settings), Transformer(space.middle(), settings)
    measure = MeasureSettings(sentence_length=4, beam=2, iters=7, warmup=3)
    assert measure.rounds is None and measure.round_count == 7
    assert MeasureSettings(iters=7, rounds=20).round_count == 7
    calls: list = []
    slow = {5: 3.0, 6: 3.0, 9: 4.0}  # a burst over pair 3 (both runs), one slow run in pair 5
    res = interleaved(
        sub, [ref], measure, recording_timer(calls, lambda n: slow.get(n, 1.0)), random.Random(1)
    )
    assert len(res.order) == 14 and all(
        sorted(res.order[i : i + 2]) == ["ref0", "sub"] for i in range(0, 14, 2)
    )
    assert [c[1] for c in calls] == [1] * 14  # one timed run per model per round
    assert [c[2] for c in calls] == [3, 3] + [0] * 12  # dry runs only before the first pair
    quiet = [recording_timer([])(m, measure).total_ms for m in (sub, ref)]
    assert res.ratios[0] == pytest.approx(quiet[0] / quiet[1])  # both bursts drop out


def test_slow_and_quiet_datasets_agree_on_normalized_latency(tmp_path: Path):
    space, settings = tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32)
    quiet, slow = tmp_path / "quiet.csv", tmp_path / "slow.csv"
    collect(space, settings, FAST, quiet, size=6, progress=False, timer=recording_timer([]))
    row = read_rows(quiet)[0]
    calibrations = [float(row["calibration_ms"]), float(row["calibration2_ms"])]
    collect(
        space,
        settings,
        FAST,
        slow,
        size=6,
        progress=False,
        timer=recording_timer([], lambda n: 1.5),
        calibrations_ms=calibrations,
    )  # a slow hour, the device's quiet calibration
    q, s = load_table(quiet), load_table(slow)
    assert q.normalized and s.normalized
    assert s.raw_latency == pytest.approx(1.5 * q.raw_latency)
    assert s.latency == pytest.approx(q.latency) and q.latency == pytest.approx(q.raw_latency)
    assert drift_report(read_rows(slow))["drift_factor_median"] == pytest.approx(1.5)
    assert load_table(slow, raw=True).latency == pytest.approx(s.raw_latency)


def test_csv_header_keeps_hats_columns_first_and_hats_reader_loads_it(tmp_path: Path):
    path = tmp_path / "lat.csv"
    collect(
        tiny_space(),
        ModelSettings(vocab_size=50, qkv_dim=32),
        FAST,
        path,
        size=4,
        progress=False,
        timer=recording_timer([]),
    )
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header[:14] == HAT_COLUMNS and header == HAT_COLUMNS + EXTRA_COLUMNS
    assert header.index("normalized_ms") > header.index(
        "timestamp"
    )  # new columns after the old ones
    with open(path) as fid:  # HAT's reader: skip one header line, split on commas
        next(fid)
        rows = [line.split(",") for line in fid]
    feats = [list(map(float, r[:10])) for r in rows]
    totals = [float(r[10]) + float(r[11]) for r in rows]
    table = load_table(path)
    assert np.array(feats) == pytest.approx(table.features) and totals == pytest.approx(
        table.raw_latency
    )


def test_older_csv_without_the_new_columns_loads_and_is_not_resumed(tmp_path: Path):
    path = tmp_path / "lat.csv"
    collect(
        tiny_space(),
        ModelSettings(vocab_size=50, qkv_dim=32),
        FAST,
        path,
        size=4,
        progress=False,
        timer=recording_timer([]),
    )
    old = EXTRA_COLUMNS[:12]  # hat's columns before reference interleaving
    rows = read_rows(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HAT_COLUMNS + old, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    table = load_table(path)
    assert not table.normalized and table.latency == pytest.approx(table.raw_latency)
    assert load_table(path, drift_normalize=True).reference_ms is not None
    with pytest.raises(HatError, match="older hat"):
        collect(
            tiny_space(),
            ModelSettings(vocab_size=50, qkv_dim=32),
            FAST,
            path,
            size=5,
            progress=False,
            timer=recording_timer([]),
        )


def test_threads_and_affinity_are_restored_and_recorded():
    import os

    import torch

    from hat.latency.measure import measure_latency
    from hat.transformer import Transformer

    before = (torch.get_num_threads(), os.sched_getaffinity(0))
    model = Transformer(tiny_space().smallest(), ModelSettings(vocab_size=50, qkv_dim=32))
    core = min(before[1])
    lat = measure_latency(model, 4, 2, iters=1, warmup=0, threads=1, cores={core})
    assert (lat.threads, lat.cores) == (1, str(core))
    assert (torch.get_num_threads(), os.sched_getaffinity(0)) == before


def test_hat_protocol_times_decoder_steps_without_search():
    from hat.latency.measure import measure_latency
    from hat.transformer import Transformer

    model = Transformer(tiny_space().smallest(), ModelSettings(vocab_size=50, qkv_dim=32))
    lat = measure_latency(model, 5, 2, iters=2, warmup=1, protocol="hat")
    assert lat.protocol == "hat" and lat.decoder_ms > 0
    with pytest.raises(HatError, match="--protocol"):
        measure_latency(model, 5, 2, protocol="fast")


def test_load_warning_names_busy_cores(monkeypatch, caplog):
    import hat.latency.measure as m

    monkeypatch.setattr(m, "core_load", lambda cores=None, interval=0.25: {0: 0.95, 1: 0.05})
    assert m.warn_if_loaded({0, 1}) == {0: 0.95, 1: 0.05}
    assert "cores 0 are already busy (cpu0 95%)" in caplog.text


def test_predictor_learns_normalized_latency_and_reports_its_spread(tmp_path: Path):
    path, ckpt = tmp_path / "lat.csv", tmp_path / "p.pt"
    collect(
        tiny_space(),
        ModelSettings(vocab_size=50, qkv_dim=32),
        FAST,
        path,
        size=20,
        progress=False,
        timer=recording_timer([], lambda n: 1.0 + 0.05 * (n % 7)),
    )  # a drifting device
    result = run_cli(
        "latency-predictor",
        "--lat-dataset-path",
        str(path),
        "--ckpt-path",
        str(ckpt),
        "--members",
        "2",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert (
        "normalized latency, calibration" in result.stdout and "ensemble spread ±" in result.stdout
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["latency"] == "normalized"
    meta = load_predictor(str(ckpt)).meta
    assert meta["latency"] == "normalized" and float(meta["calibration_ms"]) > 0
    for key, col in (
        ("reference_timed_ms", "reference_ms"),
        ("reference2_timed_ms", "reference2_ms"),
    ):
        assert meta[key] == pytest.approx(
            float(np.median([float(r[col]) for r in read_rows(path)]))
        )  # drift's baseline: the references as the rows timed them
    small, large = reference_archs(tiny_space(), "bracket", 4, 2)
    assert (
        meta["protocol"] == "beam-search"
        and json.loads(meta["reference"]) == small.to_dict()
        and json.loads(meta["reference2"]) == large.to_dict()
    )
    sub = tmp_path / "sub.yml"
    tiny_space().smallest().to_yaml(sub)
    result = run_cli("latency-predictor", "--ckpt-path", str(ckpt), "--predict", str(sub))
    assert (
        result.returncode == 0
        and "predicted normalized latency" in result.stdout
        and "±" in result.stdout
    )


def test_a_file_keeps_one_calibration(tmp_path: Path):
    path = tmp_path / "lat.csv"
    space, settings = tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32)
    collect(
        space,
        settings,
        MIDDLE,
        path,
        size=3,
        progress=False,
        timer=recording_timer([]),
        calibrations_ms=[7.0],
    )
    collect(
        space, settings, MIDDLE, path, size=4, progress=False, timer=recording_timer([])
    )  # resumes at 7.0
    rows = read_rows(path)
    assert {r["calibration_ms"] for r in rows} == {"7.0"} and not rows[0]["reference2"]
    assert json.loads(rows[0]["reference"]) == space.middle().to_dict()
    with pytest.raises(HatError, match="calibrated at 7.0 ms"):
        collect(
            space,
            settings,
            MIDDLE,
            path,
            size=5,
            progress=False,
            timer=recording_timer([]),
            calibrations_ms=[9.0],
        )
    with pytest.raises(HatError, match="1 calibration.s. given for 2 reference"):
        collect(space, settings, FAST, tmp_path / "b.csv", size=2, calibrations_ms=[7.0])


def test_normalize_with_one_reference_and_interpolating_between_two():
    assert normalize([1.5], [20.0]) == pytest.approx(30.0)  # ratio x calibration

    def slowdown(ms: float) -> float:  # small models slow down more (a busy core)
        return 3.0 * (ms / 10.0) ** -0.2

    cal = [10.0, 40.0]
    for quiet in (10.0, 17.0, 25.0, 40.0):
        now = quiet * slowdown(quiet)
        ratios = [now / (c * slowdown(c)) for c in cal]
        assert normalize(ratios, cal) == pytest.approx(quiet)  # exact within the bracket
        assert normalize(ratios[::-1], cal[::-1]) == pytest.approx(quiet)  # order-free
        assert abs(ratios[0] * cal[0] / quiet - 1) > 0.05 or quiet == 10.0  # one ref is off
    ratios = [5.0 / 10.0, 5.0 / 40.0]  # below the bracket, a uniform slowdown: the nearest
    assert normalize(ratios, cal) == pytest.approx(5.0)
    with pytest.raises(HatError, match="2 ratios for 1 calibrations"):
        normalize([1.0, 1.0], [3.0])


def test_two_references_take_a_size_dependent_slowdown_out_one_cannot(tmp_path: Path):
    """The same SubTransformers timed quiet and with small models slowed more (a busy core):
    with the bracket of references their normalized latency agrees inside the bracket; with the
    middle reference alone it does not."""
    import random

    from hat.transformer import Transformer

    space, settings = tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32)

    def size_dependent(factor: float):
        def timer(model, measure):
            ms = proxy_cost(model.arch, measure.sentence_length, measure.beam, 32) / 1e4
            ms *= factor * (ms / 10.0) ** (-0.3 if factor > 1 else 0.0)
            runs = (ms,) * measure.iters
            return Latency(ms, 0.0, 0.0, 0.0, "cpu", 1, 4, 2, measure.iters, runs_ms=runs)

        return timer

    small, large = reference_archs(space, "bracket", 4, 2)
    assert proxy_cost(small, 4, 2, 32) < proxy_cost(space.middle(), 4, 2, 32)
    assert proxy_cost(large, 4, 2, 32) > proxy_cost(small, 4, 2, 32)
    assert reference_archs(space, "middle") == [space.middle()]
    refs = [Transformer(a, settings) for a in (small, large)]
    sub = Transformer(space.sample(random.Random(5)), settings)
    res = interleaved(sub, refs, FAST, size_dependent(1.0), random.Random(0))
    assert len(res.order) == 6 and all(
        sorted(res.order[i : i + 3]) == ["ref0", "ref1", "sub"] for i in range(0, 6, 3)
    )
    assert len(res.ratios) == len(res.reference_ms) == 2
    normalized = {}
    for measure in (FAST, MIDDLE):
        quiet, busy = (
            tmp_path / f"q_{measure.reference}.csv",
            tmp_path / f"b_{measure.reference}.csv",
        )
        collect(space, settings, measure, quiet, 12, progress=False, timer=size_dependent(1.0))
        row = read_rows(quiet)[0]
        cals = [float(row[c]) for c in ("calibration_ms", "calibration2_ms") if row[c]]
        collect(
            space,
            settings,
            measure,
            busy,
            12,
            progress=False,
            timer=size_dependent(2.5),
            calibrations_ms=cals,  # the device's quiet calibrations
        )
        normalized[measure.reference] = [
            [float(r["normalized_ms"]) for r in read_rows(path)] for path in (quiet, busy)
        ]
        if measure.reference == "bracket":
            inside = [
                i for i, ms in enumerate(normalized["bracket"][0]) if cals[0] <= ms <= cals[1]
            ]
    assert len(inside) >= 3
    errors = {
        kind: [abs(busy[i] / quiet[i] - 1) for i in inside]
        for kind, (quiet, busy) in normalized.items()
    }
    assert max(errors["bracket"]) < 1e-6 < 0.05 < max(errors["middle"])


def test_latency_dataset_cli_reference_and_calibrations(tmp_path: Path):
    space = tmp_path / "space.yml"
    space.write_text(yaml.safe_dump(tiny_space().to_hat_dict()))
    common = [
        f"--configs={space}",
        "--lat-dataset-size",
        "2",
        "--latiter",
        "1",
        "--sentence-length",
        "4",
        "--vocab-size",
        "50",
        "--qkv-dim",
        "32",
        "--latsilent",
    ]
    path = tmp_path / "middle.csv"
    result = run_cli(
        "latency-dataset",
        *common,
        "--lat-dataset-path",
        str(path),
        "--reference",
        "middle",
        "--calibration-ms",
        "5",
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(path)
    assert {(r["calibration_ms"], r["calibration2_ms"]) for r in rows} == {("5.0", "")}
    assert json.loads(rows[0]["reference"]) == tiny_space().middle().to_dict()
    result = run_cli(
        "latency-dataset",
        *common,
        "--lat-dataset-path",
        str(tmp_path / "b.csv"),
        "--calibration-ms",
        "5",
    )
    assert_one_line_error(result, "1 calibration(s) given for 2 reference SubTransformer(s)")


def test_a_file_resumes_only_with_its_settings_and_rechecks_with_them(tmp_path: Path):
    path = tmp_path / "lat.csv"
    space, settings = tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32)
    collect(space, settings, FAST, path, size=3, progress=False, timer=recording_timer([]))
    before = path.read_bytes()
    for changed in (
        dataclasses.replace(FAST, iters=3),
        dataclasses.replace(FAST, warmup=2),
        dataclasses.replace(FAST, protocol="hat"),
        dataclasses.replace(FAST, rounds=1),
    ):
        with pytest.raises(HatError, match="was timed with .*resume with the settings"):
            collect(space, settings, changed, path, size=4, progress=False)
    assert path.read_bytes() == before  # nothing written, nothing cut
    calls: list = []
    recheck(
        path,
        settings,
        dataclasses.replace(FAST, iters=9, warmup=4),
        n=2,
        progress=False,
        timer=recording_timer(calls),
    )
    # the file's 2 runs, in its 2 sweeps of one round of 1 run, each after the file's 1 dry run
    assert {c[1] for c in calls} == {1} and len(calls) == 2 * 2 * 3
    assert {c[2] for c in calls} == {1}

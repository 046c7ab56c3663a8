"""Evolutionary and Pareto search: operators, budgets, determinism, resume, the CLI."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, assert_one_line_error, run_cli, tiny_space
from test_train import write_space_yaml

from hat.errors import HatError
from hat.latency.features import HAT_FEATURE_NORM, cost_terms_from_hat, hat_features
from hat.latency.plan import proxy_cost
from hat.latency.training import train_ensemble
from hat.search.evolution import Evolution, EvolutionConfig, LatencyCheck
from hat.space import ArchConfig

SMALL = EvolutionConfig(
    evo_iter=5,
    population_size=16,
    parent_size=4,
    mutation_size=6,
    crossover_size=6,
    mutation_prob=0.3,
    seed=4,
)


def synthetic_latency(arch: ArchConfig) -> float:
    return proxy_cost(arch, 10, 2, 32) / 1e5


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """A predictor fitted to a synthetic latency (the proxy cost): search mechanics, not timing."""
    rng = random.Random(0)
    archs = [tiny_space().sample(rng) for _ in range(300)]
    feats = np.array([hat_features(a) for a in archs])
    lat = np.array([synthetic_latency(a) for a in archs])
    p = train_ensemble(
        feats,
        cost_terms_from_hat(feats),
        lat,
        list(HAT_FEATURE_NORM),
        "hat10",
        members=2,
        steps=200,
    )
    path = tmp_path_factory.mktemp("pred") / "pred.pt"
    p.save(str(path))
    return p, path


def toy_fitness(arch: ArchConfig) -> float:
    """Bigger is better, with a twist so the ranking is not just latency."""
    return (
        10.0
        - sum(arch.decoder_ffn_embed_dim) / 100
        - arch.encoder_embed_dim / 50
        + 0.1 * arch.decoder_arbitrary_ende_attn[0]
    )


def budget_of(predictor) -> float:
    space = tiny_space()
    lo = LatencyCheck(predictor).bound(space.smallest())
    hi = LatencyCheck(predictor).bound(space.largest())
    return lo + 0.4 * (hi - lo)


def test_children_stay_in_the_space_and_under_budget(predictor):
    p, _ = predictor
    space = tiny_space()
    latency = LatencyCheck(p)
    budget = budget_of(p)
    evo = Evolution(space, toy_fitness, latency, SMALL, progress=False)
    rng = random.Random(0)
    parents = evo.random_population(rng, budget)[:4]
    children = evo.mutate(rng, parents, budget) + evo.crossover(rng, parents, budget)
    for gene in parents + children:
        arch = space.from_gene(gene)
        assert space.validate(arch) and latency.bound(arch) <= budget
    final = evo.run(budget)
    assert all(latency.bound(c.arch) <= budget for c in final)
    assert [c.loss for c in final] == sorted(c.loss for c in final)
    with pytest.raises(HatError, match="too tight"):
        Evolution(space, toy_fitness, latency, EvolutionConfig(max_tries=200), progress=False).run(
            0.001
        )


def test_genes_of_absent_layers_survive_mutation_and_crossover(predictor):
    """As in HAT, a gene keeps entries for the layers it does not use: mutation and crossover pass
    them on, and a later mutation that adds the layers brings them back."""
    p, _ = predictor
    space = tiny_space()
    evo = Evolution(
        space,
        toy_fitness,
        LatencyCheck(p),
        EvolutionConfig(mutation_prob=0.0, crossover_size=4, mutation_size=4),
        progress=False,
    )
    le, ld = space.encoder_layers, space.decoder_layers
    one_layer = space.smallest()
    assert one_layer.decoder_layer_num == 1 and ld > 1
    ffn = slice(4 + 2 * le, 4 + 2 * le + ld)  # decoder FFN entries
    a, b = space.to_gene(one_layer), space.to_gene(one_layer)
    big, small = max(space.decoder_ffn_embed_dim_choice), min(space.decoder_ffn_embed_dim_choice)
    a[ffn] = [small] + [big] * (ld - 1)  # layers 2.. are absent but remembered
    b[ffn] = [small] + [big] * (ld - 1)
    a, b = tuple(a), tuple(b)
    budget = float("inf")
    for child in evo.mutate(random.Random(0), [a], budget) + evo.crossover(
        random.Random(0), [a, b], budget
    ):
        assert child == a  # nothing mutated: the absent layers' entries are passed on unchanged
    grown = list(a)
    grown[3 + 2 * le] = ld  # a mutation of the decoder layer number
    arch = space.from_gene(grown)
    assert arch.decoder_ffn_embed_dim == (small,) + (big,) * (ld - 1)
    rng = random.Random(3)
    genes = [evo.random_gene(rng) for _ in range(50)]
    absent_values = {g[ffn][-1] for g in genes if g[3 + 2 * le] < ld}
    assert len(absent_values) > 1  # random genes fill absent layers at random, as HAT's sampler


def test_same_seed_same_result_and_resume_after_kill(predictor, tmp_path: Path):
    p, _ = predictor
    space, budget = tiny_space(), budget_of(p)

    def search(state: Path | None, fitness=toy_fitness):
        evo = Evolution(space, fitness, LatencyCheck(p), SMALL, state_path=state, progress=False)
        evo.restore()
        return [(c.arch, c.loss) for c in evo.run(budget)]

    straight = search(None)
    assert search(None) == straight
    calls = {"n": 0}

    def dying(arch):
        calls["n"] += 1
        if calls["n"] == 40:  # killed in the middle of an iteration
            raise KeyboardInterrupt
        return toy_fitness(arch)

    state = tmp_path / "state.json"
    with pytest.raises(KeyboardInterrupt):
        search(state, dying)
    assert json.loads(state.read_text())["states"]  # an iteration was saved
    assert search(state) == straight


def test_resume_with_other_inputs_starts_fresh(predictor, tmp_path: Path, caplog):
    """A saved state (and its fitness cache) is reused only when every input is unchanged."""
    p, _ = predictor
    space, budget = tiny_space(), budget_of(p)
    state = tmp_path / "state.json"

    def search(fitness, inputs: dict, cfg: EvolutionConfig = SMALL) -> list[float]:
        evo = Evolution(
            space, fitness, LatencyCheck(p), cfg, state_path=state, progress=False, inputs=inputs
        )
        evo.restore()
        return [c.loss for c in evo.run(budget)]

    first = search(toy_fitness, {"supernet": "aaa", "valid_cnt_max": 2})
    assert (
        search(toy_fitness, {"supernet": "aaa", "valid_cnt_max": 2}) == first
    )  # same inputs: resumed

    def other_supernet(arch: ArchConfig) -> float:
        return toy_fitness(arch) + 100.0

    with caplog.at_level("WARNING"):
        fresh = search(other_supernet, {"supernet": "bbb", "valid_cnt_max": 2})
    assert all(loss > 100 for loss in fresh)  # no fitness of the old supernet survives
    assert "supernet changed" in caplog.text and "starting fresh" in caplog.text
    assert (tmp_path / "state.json.stale").exists()
    caplog.clear()
    with caplog.at_level("WARNING"):  # other evolution settings: that budget is searched afresh
        again = search(
            other_supernet,
            {"supernet": "bbb", "valid_cnt_max": 2},
            EvolutionConfig(**{**SMALL.__dict__, "mutation_prob": 0.5}),
        )
    assert "config changed" in caplog.text and all(loss > 100 for loss in again)


def train_supernet(tmp_path: Path, toy_bin: Path, updates: int) -> tuple[Path, Path]:
    """A tiny supernet trained by train.py: (its space YAML, its save dir)."""
    space_yml = write_space_yaml(tmp_path / "space.yml")
    ckpt = tmp_path / "supernet"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            f"--configs={space_yml}",
            "--data",
            str(toy_bin),
            "--save-dir",
            str(ckpt),
            "--max-update",
            str(updates),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return space_yml, ckpt


def test_search_cli_resume_checks_supernet_and_validation_settings(
    tmp_path: Path, toy_bin: Path, predictor
):
    p, pred_path = predictor
    space_yml, ckpt = train_supernet(tmp_path, toy_bin, 5)
    lo, hi = (LatencyCheck(p).bound(a) for a in (tiny_space().smallest(), tiny_space().largest()))
    args = [
        f"--configs={space_yml}",
        "--evo-iter",
        "2",
        "--population-size",
        "8",
        "--parent-size",
        "2",
        "--mutation-size",
        "3",
        "--crossover-size",
        "3",
        "--ckpt-path",
        str(pred_path),
        "--restore-file",
        str(ckpt / "checkpoint_last.pt"),
        "--write-config-path",
        str(tmp_path / "s.yml"),
        "--latency-constraint",
        str(lo + 0.5 * (hi - lo)),
        "--data",
        str(toy_bin),
        "--no-progress-bar",
    ]
    first = run_cli(*args, "--valid-cnt-max", "2", script="evo_search.py")
    assert first.returncode == 0, first.stderr
    resumed = run_cli(*args, "--valid-cnt-max", "2", script="evo_search.py")
    assert resumed.returncode == 0 and "starting fresh" not in resumed.stderr
    changed = run_cli(*args, "--valid-cnt-max", "1", script="evo_search.py")
    assert changed.returncode == 0, changed.stderr
    assert "valid_cnt_max changed" in changed.stderr and "starting fresh" in changed.stderr


def test_search_cli_multi_budget_verify_and_pareto(tmp_path: Path, toy_bin: Path, predictor):
    p, pred_path = predictor
    space_yml, ckpt = train_supernet(tmp_path, toy_bin, 15)
    lo, hi = (LatencyCheck(p).bound(a) for a in (tiny_space().smallest(), tiny_space().largest()))
    budgets = [lo + f * (hi - lo) for f in (0.3, 0.6, 1.0)]
    evo = tmp_path / "evo.yml"
    evo.write_text(
        yaml.safe_dump(
            {
                "evo-iter": 3,
                "population-size": 12,
                "parent-size": 4,
                "mutation-size": 4,
                "crossover-size": 4,
                "mutation-prob": 0.3,
                "ckpt-path": str(pred_path),
                "restore-file": str(ckpt / "checkpoint_last.pt"),
                "write-config-path": str(tmp_path / "found" / "sub.yml"),
                "latency-constraint": budgets,
                "data": str(toy_bin),
                "valid-cnt-max": 2,
            }
        )
    )
    result = run_cli(
        f"--configs={space_yml}",
        f"--evo-configs={evo}",
        "--verify-top",
        "2",
        "--sentence-length",
        "6",
        "--latiter",
        "2",
        "--json",
        "--no-progress-bar",
        script="evo_search.py",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    found = summary["results"]
    assert [r["budget_ms"] for r in found] == sorted(budgets)
    assert all(r["latency_ms"] <= r["budget_ms"] for r in found)
    assert [r["latency_ms"] for r in found] == sorted(r["latency_ms"] for r in found)
    losses = [r["loss"] for r in found]
    assert losses == sorted(losses, reverse=True)  # a bigger budget never does worse
    assert all(len(r["verified"]) == 2 and r["verified"][0]["measured_ms"] > 0 for r in found)
    assert summary["evaluations_saved"] > 0
    for r in found:
        arch = ArchConfig.from_yaml(r["config_path"])  # HAT's YAML, loadable by train.py
        assert arch.to_dict() == r["arch"]
    log = [
        json.loads(x) for x in (tmp_path / "found" / "search_log.jsonl").read_text().splitlines()
    ]
    assert (
        len(log) == 9
        and {"best_loss", "best_latency_ms", "population_loss_mean", "evaluations"} <= log[0].keys()
    )
    pareto = run_cli(
        f"--configs={space_yml}",
        f"--evo-configs={evo}",
        "--pareto",
        "--evo-iter",
        "2",
        "--write-config-path",
        str(tmp_path / "pareto" / "front.yml"),
        script="evo_search.py",
    )
    assert pareto.returncode == 0, pareto.stderr
    front = json.loads((tmp_path / "pareto" / "front.pareto.json").read_text())
    lat = [c["latency_ms"] for c in front]
    loss = [c["loss"] for c in front]
    assert lat == sorted(lat) and all(
        a >= b for a, b in zip(loss, loss[1:], strict=False)
    )  # non-dominated
    assert (tmp_path / "pareto" / "front.pareto.png").stat().st_size > 10_000


def test_missing_files_are_named(tmp_path: Path, toy_bin: Path, predictor):
    _, pred_path = predictor
    result = run_cli(
        "search",
        "--restore-file",
        str(tmp_path / "nope.pt"),
        "--ckpt-path",
        str(pred_path),
        "--write-config-path",
        str(tmp_path / "x.yml"),
        "--latency-constraint",
        "100",
        "--data",
        str(toy_bin),
    )
    assert_one_line_error(result, "restore-file", "nope.pt", "not found")


def test_hat_evo_yaml_loads_and_names_the_missing_file(
    shared_data: Path, tmp_path: Path, toy_bin: Path
):
    evo = shared_data / "hat-configs/wmt14.en-de/evo_search/wmt14ende_xeon.yml"
    space = shared_data / "hat-configs/wmt14.en-de/supertransformer/space0.yml"
    result = run_cli(
        f"--configs={space}", f"--evo-configs={evo}", "--data", str(toy_bin), script="evo_search.py"
    )
    assert_one_line_error(result, "restore-file", "HAT_wmt14ende_super_space0.pt", "not found")


def _timed_at(factor: float):
    """A fake timer: the device runs `factor` x slower than the synthetic latency learnt."""
    from hat.latency.measure import Latency

    def timer(model, measure):
        ms = synthetic_latency(model.arch) * factor
        return Latency(ms / 2, ms / 2, 0.0, 0.0, "cpu", 1, 10, 5, 1)

    return timer


@pytest.mark.parametrize("factor", [1.0, 1.25])
def test_verify_never_ships_a_candidate_measured_over_budget(factor: float):
    from hat.latency.timing import MeasureSettings
    from hat.search.evolution import Candidate
    from hat.search.verify import verify_top

    rng = random.Random(1)
    archs = {tiny_space().sample(rng) for _ in range(200)}
    budget = float(np.median([synthetic_latency(a) for a in archs]))
    # ranked by a loss that prefers bigger models, as a supernet does
    ranked = sorted(
        (
            Candidate(a, -synthetic_latency(a), synthetic_latency(a), 0.0)
            for a in archs
            if synthetic_latency(a) <= budget
        ),
        key=lambda c: c.loss,
    )
    best, report = verify_top(
        ranked,
        budget,
        3,
        lambda arch: type("M", (), {"arch": arch})(),
        MeasureSettings(),
        _timed_at(factor),
    )
    assert synthetic_latency(best.arch) * factor <= budget
    assert len(report) >= 3 and report[:3] == [r for r in report if r["top_k"]]
    within = [c for c in ranked if synthetic_latency(c.arch) * factor <= budget]
    if factor == 1.0:
        assert best == ranked[0] and len(report) == 3
    else:  # the top 3 break the budget; the walk skips to the best that measures within it
        assert not any(r["meets_budget"] for r in report[:3])
        assert best == within[0]


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_verify_takes_the_device_drift_out_before_deciding(factor: float, caplog):
    """A device `factor` x slower for everything (the reference too) ships what a quiet one ships;
    the report shows measured, normalized latency and the drift factor."""
    import logging

    from hat.latency.plan import reference_archs
    from hat.latency.timing import MeasureSettings
    from hat.search.evolution import Candidate
    from hat.search.verify import verify_top

    rng = random.Random(1)
    archs = {tiny_space().sample(rng) for _ in range(200)}
    budget = float(np.median([synthetic_latency(a) for a in archs]))
    ranked = sorted(
        (
            Candidate(a, -synthetic_latency(a), synthetic_latency(a), 0.0)
            for a in archs
            if synthetic_latency(a) <= budget
        ),
        key=lambda c: c.loss,
    )
    references = reference_archs(tiny_space(), "bracket")

    def build(arch):
        return type("M", (), {"arch": arch})()

    def verify(measure: MeasureSettings, **drift_free):
        return verify_top(ranked, budget, 3, build, measure, _timed_at(factor), **drift_free)

    interleaved = {
        "references": references,
        "calibrations_ms": [synthetic_latency(a) for a in references],
    }
    with caplog.at_level(logging.INFO, logger="hat.search.verify"):
        best, report = verify(MeasureSettings(iters=4, rounds=2), **interleaved)
    assert best == ranked[0] and len(report) == 3 and all(r["meets_budget"] for r in report)
    for r, c in zip(report, ranked, strict=False):
        assert r["measured_ms"] == pytest.approx(factor * synthetic_latency(c.arch))
        assert r["normalized_ms"] == pytest.approx(synthetic_latency(c.arch))
        assert r["drift"] == pytest.approx(factor)
    assert f"drift factor {factor:.2f}" in caplog.text
    # the dataset's rows timed the reference `factor` x its calibration (switching models):
    # the drift is stated against that, the normalized latency stays on the calibration
    _, same = verify(
        MeasureSettings(iters=4, rounds=2),
        **interleaved,
        references_timed_ms=[factor * synthetic_latency(a) for a in references],
    )
    assert [r["drift"] for r in same] == pytest.approx([1.0] * 3)
    assert [r["normalized_ms"] for r in same] == [r["normalized_ms"] for r in report]
    # without the reference, the same slow device rejects the top candidates on raw latency
    if factor > 1:
        _, raw = verify(MeasureSettings())
        assert not raw[0]["meets_budget"] and raw[0]["drift"] is None


def test_verify_uses_the_datasets_protocol_and_settings():
    from hat.latency.timing import dataset_measure
    from hat.search.verify import reference_of

    meta = {
        "sentence_length": "23",
        "beam": "5",
        "iters": "20",
        "warmup": "5",
        "threads": "2",
        "cores": "0-1",
        "protocol": "hat",
        "rounds": "4",
        "runtime": "torch",
        "latency": "normalized",
        "calibration_ms": "12.5",
        "reference": json.dumps(tiny_space().middle().to_dict()),
    }
    m = dataset_measure(meta, "cpu", iters=3, sentence_length=None)
    assert (
        m.sentence_length,
        m.beam,
        m.iters,
        m.warmup,
        m.threads,
        m.cores,
        m.protocol,
        m.rounds,
    ) == (23, 5, 3, 5, 2, "0-1", "hat", 4)
    ref = {"references": [tiny_space().middle()], "calibrations_ms": [12.5]}
    assert reference_of(meta) == {**ref, "references_timed_ms": None}
    assert reference_of({**meta, "reference_timed_ms": "14.5"}) == {
        **ref,
        "references_timed_ms": [14.5],
    }
    assert reference_of({**meta, "latency": "raw"}) == {}
    large = tiny_space().largest()
    two = {**meta, "reference2": json.dumps(large.to_dict()), "calibration2_ms": "30"}
    assert reference_of({**two, "reference_timed_ms": "14.5", "reference2_timed_ms": "33"}) == {
        "references": [tiny_space().middle(), large],
        "calibrations_ms": [12.5, 30.0],
        "references_timed_ms": [14.5, 33.0],
    }
    assert reference_of({**two, "calibration2_ms": ""}) == {}  # a reference without calibration

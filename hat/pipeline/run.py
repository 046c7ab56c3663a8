"""The stages of `hat pipeline`, each writing into the run directory.

data -> latency -> predictor -> supernet + baseline models -> search -> found models ->
evaluate -> report  (training runs side by side: `hat.pipeline.jobs`)

Each stage records its inputs in `done.json` (written atomically at its end): the hash of its
own settings and the identity of each upstream stage (whose record holds the digests of its
outputs). A stage is skipped only when these match; otherwise it reruns from scratch, and so
does everything downstream of it, with one log line saying why. A stage that was interrupted
resumes from its own checkpoints (training), rows (latency dataset) or state (search) when its
inputs are the same (`inputs.json`, written as it starts). So a killed pipeline, re-run,
finishes with the same results, and a changed setting never reuses stale work.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from hat.data.dataset import DataDir
from hat.data.preprocess import preprocess
from hat.data.toy import write_toy_task
from hat.errors import HatError
from hat.evaluate import translate_dataset
from hat.fsutil import atomic_write, changed_keys, file_sha256, json_sha256
from hat.latency.dataset import collect
from hat.latency.fit import fit_predictor
from hat.latency.predictor import load_predictor
from hat.latency.table import load_table
from hat.latency.timing import DriftFreeTimer, Timer, protocol_timer
from hat.ledger import Ledger
from hat.pipeline.baselines import baselines
from hat.pipeline.config import PipelineConfig, read_ranking_study
from hat.pipeline.jobs import TrainingJob, run_side_by_side, side_by_side
from hat.profile import count_flops
from hat.search.evolution import Evolution, LatencyCheck
from hat.search.fitness import Fitness, fitness_inputs
from hat.search.verify import reference_of, search_budgets
from hat.space import ArchConfig
from hat.supernet import SuperTransformer
from hat.train.checkpoints import load_model, load_supernet
from hat.train.distributed import DistInfo
from hat.train.sampling import ConfigSampler
from hat.train.trainer import TrainConfig, Trainer
from hat.transformer import Transformer

log = logging.getLogger(__name__)
# what a kept search holds beside the search stage's own result
KEPT_SEARCH_KEYS = {"results", "evaluated", "without_cache", "supernet_sha256", "log"}


class Pipeline:
    def __init__(self, cfg: PipelineConfig, timer: Timer = protocol_timer, progress: bool = True):
        """`timer` times a compact model with the latency protocol (tests: a deterministic one)."""
        self.cfg, self.timer, self.progress = cfg, timer, progress
        self.dir = Path(cfg.run_dir)
        self.device = torch.device(cfg.measure.device)
        self.world = DistInfo(device=self.device)
        self._identity: dict[str, str] = {}  # stage -> sha256 of its done record

    @property
    def supernet_file(self) -> Path:
        """The run's own SuperTransformer (trained here, or `supernet-checkpoint` copied in)."""
        return self.dir / "supernet/checkpoint_last.pt"

    # --- stage bookkeeping ----------------------------------------------------------------
    def _inputs(self, settings: dict, upstream: Sequence[str]) -> dict[str, str]:
        """What a stage's results depend on: its settings and its upstream stages' records."""
        return {
            "settings": json_sha256(settings),
            **{f"upstream {u}": self._identity[u] for u in upstream},
        }

    def _done(self, name: str, inputs: dict[str, str]) -> dict | None:
        """The stage's record when it is done with these inputs."""
        record = _read_json(self.dir / name / "done.json")
        return record if record is not None and record.get("inputs") == inputs else None

    def stage(
        self, name: str, fn: Callable[[Path], dict], settings: dict, upstream: Sequence[str] = ()
    ) -> dict:
        """Run `fn(stage_dir)` unless the stage is done with the same inputs; return its result."""
        path = self.dir / name
        inputs = self._inputs(settings, upstream)
        done, started = path / "done.json", path / "inputs.json"
        record = self._done(name, inputs)
        if record is not None:
            log.info("stage %-13s done (skipped)", name)
            self._identity[name] = json_sha256(record)
            return record["result"]
        record = _read_json(done)
        previous = (
            record["inputs"] if record is not None and "inputs" in record else _read_json(started)
        )
        if previous is not None and previous != inputs:
            log.info(
                "stage %-13s reruns: %s changed", name, ", ".join(changed_keys(previous, inputs))
            )
            shutil.rmtree(path)
        elif record is not None:
            log.info("stage %-13s reruns: its done.json records no inputs", name)
            shutil.rmtree(path)
        else:
            log.info("stage %-13s running", name)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_write(started) as f:
            json.dump(inputs, f)
        start = time.time()
        result = fn(path)
        record = {"inputs": inputs, "result": result}
        with atomic_write(done) as f:
            json.dump(record, f, indent=1)
        with open(self.dir / "pipeline_log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"stage": name, "seconds": round(time.time() - start, 1)}) + "\n")
        self._identity[name] = json_sha256(record)
        return result

    def run(self) -> dict:
        """Every stage in order (up to `stop-after`, then with "stopped_after" set); the
        results the report is made of."""
        self.dir.mkdir(parents=True, exist_ok=True)
        c = self.cfg
        results = {
            "seed": c.train.seed,
            "data": self.stage("data", self.prepare_data, self._data_settings()),
        }
        model = dataclasses.asdict(c.settings(results["data"]["vocab_size"]))
        recipe = {"model": model, "train": dataclasses.asdict(c.train)}  # SubTransformers'
        supernet = TrainingJob(
            "supernet",
            {
                **recipe,
                "train": dataclasses.asdict(c.supernet_train),
                "space": c.space.to_hat_dict(),
                "updates": c.supernet_max_update,
                "sampling": dataclasses.asdict(c.sampling),
            },
            ("data",),
        )
        plain = baselines(c.space, c.baselines)
        base = {b.name: b.arch.to_dict() for b in plain}
        if c.stop_after == "baselines":  # they need neither the device nor a search
            self.train_jobs(self._model_jobs(base, recipe))
            return {**results, "stopped_after": "baselines"}
        search_inputs = self._search_inputs(model, supernet)
        kept = self._kept_search(search_inputs)
        needs_supernet = kept is None or c.finetune_inherited
        if c.supernet_checkpoint and needs_supernet:
            self._given_supernet()  # fails now, not after the latency dataset
        results["latency"] = self.stage(
            "latency",
            self.collect_latency,
            {
                "space": c.space.to_hat_dict(),
                "model": model,
                "measure": dataclasses.asdict(c.measure),
                "rows": c.lat_dataset_size,
                "seed": c.train.seed,
            },
        )
        results["predictor"] = self.stage(
            "predictor", self.train_predictor, {"seed": c.train.seed}, ["latency"]
        )
        if c.stop_after == "predictor":
            return {**results, "stopped_after": "predictor"}
        if not needs_supernet:
            trained = self.train_jobs(self._model_jobs(base, recipe))
        elif c.supernet_checkpoint:
            results["supernet"] = self.stage(
                "supernet",
                self.adopt_supernet,
                {
                    "checkpoint": file_sha256(c.supernet_checkpoint),
                    "model": model,
                    "space": c.space.to_hat_dict(),
                },
                ("data",),
            )
            trained = self.train_jobs(self._model_jobs(base, recipe))
        else:  # the baselines need no search: they train beside the SuperTransformer
            trained = self.train_jobs([supernet, *self._model_jobs(base, recipe)])
            results["supernet"] = trained.pop("supernet")
        if c.stop_after == "supernet":
            return {**results, "stopped_after": "supernet"}
        if kept is None:
            results["search"] = self.stage(
                "search", self.search, search_inputs["search"], ["data", "supernet", "predictor"]
            )
            self._keep_search(search_inputs, results["search"], results["supernet"]["sha256"])
        else:
            results["search"] = self.stage(
                "search",
                functools.partial(self._restore_search, kept),
                {"kept": json_sha256(kept)},
                ["data"],
            )
        if c.stop_after == "search":
            return {**results, "stopped_after": "search"}
        found = {f"hat@{r['budget_ms']:.1f}ms": r["arch"] for r in results["search"]["results"]}
        model_jobs = self._model_jobs({**base, **found}, recipe)
        trained.update(self.train_jobs(model_jobs))
        shared = self._model_stages({**base, **found})
        stage_of = {name: shared[name] for name in [*found, *base]}  # the report's order
        seeded = {
            m: [self.seed_stage(m, seed) for seed in c.model_seeds] for m in stage_of.values()
        }
        results["models"] = {
            name: dict(zip(c.model_seeds, (trained[t] for t in seeded[stage]), strict=True))
            for name, stage in stage_of.items()
        }
        jobs = {j.stage: j for j in model_jobs}
        results["evaluate"] = self.stage(
            "evaluate",
            lambda d: self.evaluate(stage_of, jobs, trained, d),
            {
                "trained_as": stage_of,
                "seeds": c.model_seeds,
                "test": self._test_settings(),
                "measure": dataclasses.asdict(c.measure),
            },
            [
                "data",
                "predictor",
                *sorted({t for stages in seeded.values() for t in stages}),
            ],
        )
        results["baselines"] = {b.name: b.family for b in plain}
        if c.ranking_study:
            results["ranking"] = read_ranking_study(c.ranking_study)
        return results

    # --- a search kept beyond the run directory ---------------------------------------------
    def _search_inputs(self, model: dict, supernet: TrainingJob) -> dict:
        """What a search's result depends on, besides the SuperTransformer's weights (named by
        their sha256 in a kept result): the space, the model settings, the data's contents, how
        the SuperTransformer came about (trained here: its recipe) and the search settings.
        Not the latency predictor: a kept result's budgets are the searching run's."""
        c = self.cfg
        return {
            "space": c.space.to_hat_dict(),
            "model": model,
            "data": self._data().content_sha256("train", "valid"),
            "supernet": (  # given: by its path (a kept search is taken when the file is gone)
                {"checkpoint": c.supernet_checkpoint}
                if c.supernet_checkpoint
                else supernet.settings
            ),
            "search": {
                "evolution": dataclasses.asdict(c.evolution),
                "budgets_ms": c.budgets_ms,
                "budget_fractions": c.budget_fractions,
                "verify_top": c.verify_top,
                "measure": dataclasses.asdict(c.measure),
                "max_tokens": c.train.max_tokens,
                "valid_subset": c.train.valid_subset,
            },
        }

    def _kept_search(self, inputs: dict) -> dict | None:
        """The result `search-result` keeps for these inputs (the latest; while the
        SuperTransformer is here, `supernet-checkpoint` or this run's own, the latest searched
        in it), with where it came from; None when it keeps none (or the setting is off)."""
        if not self.cfg.search_result:
            return None
        records = Ledger(self.cfg.search_result).records(inputs)
        for r in records:
            if not KEPT_SEARCH_KEYS <= r["result"].keys():
                raise HatError(
                    f"--search-result {self.cfg.search_result}: a record of this search lacks "
                    f"{', '.join(sorted(KEPT_SEARCH_KEYS - r['result'].keys()))} (not written "
                    f"by hat pipeline?)"
                )
        given = self.cfg.supernet_checkpoint
        supernet = Path(given) if given else self.supernet_file
        present = supernet.is_file()
        if present:
            sha = file_sha256(supernet)
            records = [r for r in records if r["result"]["supernet_sha256"] == sha]
        if not records:
            return None
        record = records[-1]
        log.info(
            "search: kept in %s (searched %s on %s): not searched again",
            self.cfg.search_result,
            record["recorded"]["at"],
            record["recorded"]["host"],
        )
        if self.cfg.finetune_inherited and not present:
            raise HatError(
                f"--search-result {self.cfg.search_result} keeps this search, but "
                f"--finetune-inherited needs the SuperTransformer it searched in: give it as "
                f"--supernet-checkpoint (sha256 {record['result']['supernet_sha256'][:12]}...)"
            )
        return {**record["result"], "kept": {"file": self.cfg.search_result, **record["recorded"]}}

    def _keep_search(self, inputs: dict, search: dict, sha: str) -> None:
        """Add the search's result to `search-result` (once per SuperTransformer: `sha`, its
        checkpoint's sha256), with the search's log (the report plots it)."""
        if not self.cfg.search_result:
            return
        ledger = Ledger(self.cfg.search_result)
        if any(r["result"]["supernet_sha256"] == sha for r in ledger.records(inputs)):
            return
        lines = (self.dir / "search/search_log.jsonl").read_text().splitlines()
        search_log = [json.loads(line) for line in lines]
        ledger.add(inputs, {**search, "supernet_sha256": sha, "log": search_log})

    def _restore_search(self, kept: dict, out: Path) -> dict:
        """The search stage from a kept result: its log and found models' YAML into `out`."""
        with atomic_write(out / "search_log.jsonl") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept["log"])
        for found in kept["results"]:
            write_found(out, found["budget_ms"], ArchConfig.from_dict(found["arch"]))
        return {k: v for k, v in kept.items() if k != "log"}

    def _data_settings(self) -> dict:
        c = self.cfg
        if c.data.toy:
            return {
                "toy": list(c.data.toy_sizes),
                "vocab_size": c.data.vocab_size,
                "seed": c.train.seed,
            }
        files = {}
        for key in ("trainpref", "validpref", "testpref"):
            for lang in (c.data.source_lang, c.data.target_lang):
                f = Path(f"{getattr(c.data, key)}.{lang}")
                files[f"{key}.{lang}"] = (
                    file_sha256(f) if f.is_file() else None
                )  # preprocess names it
        return {"raw": c.data.raw, "raw_sha256": files, "vocab_size": c.data.vocab_size}

    # --- stages -------------------------------------------------------------------------------
    def prepare_data(self, out: Path) -> dict:
        c = self.cfg
        if c.data.toy:
            write_toy_task(out / "raw", *c.data.toy_sizes, seed=c.train.seed)
            raw = {
                "source_lang": "en",
                "target_lang": "de",
                "trainpref": str(out / "raw/train"),
                "validpref": str(out / "raw/valid"),
                "testpref": str(out / "raw/test"),
            }
        else:
            raw = c.data.raw
        meta = preprocess(
            raw["source_lang"],
            raw["target_lang"],
            raw["trainpref"],
            out / "bin",
            validpref=raw["validpref"],
            testpref=raw["testpref"],
            vocab_size=c.data.vocab_size,
            overwrite=True,
        )
        return {
            "data_dir": str(out / "bin"),
            "vocab_size": meta["vocab_size"],
            "pairs": {k: v["pairs"] for k, v in meta["splits"].items()},
        }

    def _data(self) -> DataDir:
        return DataDir(self.dir / "data/bin")

    def _train(
        self,
        model,
        save_dir: Path,
        recipe: TrainConfig,
        updates: int,
        sampler: ConfigSampler | None = None,
        seed: int | None = None,
    ) -> dict:
        """Train with `recipe` for `updates` (or until converged, when it says so): the
        updates done, the last validation, the loss's change over the last 20% of the updates
        and whether that met the tolerance (None without one), the checkpoint."""
        train_cfg = dataclasses.replace(
            recipe,
            save_dir=str(save_dir),
            max_update=updates,
            seed=recipe.seed if seed is None else seed,
        )
        trainer = Trainer(model, train_cfg, self._data(), sampler, self.world)
        trainer.resume()
        valid = trainer.train()
        checkpoint = save_dir / "checkpoint_last.pt"
        change, converged = trainer.convergence
        return {
            "updates": trainer.state.updates,
            "valid": {k: v for k, v in valid.items() if k.endswith("loss")},
            "loss_change": change,
            "converged": converged if train_cfg.convergence_tolerance else None,
            "checkpoint": str(checkpoint),
            "sha256": file_sha256(checkpoint),
        }

    def train_supernet(self, out: Path) -> dict:
        torch.manual_seed(self.cfg.train.seed)
        data = self._data()
        net = SuperTransformer(self.cfg.space, self.cfg.settings(data.vocab_size))
        s = self.cfg.sampling
        sampler = ConfigSampler(self.cfg.space, s.sampling, self.cfg.train.seed, s.sandwich_random)
        return self._train(net, out, self.cfg.supernet_train, self.cfg.supernet_max_update, sampler)

    def _given_supernet(self) -> dict:
        """The payload of `supernet-checkpoint`, checked to hold this run's search space, model
        settings and sentencepiece vocabulary (the data stage must be done)."""
        source = Path(self.cfg.supernet_checkpoint)
        net, payload = load_supernet(source)
        data = self._data()
        ours = self.cfg.settings(data.vocab_size).to_dict()
        differ = [f"model setting {k}" for k in changed_keys(net.settings.to_dict(), ours)]
        if net.space.to_hat_dict() != self.cfg.space.to_hat_dict():
            differ.insert(0, "the search space")
        if not payload.get("spm_model"):
            raise HatError(
                f"--supernet-checkpoint {source} holds no sentencepiece vocabulary (not written "
                f"by `hat train`?): cannot check that it fits this run's data"
            )
        if payload["spm_model"] != (data.path / "spm.model").read_bytes():
            differ.append("the sentencepiece vocabulary")
        if differ:
            raise HatError(
                f"--supernet-checkpoint {source} does not fit this run: {', '.join(differ)} "
                f"differ (train it with these settings on this run's data, {data.path}, or on "
                f"`hat preprocess` of the same text and vocabulary size)"
            )
        return payload

    def adopt_supernet(self, out: Path) -> dict:
        """`supernet-checkpoint` (checked by `_given_supernet`), copied in as this run's
        SuperTransformer."""
        source = Path(self.cfg.supernet_checkpoint)
        payload = self._given_supernet()
        checkpoint = out / "checkpoint_last.pt"
        with atomic_write(checkpoint, "wb", encoding=None) as f, open(source, "rb") as src:
            shutil.copyfileobj(src, f)
        valid = payload.get("valid") or {}
        return {
            "updates": (payload.get("train_state") or {}).get("updates"),
            "valid": {k: v for k, v in valid.items() if k.endswith("loss")},
            "adopted": str(source.resolve()),
            "checkpoint": str(checkpoint),
            "sha256": file_sha256(checkpoint),
        }

    def collect_latency(self, out: Path) -> dict:
        settings = self.cfg.settings(self._data().vocab_size)
        report = collect(
            self.cfg.space,
            settings,
            self.cfg.measure,
            out / "latency.csv",
            self.cfg.lat_dataset_size,
            seed=self.cfg.train.seed,
            progress=self.progress,
            timer=self.timer,
        )
        return {
            "csv": str(out / "latency.csv"),
            "rows": self.cfg.lat_dataset_size,
            "drift": report,
            "sha256": file_sha256(out / "latency.csv"),
        }

    def train_predictor(self, out: Path) -> dict:
        table = load_table(self.dir / "latency/latency.csv")
        fit = fit_predictor(
            table,
            features="per-layer",
            seed=self.cfg.train.seed,
            layer_counts=(self.cfg.space.encoder_layers, self.cfg.space.decoder_layers),
        )
        fit.predictor.metrics.pop("train_seconds")  # a stage's outputs are deterministic
        fit.predictor.save(str(out / "predictor.pt"))
        measured = table.latency[fit.test_index]
        return {
            "predictor": str(out / "predictor.pt"),
            "sha256": file_sha256(out / "predictor.pt"),
            "test": fit.metrics["test"],
            "test_points": [
                [float(m), float(p)] for m, p in zip(measured, fit.test_pred, strict=True)
            ],
        }

    def _budgets(self, latency: LatencyCheck) -> list[float]:
        if self.cfg.budgets_ms:
            return sorted(self.cfg.budgets_ms)
        lo, hi = latency.bound(self.cfg.space.smallest()), latency.bound(self.cfg.space.largest())
        return [round(lo + f * (hi - lo), 1) for f in sorted(self.cfg.budget_fractions)]

    def search(self, out: Path) -> dict:
        supernet_file, predictor_file = (
            self.supernet_file,
            self.dir / "predictor/predictor.pt",
        )
        net, _ = load_supernet(supernet_file)
        latency = LatencyCheck(
            load_predictor(str(predictor_file)), self.cfg.evolution.latency_std_k
        )
        data = self._data()
        subset, max_tokens = self.cfg.train.valid_subset, self.cfg.train.max_tokens
        fitness = Fitness(net, data.split(subset), max_tokens, device=self.device)
        inputs = {
            **fitness_inputs(supernet_file, data, subset, max_tokens, None),
            "predictor": file_sha256(predictor_file),
        }
        evolution = Evolution(
            self.cfg.space,
            fitness,
            latency,
            self.cfg.evolution,
            out / "search_state.json",
            out / "search_log.jsonl",
            progress=self.progress,
            inputs=inputs,
        )
        evolution.restore()
        budgets = self._budgets(latency)
        chosen = search_budgets(
            evolution,
            budgets,
            self.cfg.verify_top,
            net.export,
            self.cfg.measure,
            latency.predictor.meta,
            self.timer,
        )
        results = []
        for budget, best, verified in chosen:
            write_found(out, budget, best.arch)
            results.append({"budget_ms": budget, **best.to_dict(), "verified": verified})
        c = self.cfg.evolution
        return {
            "results": results,
            "evaluated": len(evolution.seen),
            "without_cache": len(budgets) * (c.evo_iter + 1) * c.population_size,
        }

    def train_model(self, job: TrainingJob, out: Path) -> dict:
        """One found model or baseline: from scratch, or fine-tuned from the supernet. With a
        results ledger: taken from it when it holds the job's inputs; otherwise trained, then
        tested at once and added to it (so a killed study keeps every finished model)."""
        ledger = self._ledger()
        if ledger and (done := ledger.find(self._ledger_inputs(job))) is not None:
            log.info("%s: trained before, taken from %s", job.stage, ledger.path)
            done = {k: v for k, v in done.items() if k != "test_bleu"}  # evaluate's to report
            return {
                **done,
                "checkpoint": str(out / "checkpoint_last.pt"),
                "ledger": str(ledger.path),
            }
        arch = ArchConfig.from_dict(job.arch)
        settings = self.cfg.settings(self._data().vocab_size)  # records the supernet dims
        torch.manual_seed(job.seed)
        updates = self.cfg.subtransformer_max_update
        if job.inherited:
            model = load_supernet(self.supernet_file)[0].export(arch)
            updates = max(1, math.ceil(updates * self.cfg.finetune_fraction))
        else:
            model = Transformer(arch, settings)
        trained = self._train(model, out, self.cfg.train, updates, seed=job.seed)
        result = {"arch": arch.to_dict(), "seed": job.seed, **trained}
        if ledger:
            tested = {**result, "test_bleu": self._test_bleu(model, out)}
            ledger.add(self._ledger_inputs(job), tested)
        return result

    # --- the results ledger and the test ----------------------------------------------------
    def _ledger(self) -> Ledger | None:
        return Ledger(self.cfg.results_ledger) if self.cfg.results_ledger else None

    def _ledger_inputs(self, job: TrainingJob) -> dict:
        """What a trained model's ledger record depends on: its training settings (arch, seed,
        recipe), the data's contents, the supernet it starts from and the test settings."""
        supernet = self.supernet_file
        return {
            "training": job.settings,
            "data": self._data().content_sha256("train", "valid", "test"),
            "supernet": file_sha256(supernet) if job.inherited else None,
            "test": self._test_settings(),
        }

    def _test_settings(self) -> dict:
        """How the test split is translated (`translate_dataset`'s keywords)."""
        c = self.cfg
        return {
            "beam": c.gen_beam,
            "len_penalty": c.lenpen,
            "max_len_a": c.max_len_a,
            "max_len_b": c.max_len_b,
            "max_tokens": c.train.max_tokens,
        }

    def _test_bleu(self, model: Transformer, out: Path) -> float:
        """SacreBLEU of `model` on the test split (its translations written into `out`)."""
        data = self._data()
        model.to(self.device)
        test = data.split("test")
        tr = translate_dataset(
            model, test, data.tokenizer, **self._test_settings(), device=self.device
        )
        tr.write(out, "test", data.source_lang, data.target_lang)
        return round(tr.sacrebleu, 2)

    # --- training jobs ----------------------------------------------------------------------
    def _inherited(self, name: str) -> bool:
        return name.startswith("hat@") and self.cfg.finetune_inherited

    def _model_stages(self, models: dict[str, dict]) -> dict[str, str]:
        """Each model's training stage: models with the same architecture and start share one,
        named after the first of them (baselines come before found models)."""
        first: dict[str, str] = {}
        return {
            name: first.setdefault(
                json.dumps([arch, self._inherited(name)], sort_keys=True), f"models/{name}"
            )
            for name, arch in models.items()
        }

    def seed_stage(self, stage: str, seed: int) -> str:
        """A model stage's (or output's) name for one training seed: as is for the recipe's
        seed, `NAME.seedK` for another."""
        return stage if seed == self.cfg.train.seed else f"{stage}.seed{seed}"

    def _model_jobs(self, models: dict[str, dict], recipe: dict) -> list[TrainingJob]:
        """One training job per distinct model stage and seed, seed by seed."""
        jobs = {}
        for seed in self.cfg.model_seeds:
            for name, stage in self._model_stages(models).items():
                inherited = self._inherited(name)
                settings = {
                    **recipe,
                    "train": {**recipe["train"], "seed": seed},
                    "arch": models[name],
                    "updates": self.cfg.subtransformer_max_update,
                    "finetune_fraction": self.cfg.finetune_fraction if inherited else None,
                }
                upstream = ("data", "supernet") if inherited else ("data",)
                seeded = self.seed_stage(stage, seed)
                jobs.setdefault(
                    seeded,
                    TrainingJob(seeded, settings, upstream, models[name], inherited, seed),
                )
        return list(jobs.values())

    def run_job(self, job: TrainingJob) -> dict:
        """The job's stage (run here, or skipped when a worker has done it)."""
        if job.arch is None:
            fn = self.train_supernet
        else:
            fn = functools.partial(self.train_model, job)
        return self.stage(job.stage, fn, job.settings, job.upstream)

    def train_jobs(self, jobs: list[TrainingJob]) -> dict[str, dict]:
        """Each job's result by stage; those not done yet trained side by side when the
        device allows (`--train-jobs`), in the order given."""
        pending = [j for j in jobs if not self._done(j.stage, self._inputs(j.settings, j.upstream))]
        workers = min(side_by_side(self.cfg.train_jobs, self.device), len(pending))
        if workers > 1:
            log.info("%d training runs, %d side by side", len(pending), workers)
            run_side_by_side(self.run_job, pending, workers)
        return {j.stage: self.run_job(j) for j in jobs}

    def evaluate(
        self,
        stage_of: dict[str, str],
        jobs: dict[str, TrainingJob],
        trained: dict[str, dict],
        out: Path,
    ) -> dict:
        """BLEU, latency, #params and FLOPs of each model (a shared stage is evaluated once).
        Test BLEU comes from the results ledger when it holds the model (translated by the run
        that trained it, into that model's stage directory), else from its checkpoint
        (translations in `out`).
        All are timed here, one after the other, each interleaved with the latency dataset's
        references, so their latencies are normalized like the budgets."""
        data = self._data()
        settings = self.cfg.settings(data.vocab_size)
        ref = reference_of(load_predictor(str(self.dir / "predictor/predictor.pt")).meta)
        timing = DriftFreeTimer(
            self.cfg.measure,
            self.timer,
            [Transformer(a, settings) for a in ref.get("references", [])],
            ref.get("calibrations_ms", []),
            self.cfg.train.seed,
            ref.get("references_timed_ms"),
        )
        ledger = self._ledger()
        by_stage: dict[str, dict] = {}
        results = {}
        for name, stage in stage_of.items():
            if stage in by_stage:
                results[name] = by_stage[stage]
                continue
            bleu = {}
            for seed in self.cfg.model_seeds:
                job = jobs[self.seed_stage(stage, seed)]
                done = ledger.find(self._ledger_inputs(job)) if ledger else None
                if done is None:
                    tested = self._checkpoint_bleu(
                        job, trained[job.stage], out / self.seed_stage(name, seed)
                    )
                    done = {**trained[job.stage], "test_bleu": tested}
                    if ledger:
                        ledger.add(self._ledger_inputs(job), done)
                bleu[str(seed)] = done["test_bleu"]
            model = Transformer(ArchConfig.from_dict(job.arch), settings)
            size = {
                "params": model.num_params(),
                "flops": count_flops(model, self.cfg.measure.sentence_length),
            }  # before the timing, which may move the model to the GPU
            results[name] = by_stage[stage] = {
                **bleu_summary(bleu),
                **_latency_columns(timing.time(model)),
                **size,
                "arch": model.arch.to_dict(),
            }
        return results

    def _checkpoint_bleu(self, job: TrainingJob, trained: dict, out: Path) -> float:
        """Test BLEU of a trained model from its checkpoint (its translations into `out`)."""
        checkpoint = self.dir / job.stage / "checkpoint_last.pt"
        if not checkpoint.is_file() or file_sha256(checkpoint) != trained["sha256"]:
            raise HatError(
                f"{checkpoint}: not the trained model (the stage was taken from the results "
                f"ledger, which holds no test BLEU with these test settings): delete "
                f"{self.dir / job.stage} to train it again"
            )
        model, _ = load_model(checkpoint)
        return self._test_bleu(model, out)


def write_found(out: Path, budget: float, arch: ArchConfig) -> None:
    """A found SubTransformer's YAML (train.py's --configs) in the search stage's `out`."""
    arch.to_yaml(out / f"hat@{budget:.1f}ms.yml", header=f"hat pipeline: budget {budget} ms")


def bleu_summary(by_seed: dict[str, float]) -> dict[str, Any]:
    """bleu: the mean over seeds; bleu_spread: max - min (0 with one seed); bleu_by_seed."""
    values = list(by_seed.values())
    return {
        "bleu": round(sum(values) / len(values), 2),
        "bleu_spread": round(max(values) - min(values), 2),
        "bleu_by_seed": by_seed,
    }


def _latency_columns(timed: dict[str, float | None]) -> dict[str, float | None]:
    """latency_ms: the latency budgets are decided on (normalized when a reference was timed);
    raw_ms: as timed; drift: the reference now over the reference as the dataset timed it."""
    return {
        "latency_ms": round(timed["decided_ms"], 2),
        "raw_ms": round(timed["measured_ms"], 2),
        "drift": None if timed["drift"] is None else round(timed["drift"], 3),
    }


def summary_rows(results: dict[str, Any]) -> list[dict]:
    """One row per model for the report and the terminal: found models first, then baselines."""
    found = {f"hat@{r['budget_ms']:.1f}ms": r for r in results["search"]["results"]}
    rows = []
    for name, ev in results["evaluate"].items():
        r = found.get(name)
        rows.append(
            {
                "model": name,
                "kind": "HAT" if r else "baseline",
                "family": results.get("baselines", {}).get(name),
                "budget_ms": r["budget_ms"] if r else None,
                "predicted_ms": round(r["latency_ms"], 2) if r else None,
                "predicted_std_ms": round(r["latency_std_ms"], 2) if r else None,
                **ev,
            }
        )
    return rows


def _read_json(path: Path) -> dict | None:
    """A stage record, or None when absent or torn (the stage then reruns)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

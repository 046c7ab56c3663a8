"""The settings of `hat pipeline`: the training, model, latency and search dataclasses of the
single commands, nested, plus the pipeline's own (data, update counts, budgets, test)."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from hat.errors import HatError
from hat.generate import MAX_LEN_A, MAX_LEN_B
from hat.latency.metrics import MIN_SPLIT_ROWS
from hat.latency.timing import MeasureSettings
from hat.ledger import Ledger
from hat.search.evolution import EvolutionConfig
from hat.settings import setting
from hat.space import SearchSpace
from hat.train.sampling import SamplingConfig
from hat.train.trainer import TrainConfig
from hat.transformer import ModelSettings

log = logging.getLogger(__name__)
# How the pipeline runs each training job (not a recipe setting: where and how often it saves)
RUN_POLICY = {
    "save_interval_updates": 200,
    "keep_interval_updates": 1,
    "keep_last_epochs": 1,
    "progress_bar": False,
}
# Training settings the pipeline sets per job, so they are not among its keys
PER_JOB = (
    "save_dir",
    "restore_file",
    "max_update",
    "max_epoch",
    "stop_time_hours",
    *RUN_POLICY,
)
STOP_POINTS = ("baselines", "predictor", "supernet", "search")  # where --stop-after may end a run
RAW_KEYS = ("source_lang", "target_lang", "trainpref", "validpref", "testpref")


@dataclass
class DataConfig:
    """The embedded toy task, or raw parallel text (PREFIX.LANG files)."""

    toy: bool = setting(True, "use the embedded toy task (--no-toy: the raw text below)")
    toy_train_size: int = setting(50_000, "")
    toy_valid_size: int = setting(1_000, "")
    toy_test_size: int = setting(1_000, "")
    source_lang: str | None = setting(None, "", aliases=("-s",), hat=True)
    target_lang: str | None = setting(None, "", aliases=("-t",), hat=True)
    trainpref: str | None = setting(None, "raw training text: PREFIX.SRC, PREFIX.TGT")
    validpref: str | None = setting(None, "")
    testpref: str | None = setting(None, "")
    vocab_size: int = setting(2000, "joint sentencepiece vocabulary")

    @property
    def raw(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in RAW_KEYS}

    @property
    def toy_sizes(self) -> tuple[int, int, int]:
        return self.toy_train_size, self.toy_valid_size, self.toy_test_size

    def check(self) -> None:
        if not self.toy and not all(self.raw.values()):
            missing = [f"--{k.replace('_', '-')}" for k, v in self.raw.items() if not v]
            raise HatError(f"--no-toy needs raw parallel text: missing {', '.join(missing)}")


def read_ranking_study(path: str | Path) -> dict:
    """The summary `bench/supernet_ranking.py --out` writes (one-line error otherwise)."""
    try:
        study = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HatError(f"--ranking-study {path}: cannot read it as JSON ({e})") from None
    ranks = study.get("rank_by") if isinstance(study, dict) else None
    shaped = isinstance(ranks, dict) and all(
        isinstance(by, dict) and all(isinstance(a, dict) for a in by.values())
        for by in ranks.values()
    )
    if not shaped:
        raise HatError(
            f"--ranking-study {path}: not a ranking study's summary (rank_by: truth -> scorer "
            f"-> taus; write it with bench/supernet_ranking.py --out)"
        )
    return study


@dataclass
class PipelineConfig:
    space: SearchSpace
    run_dir: str = setting("runs/pipeline", "every stage's artefacts go here")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSettings = field(default_factory=ModelSettings)  # vocabulary: the data's
    train: TrainConfig = field(default_factory=TrainConfig)  # one recipe; max_update per job
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    supernet_max_update: int = setting(3000, "SuperTransformer updates")
    supernet_checkpoint: str | None = setting(
        None,
        "search in this trained SuperTransformer (a `hat train` checkpoint of this run's space, "
        "model settings and vocabulary: checked) instead of training one",
    )
    subtransformer_max_update: int = setting(
        1500,
        "updates of each found SubTransformer and each baseline (from scratch; the cap when "
        "--convergence-tolerance stops them once converged)",
    )
    finetune_inherited: bool = setting(
        False,
        "start the found SubTransformers from the supernet's weights and train them for "
        "--finetune-fraction of the updates (cheaper than from scratch)",
    )
    finetune_fraction: float = setting(0.25, "")
    seeds: list[int] = setting(
        [],
        "train every found model and baseline once per seed (default: --seed alone); test "
        "BLEU is reported as the mean and the spread (max - min) over the seeds",
    )
    train_jobs: int = setting(
        0,
        "training runs side by side, each on its share of the CPU cores (0: one per core on "
        "a CPU, one at a time on a GPU); the SuperTransformer and the baselines train together",
    )
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    lat_dataset_size: int = setting(100, "SubTransformers timed for the predictor", hat=True)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    latency_constraint: list[float] | None = setting(None, "budgets in ms", hat=True)
    latency_constraint_fraction: list[float] = setting(
        [0.15, 0.4, 0.7],
        "budgets as fractions of the way from the smallest to the largest SubTransformer's "
        "predicted latency (portable across devices); ignored with --latency-constraint",
    )
    verify_top: int = setting(3, "time the final top K on this device")
    gen_beam: int = setting(5, "beam for the BLEU test")
    lenpen: float = setting(1.0, "")
    max_len_a: float = setting(MAX_LEN_A, "max output length = a * source + b")
    max_len_b: int = setting(MAX_LEN_B, "")
    baselines: int = setting(4, "plain Transformers scaled down from the largest")
    stop_after: str | None = setting(
        None,
        "stop once this stage is done: baselines (the baselines trained first, before "
        "anything is timed: they need neither the device nor a search), predictor (the device "
        "timed, nothing else trained yet), supernet (the SuperTransformer and the baselines "
        "trained) or search; the same command without it goes on from there",
        choices=STOP_POINTS,
    )
    results_ledger: str | None = setting(
        None,
        "append each trained found model and baseline (its training inputs, test BLEU and "
        "training summary, by seed) to this JSON-lines file, and reuse those whose inputs match "
        "instead of training them: commit it, and a long study survives the loss of its run "
        "directory",
    )
    search_result: str | None = setting(
        None,
        "keep each search's result (found models, budgets, predicted latency, the "
        "SuperTransformer's sha256) in this JSON-lines file, and take it from there when it "
        "holds this run's search inputs, skipping the SuperTransformer and the search: commit "
        "it, and the found models train and are evaluated in later sessions",
    )
    ranking_study: str | None = setting(
        None,
        "the supernet-ranking study's JSON (bench/supernet_ranking.py --out): its Kendall taus "
        "go into the report and results.json",
    )

    def __post_init__(self) -> None:
        self.train = replace(self.train, **RUN_POLICY)
        self.evolution = replace(self.evolution, seed=self.train.seed)

    def check(self) -> None:
        """Fail early, in one line, on settings that would fail a later stage."""
        self.data.check()
        self.train.check()
        self.evolution.check()
        for name in (
            "supernet_max_update",
            "subtransformer_max_update",
            "lat_dataset_size",
        ):
            if getattr(self, name) < 1:
                raise HatError(f"--{name.replace('_', '-')} must be at least 1")
        if len(set(self.seeds)) != len(self.seeds):
            raise HatError(f"--seeds {self.seeds}: each seed once")
        if self.train_jobs < 0:
            raise HatError("--train-jobs must be 0 (one per core) or more")
        if self.measure.iters < 1:
            raise HatError("--latiter must be at least 1")
        if self.lat_dataset_size < MIN_SPLIT_ROWS:
            raise HatError(
                f"--lat-dataset-size {self.lat_dataset_size}: the latency predictor needs at "
                f"least {MIN_SPLIT_ROWS} rows for its train/valid/test split"
            )
        if self.train.precision == "fp16" and self.measure.device != "cuda":
            raise HatError("--fp16 trains on the GPU: add --latgpu, or use --bf16 on the CPU")
        if self.supernet_checkpoint:
            given = Path(self.supernet_checkpoint)
            if not given.is_file() and not self.search_result:  # else: once the kept is known
                raise HatError(f"--supernet-checkpoint {given}: no such file")
            if given.resolve().is_relative_to((Path(self.run_dir) / "supernet").resolve()):
                raise HatError(
                    f"--supernet-checkpoint {given} is this run's own supernet stage, which "
                    f"is replaced when the stage reruns: copy it out of {self.run_dir} first"
                )
        if self.ranking_study:
            read_ranking_study(self.ranking_study)
        for ledger in (self.results_ledger, self.search_result):
            if ledger:
                Ledger(ledger).check()
        if not 0 < self.finetune_fraction <= 1:
            raise HatError("--finetune-fraction must be in (0, 1]")
        self.space.sample(random.Random(0))  # fails clearly on a space without choices
        warmup = self.train.schedule.warmup_updates
        if warmup >= min(self.supernet_max_update, self.subtransformer_max_update):
            log.warning(
                "warmup-updates %d >= supernet-max-update %d or subtransformer-max-update %d: "
                "the learning rate does not reach its peak (train.py's recipe is sized for "
                "long runs; state warmup-updates in the pipeline's YAML)",
                warmup,
                self.supernet_max_update,
                self.subtransformer_max_update,
            )

    @property
    def supernet_train(self) -> TrainConfig:
        """The SuperTransformer's recipe: the shared one for its fixed `supernet-max-update`
        (`convergence-tolerance` stops only the SubTransformers: a supernet's sampled
        validation loss does not say when its SubTransformers are trained)."""
        return replace(self.train, convergence_tolerance=0.0)

    @property
    def model_seeds(self) -> list[int]:
        """The training seeds of the found models and the baselines."""
        return list(self.seeds) or [self.train.seed]

    @property
    def budgets_ms(self) -> list[float]:
        return list(self.latency_constraint or [])

    @property
    def budget_fractions(self) -> list[float]:
        return [] if self.latency_constraint else list(self.latency_constraint_fraction)

    def settings(self, vocab_size: int) -> ModelSettings:
        """The model settings for the data's vocabulary, recording the SuperTransformer dims."""
        return replace(
            self.model,
            vocab_size=vocab_size,
            qkv_dim=self.space.qkv_dim,
            supernet_encoder_embed_dim=self.space.encoder_embed_dim,
            supernet_decoder_embed_dim=self.space.decoder_embed_dim,
        )

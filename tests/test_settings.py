"""Settings live once, as dataclass fields: every command's flags and the pipeline's YAML keys
are generated from them, and HAT's own YAML files round-trip through them unchanged."""

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml
from conftest import tiny_space

from hat.cli import COMMANDS
from hat.cli.args import arch_from_args, evolution_from_args, settings_from_args, space_from_args
from hat.cli.pipeline import build_parser as pipeline_parser
from hat.cli.pipeline import pipeline_config
from hat.cli.train import build_parser as train_parser
from hat.cli.train import train_config
from hat.latency.fit import HatRecipe
from hat.latency.timing import MeasureSettings
from hat.pipeline.config import PER_JOB, PipelineConfig
from hat.settings import add_settings, from_flags, setting, to_keys
from hat.space import SUPERNET_KEYS
from hat.train.trainer import TrainConfig

HAT_CONFIGS = Path(__file__).resolve().parents[2] / "shared/data/hat-configs"
REPO = Path(__file__).resolve().parents[1]
# HAT keys that name inputs, outputs or fairseq choices with one value here, not settings
NOT_SETTINGS = {
    "arch",  # fairseq architecture name: the dims keys say it
    "data",
    "source-lang",
    "target-lang",
    "distributed-world-size",  # torchrun's
    "ddp-backend",
    "optimizer",  # adam only
    "criterion",  # label_smoothed_cross_entropy only
    "train-subtransformer",  # which model train.py builds
    "write-config-path",
    "lat-dataset-path",
    "latsilent",
    "ckpt-path",
    "feature-norm",  # the predictor file's own norms (checked against it)
    "lat-norm",
    "feature-dim",  # checked against feature-norm
    "latency-constraint",  # search: the budgets asked for
    "lat-dataset-size",
    "cpu",  # a command's device choice (train on the CPU; time on the CPU)
}
# keys a step's YAML carries for another step (accepted and ignored there, as in HAT)
OTHER_STEPS = {
    "evo_search": {"restore-file"},  # the SuperTransformer checkpoint to search in: an input
    "latency_dataset": {"max-tokens"},
}


def hat_yamls() -> list[Path]:
    if not HAT_CONFIGS.is_dir():
        return []
    return sorted(HAT_CONFIGS.rglob("*.yml"))


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a).replace(" ", "") == str(b).replace(" ", "")


def hat_keys(obj) -> dict:
    return to_keys(obj, hat_only=True)


def settings_of(path: Path) -> dict:
    """The HAT-keyed settings the matching command builds from `path`, written back as keys."""
    role = path.parent.name
    if role in ("supertransformer", "subtransformer"):
        args = train_parser().parse_args([f"--configs={path}", "--data=unused"])
        keys = {**hat_keys(train_config(args)), **hat_keys(settings_from_args(args, 10))}
        if any(k.endswith("-choice") for k in yaml.safe_load(path.read_text())):
            keys.update(space_from_args(args).to_hat_dict())
        elif role == "subtransformer" and path.name != "common.yml":
            keys.update(arch_from_args(args).to_hat_dict())
        else:
            keys.update({k: getattr(args, k.replace("-", "_")) for k in SUPERNET_KEYS.values()})
        return keys
    if role == "evo_search":
        module = importlib.import_module("hat.cli.search")
        args = module.build_parser().parse_args([f"--evo-configs={path}", "--data=unused"])
        return hat_keys(evolution_from_args(args))
    if role == "latency_dataset":
        module = importlib.import_module("hat.cli.latency_dataset")
        args = module.build_parser().parse_args([f"--configs={path}"])
        return {
            **hat_keys(from_flags(MeasureSettings, vars(args))),
            **space_from_args(args).to_hat_dict(),
            **hat_keys(settings_from_args(args, 10)),
        }
    module = importlib.import_module("hat.cli.latency_predictor")  # latency_predictor
    args = module.build_parser().parse_args([f"--configs={path}"])
    return hat_keys(from_flags(HatRecipe, vars(args)))


@pytest.mark.skipif(not hat_yamls(), reason="../shared/data/hat-configs is absent")
@pytest.mark.parametrize("path", hat_yamls(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_hat_keys_round_trip_through_the_dataclasses(path: Path):
    original = yaml.safe_load(path.read_text())
    written = settings_of(path)
    ignored = NOT_SETTINGS | OTHER_STEPS.get(path.parent.name, set())
    homeless = sorted(k for k in original if k not in written and k not in ignored)
    assert not homeless, f"HAT keys without a setting: {homeless}"
    changed = {k: (v, written[k]) for k, v in original.items() if k in written}
    changed = {k: pair for k, pair in changed.items() if not _same(*pair)}
    assert not changed


def test_every_command_parser_builds_from_the_dataclasses():
    for module, _ in COMMANDS.values():
        parser = importlib.import_module(module).build_parser()
        assert parser.format_help()
    keys = pipeline_parser().known_keys()
    for cls in (TrainConfig, MeasureSettings):
        for key in to_keys(cls()):
            if key in ("save-dir", "restore-file", "max-update", "max-epoch"):
                continue
            assert key in keys or key.replace("-", "_") in PER_JOB, key


def test_the_pipeline_trains_with_train_py_defaults():
    """One recipe: what `hat pipeline` trains with, unless its YAML says otherwise, is what
    train.py trains with."""
    space = [f"--{k}={v}" for k, v in tiny_space().to_hat_dict().items() if not isinstance(v, list)]
    space += [
        a
        for k, v in tiny_space().to_hat_dict().items()
        if isinstance(v, list)
        for a in [f"--{k}", *map(str, v)]
    ]
    pipeline = pipeline_config(pipeline_parser().parse_args(space)).train
    train = train_config(train_parser().parse_args(["--data=unused"]))
    recipe = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in PER_JOB]
    assert {n: getattr(pipeline, n) for n in recipe} == {n: getattr(train, n) for n in recipe}


def test_the_pipeline_yaml_round_trips():
    """configs/toy/pipeline.yml -> PipelineConfig -> keys: every key it states comes back."""
    path = REPO / "configs/toy/pipeline.yml"
    cfg = pipeline_config(pipeline_parser().parse_args([f"--configs={path}"]))
    written = {**to_keys(cfg), **cfg.space.to_hat_dict()}
    original = yaml.safe_load(path.read_text())
    assert {k: v for k, v in original.items() if not _same(v, written[k])} == {}
    assert isinstance(cfg, PipelineConfig)


def test_a_setting_is_a_flag_a_yaml_key_and_a_field(tmp_path: Path):
    @dataclasses.dataclass
    class Inner:
        rate: float = setting(0.5, "a rate", hat=True)

    @dataclasses.dataclass
    class Outer:
        inner: Inner = dataclasses.field(default_factory=Inner)
        sizes: list[int] = setting([1, 2], "sizes")
        name: str | None = setting(None, "a name", key="the-name", aliases=("n",))
        enabled: bool = setting(True, "a switch")
        mode: str = setting("a", "mode", choices=("a", "b"), switches={"bee": "b"})

    from hat.cli.parser import HatArgumentParser

    p = HatArgumentParser("t", "")
    add_settings(p, Outer)
    (tmp_path / "c.yml").write_text("rate: 0.25\nsizes: [3]\nn: x\nenabled: false\nbee: true\n")
    args = p.parse_args([f"--configs={tmp_path / 'c.yml'}"])
    got = from_flags(Outer, vars(args))
    assert got == Outer(Inner(0.25), [3], "x", False, "b")
    assert to_keys(got) == {
        "rate": 0.25,
        "sizes": [3],
        "the-name": "x",
        "enabled": False,
        "mode": "b",
    }
    assert to_keys(got, hat_only=True) == {"rate": 0.25}
    assert from_flags(Outer, vars(p.parse_args([]))) == Outer()
    with pytest.raises(Exception, match="not allowed with"):
        p.parse_args(["--mode", "b", "--bee"])


@pytest.mark.parametrize(
    "obj",
    [
        TrainConfig(precision="bf16", adam_betas=[0.9, 0.99], max_update=7),
        TrainConfig(progress_bar=False),
        MeasureSettings(device="cuda", threads=2, cores="0"),
    ],
    ids=["train", "no-progress-bar", "measure"],
)
@pytest.mark.parametrize("hat_only", [False, True], ids=["hat", "keys"])
def test_written_keys_read_back(obj, hat_only: bool, tmp_path: Path):
    """to_keys -> YAML -> the commands' parser -> the same settings (switches included)."""
    from hat.cli.latency_dataset import build_parser as latency_parser

    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(to_keys(obj, hat_only)))
    if isinstance(obj, TrainConfig):
        back = train_config(train_parser().parse_args([f"--configs={path}", "--data=unused"]))
    else:
        back = from_flags(MeasureSettings, vars(latency_parser().parse_args([f"--configs={path}"])))
    keys = to_keys(obj, hat_only)
    assert to_keys(back, hat_only) == keys
    if not hat_only:
        assert back == obj


def test_a_no_key_in_yaml_means_the_no_flag(tmp_path: Path):
    for text, expected in (("no-progress-bar: True", False), ("no-progress-bar: False", True)):
        (tmp_path / "c.yml").write_text(text + "\nshare-all-embeddings: False\n")
        args = train_parser().parse_args([f"--configs={tmp_path / 'c.yml'}", "--data=unused"])
        assert args.progress_bar is expected and args.share_all_embeddings is False

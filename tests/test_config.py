"""HAT-style configs: --configs YAML with dashed keys, flags override, clear errors."""

from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

from hat.cli.parser import HAT_KEYS
from hat.cli.preprocess import build_parser
from hat.config import load_yaml
from hat.errors import HatError


def test_file_values_and_flag_override(tmp_path: Path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("source-lang: de\ntarget-lang: en\ntrainpref: x/train\nvocab-size: 123\n")
    args = build_parser().parse_args([f"--configs={cfg}"])
    assert (args.source_lang, args.target_lang, args.vocab_size) == ("de", "en", 123)
    args = build_parser().parse_args(["--configs", str(cfg), "--vocab-size", "77"])
    assert args.vocab_size == 77


def test_unknown_key_names_the_key_and_suggests(tmp_path: Path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("source-lang: de\nvocab-sise: 10\n")
    with pytest.raises(HatError, match=r"unknown key 'vocab-sise' \(did you mean 'vocab-size'\?\)"):
        build_parser().parse_args([f"--configs={cfg}"])


def test_unknown_key_cli(tmp_path: Path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("source-lang: en\ntarget-lang: de\ntrainpref: t\nfoo-bar: 3\n")
    assert_one_line_error(
        run_cli("preprocess", f"--configs={cfg}"), "unknown key 'foo-bar'", str(cfg)
    )


def test_missing_and_malformed_config(tmp_path: Path):
    assert_one_line_error(
        run_cli("preprocess", f"--configs={tmp_path}/none.yml"), "config file not found"
    )
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(HatError, match="invalid YAML"):
        load_yaml(bad)
    listy = tmp_path / "list.yml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(HatError, match="expected a mapping"):
        load_yaml(listy)


def test_bad_flag_value_is_one_line(tmp_path: Path):
    assert_one_line_error(
        run_cli("preprocess", "-s", "en", "-t", "de", "--trainpref", "x", "--vocab-size", "many"),
        "invalid int value",
    )
    assert_one_line_error(run_cli("nosuchcommand"), "unknown command")


def test_every_hat_config_loads_unchanged(shared_data: Path):
    """HAT's own YAML files: every key is known to hat (used here or by another command)."""
    files = sorted((shared_data / "hat-configs").rglob("*.yml"))
    assert len(files) >= 30
    for f in files:
        assert set(map(str, load_yaml(f))) <= HAT_KEYS, f
        args = build_parser().parse_args(
            [f"--configs={f}", "-s", "en", "-t", "de", "--trainpref", "x"]
        )
        assert args.trainpref == "x"


def test_the_study_config_repeats_its_space_and_recipe_exactly():
    """configs/multi30k/study.yml repeats space1.yml's SuperTransformer and search space and the
    references' recipe (a pipeline reads one --configs file): the copies must not drift."""
    configs = Path(__file__).resolve().parents[1] / "configs/multi30k"
    study = load_yaml(configs / "study.yml")
    space = load_yaml(configs / "supertransformer/space1.yml")
    recipe = load_yaml(configs / "subtransformer/common.yml")
    space_keys = [k for k in space if k.endswith(("-choice", "-dim", "-layers", "-heads"))]
    recipe_keys = ["dropout", "attention-dropout", "label-smoothing", "max-tokens", "lr"]
    recipe_keys += ["weight-decay", "warmup-updates"]
    assert len(space_keys) >= 19
    for key, source in [(k, space) for k in space_keys] + [(k, recipe) for k in recipe_keys]:
        assert study.get(key) == source[key], f"study.yml's {key} differs from its source"

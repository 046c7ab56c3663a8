"""Bad input, every command: exit 2, one line naming the file and what is wrong, no traceback,
and the files it was given unchanged (issue #13, item 7).

Each case prepares bad files in its own directory and returns the command line; the command
runs in-process (`hat.cli.main`). Session fixtures build a tiny data directory, a 1-update
SuperTransformer checkpoint, a compact model, a predictor and a latency CSV once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import outside_tiny_space, tiny_space

from hat.checkpoint import load_checkpoint, save_checkpoint
from hat.cli import main
from hat.latency.measure import Latency
from hat.latency.plan import plan_configs
from hat.latency.predictor import HatMlpPredictor, HatNet
from hat.latency.rows import EXTRA_COLUMNS, HAT_COLUMNS, row_for
from hat.space import ArchConfig
from hat.train.checkpoints import load_supernet

LAT_ROWS = 20  # rows of the good latency CSV (a plan of this size, seed 1)
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d \| INFO \| ")


@dataclass
class Fx:
    """Good inputs, built once; cases copy and damage them."""

    root: Path
    data: Path  # binarized data directory
    space_yml: Path  # tiny SuperTransformer space + training keys
    supernet: Path  # `hat train` checkpoint (1 update, with optimizer state)
    compact: Path  # compact model (Transformer.save)
    sub_yml: Path  # the smallest SubTransformer of the space
    predictor: Path
    lat_csv: Path


@dataclass
class Case:
    """A command line and what its one error line must contain."""

    argv: list[str]
    file: Path  # the bad file: its name must be in the error
    reason: str  # a short phrase of the error
    log_ok: bool = False  # progress log lines may come before the error (training set-up)


@pytest.fixture(scope="session")
def fx(tmp_path_factory) -> Fx:
    from hat.data.preprocess import preprocess
    from hat.data.toy import write_toy_task

    root = tmp_path_factory.mktemp("badinputs")
    write_toy_task(root / "raw", train=300, valid=20, test=20, seed=7)
    data = root / "bin"
    preprocess(
        "en",
        "de",
        str(root / "raw" / "train"),
        data,
        validpref=str(root / "raw" / "valid"),
        testpref=str(root / "raw" / "test"),
        vocab_size=400,
    )
    space = tiny_space()
    space_yml = root / "space.yml"
    space_yml.write_text(
        yaml.safe_dump(
            {**space.to_hat_dict(), "max-tokens": 600, "cpu": True, "no-progress-bar": True},
            sort_keys=False,
        )
    )
    assert (
        main(
            [
                "train",
                f"--configs={space_yml}",
                "--data",
                str(data),
                "--save-dir",
                str(root / "ckpt"),
                "--max-update",
                "1",
                "--log-interval",
                "1",
            ]
        )
        == 0
    )
    supernet = root / "supernet.pt"
    shutil.copyfile(root / "ckpt" / "checkpoint_last.pt", supernet)
    shutil.rmtree(root / "ckpt")
    net, _ = load_supernet(supernet)
    sub_yml = root / "sub.yml"
    space.smallest().to_yaml(sub_yml)
    compact = root / "compact.pt"
    net.export(space.smallest()).save(compact, spm_model=(data / "spm.model").read_bytes())
    predictor = root / "predictor.pt"
    HatMlpPredictor(
        feature_set="hat10",
        feature_norm=[1.0] * 10,
        nets=[HatNet(10, 8, 1)],
        lat_norm=200.0,
        hidden_dim=8,
        hidden_layer_num=1,
    ).save(str(predictor))
    lat_csv = root / "lat.csv"
    write_latency_csv(lat_csv, plan_configs(space, LAT_ROWS, 1))
    return Fx(root, data, space_yml, supernet, compact, sub_yml, predictor, lat_csv)


def write_latency_csv(path: Path, archs: list[ArchConfig], **override: str) -> Path:
    """A hat latency CSV of `archs` (config_id = position) with made-up timings."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HAT_COLUMNS + EXTRA_COLUMNS)
        writer.writeheader()
        for i, arch in enumerate(archs):
            ms = 1 + sum(arch.encoder_ffn_embed_dim) / 640 + 0.3 * arch.decoder_layer_num + 0.01 * i
            lat = Latency(ms / 3, 2 * ms / 3, 0.01, 0.02, "cpu", 1, 30, 5, 2)
            writer.writerow(row_for(arch, i, lat, [5.0], {"device": "cpu", "runtime": "torch"}))
    if override:
        edit_csv(path, **override)
    return path


def edit_csv(path: Path, row: int = 0, **cells: str) -> None:
    """Set `cells` of data row `row` (0-based)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    rows[row].update(cells)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def edited_checkpoint(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    payload = load_checkpoint(src)
    edit(payload)
    save_checkpoint(payload, dst)
    return dst


def shrink(state: dict, key: str) -> None:
    """Make one weight of a state dict the wrong shape."""
    state[key] = state[key][..., :-1].clone()


def copy_data(fx: Fx, dst: Path, metadata: str | None = None) -> Path:
    shutil.copytree(fx.data, dst)
    if metadata is not None:
        (dst / "metadata.json").write_text(metadata, encoding="utf-8")
    return dst


def trained_sub(fx: Fx, dst: Path, edit: Callable[[dict], None] = lambda p: None) -> Path:
    """A `hat train --train-subtransformer` checkpoint of the smallest SubTransformer."""
    compact = load_checkpoint(fx.compact)

    def to_train(p: dict) -> None:
        p.update(
            kind="subtransformer",
            arch=compact["arch"],
            settings=compact["settings"],
            model=compact["model"],
            optimizer=None,
            scheduler=None,
        )
        edit(p)

    return edited_checkpoint(fx.supernet, dst, to_train)


def search_argv(
    fx: Fx,
    t: Path,
    restore: Path | None = None,
    predictor: Path | None = None,
    data: Path | None = None,
) -> list[str]:
    return [
        "search",
        "--restore-file",
        str(restore or fx.supernet),
        "--ckpt-path",
        str(predictor or fx.predictor),
        "--data",
        str(data or fx.data),
        "--write-config-path",
        str(t / "found.yml"),
        "--latency-constraint",
        "100",
        "--evo-iter",
        "1",
        "--cpu",
        "--no-progress-bar",
    ]


def train_argv(fx: Fx, t: Path, save: Path, data: Path | None = None, *extra: str) -> list[str]:
    return [
        "train",
        f"--configs={fx.space_yml}",
        "--data",
        str(data or fx.data),
        "--save-dir",
        str(save),
        "--max-update",
        "2",
        *extra,
    ]


def resume_dir(fx: Fx, t: Path, edit: Callable[[dict], None]) -> Path:
    save = t / "ckpt"
    save.mkdir()
    edited_checkpoint(fx.supernet, save / "checkpoint_last.pt", edit)
    return save


def predictor_argv(csv_path: Path, t: Path) -> list[str]:
    return [
        "latency-predictor",
        "--lat-dataset-path",
        str(csv_path),
        "--ckpt-path",
        str(t / "p.pt"),
        "--members",
        "1",
        "--train-steps",
        "10",
    ]


def dataset_argv(fx: Fx, csv_path: Path, *extra: str) -> list[str]:
    return [
        "latency-dataset",
        f"--configs={fx.space_yml}",
        "--lat-dataset-path",
        str(csv_path),
        "--lat-dataset-size",
        str(LAT_ROWS),
        "--latiter",
        "1",
        "--warmup",
        "0",
        "--latsilent",
        "--vocab-size",
        "50",
        "--sentence-length",
        "3",
        "--beam",
        "1",
        *extra,
    ]


# --- the cases: (fx, tmp dir) -> Case -----------------------------------------------------------
def preprocess_missing_file(fx: Fx, t: Path) -> Case:
    return Case(
        [
            "preprocess",
            "-s",
            "en",
            "-t",
            "de",
            "--trainpref",
            str(t / "nope"),
            "--destdir",
            str(t / "out"),
        ],
        t / "nope.en",
        "not found",
    )


def preprocess_empty_split(fx: Fx, t: Path) -> Case:
    (t / "train.en").write_text("")
    (t / "train.de").write_text("")
    return Case(
        [
            "preprocess",
            "-s",
            "en",
            "-t",
            "de",
            "--trainpref",
            str(t / "train"),
            "--destdir",
            str(t / "out"),
        ],
        t / "train.en",
        "empty",
    )


def preprocess_unknown_yaml_key(fx: Fx, t: Path) -> Case:
    (t / "p.yml").write_text("source-lang: en\nfoo-bar: 1\n")
    return Case(["preprocess", f"--configs={t / 'p.yml'}"], t / "p.yml", "unknown key 'foo-bar'")


def toy_out_is_a_file(fx: Fx, t: Path) -> Case:
    (t / "toy").write_text("a file\n")
    return Case(["toy", "--out", str(t / "toy"), "--train-size", "5"], t / "toy", "not a directory")


def train_corrupt_metadata(fx: Fx, t: Path) -> Case:
    data = copy_data(fx, t / "bin", '{"format_version": 1, "vocab')
    return Case(train_argv(fx, t, t / "ckpt", data), data / "metadata.json", "not valid JSON")


def train_metadata_missing_key(fx: Fx, t: Path) -> Case:
    meta = json.loads((fx.data / "metadata.json").read_text())
    del meta["vocab_size"]
    data = copy_data(fx, t / "bin", json.dumps(meta))
    return Case(train_argv(fx, t, t / "ckpt", data), data / "metadata.json", "vocab_size")


def train_unknown_yaml_key(fx: Fx, t: Path) -> Case:
    cfg = t / "space.yml"
    cfg.write_text(fx.space_yml.read_text() + "encoder-embed-dimm: 3\n")
    return Case(
        ["train", f"--configs={cfg}", "--data", str(fx.data), "--save-dir", str(t / "c")],
        cfg,
        "unknown key 'encoder-embed-dimm'",
    )


def train_torn_checkpoint(fx: Fx, t: Path) -> Case:
    save = t / "ckpt"
    save.mkdir()
    data = fx.supernet.read_bytes()
    (save / "checkpoint_last.pt").write_bytes(data[: len(data) // 2])
    return Case(
        train_argv(fx, t, save),
        save / "checkpoint_last.pt",
        "not a readable checkpoint",
        log_ok=True,
    )


def train_resume_wrong_model_shape(fx: Fx, t: Path) -> Case:
    save = resume_dir(fx, t, lambda p: shrink(p["model"], "encoder_layers.0.fc1.weight"))
    return Case(train_argv(fx, t, save), save / "checkpoint_last.pt", "do not match", log_ok=True)


def train_resume_missing_key(fx: Fx, t: Path) -> Case:
    save = resume_dir(fx, t, lambda p: p.pop("train_state"))
    return Case(train_argv(fx, t, save), save / "checkpoint_last.pt", "train_state", log_ok=True)


def train_resume_optimizer_wrong_shape(fx: Fx, t: Path) -> Case:
    def edit(p: dict) -> None:
        state = p["optimizer"]["state"][0]
        state["exp_avg"] = state["exp_avg"][..., :-1].clone()

    save = resume_dir(fx, t, edit)
    return Case(
        train_argv(fx, t, save), save / "checkpoint_last.pt", "optimizer state", log_ok=True
    )


def train_resume_optimizer_other_params(fx: Fx, t: Path) -> Case:
    save = resume_dir(fx, t, lambda p: p["optimizer"]["param_groups"][0]["params"].pop())
    return Case(
        train_argv(fx, t, save), save / "checkpoint_last.pt", "optimizer state", log_ok=True
    )


def latency_dataset_other_plan_not_truncated(fx: Fx, t: Path) -> Case:
    lat = t / "lat.csv"
    lat.write_bytes(fx.lat_csv.read_bytes() + b"64,48,4,3,96,80,4,4,2,2,0.3")  # a torn last row
    return Case(dataset_argv(fx, lat, "--seed", "2"), lat, "another plan")


def latency_dataset_foreign_file_not_truncated(fx: Fx, t: Path) -> Case:
    notes = t / "notes.csv"
    notes.write_text("a user's file without a final newline")
    return Case(dataset_argv(fx, notes), notes, "not a latency dataset")


def latency_dataset_bad_config_cell(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(
        t / "lat.csv", plan_configs(tiny_space(), LAT_ROWS, 1), config='{"encoder_embed_dim": 64,'
    )
    return Case(dataset_argv(fx, lat), lat, "config")


def latency_dataset_bad_config_id(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(t / "lat.csv", plan_configs(tiny_space(), LAT_ROWS, 1), config_id="x")
    return Case(dataset_argv(fx, lat), lat, "config_id")


def latency_dataset_bad_reference_ms(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(
        t / "lat.csv", plan_configs(tiny_space(), LAT_ROWS, 1), reference_ms="fast"
    )
    return Case(dataset_argv(fx, lat), lat, "reference_ms")


def latency_dataset_corrupt_metadata(fx: Fx, t: Path) -> Case:
    data = copy_data(fx, t / "bin", "[1, 2")
    return Case(
        dataset_argv(fx, t / "lat.csv", "--data", str(data)),
        data / "metadata.json",
        "not valid JSON",
    )


def latency_dataset_sub_outside_space(fx: Fx, t: Path) -> Case:
    sub = t / "big.yml"
    outside_tiny_space().to_yaml(sub)
    return Case(dataset_argv(fx, t / "lat.csv", "--measure", str(sub)), sub, "encoder")


def predictor_3_rows(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(t / "lat.csv", plan_configs(tiny_space(), 3, 1))
    return Case(predictor_argv(lat, t), lat, "needs at least 16 rows")


def predictor_7_rows(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(t / "lat.csv", plan_configs(tiny_space(), 7, 1))
    return Case(predictor_argv(lat, t), lat, "needs at least 16 rows")


def predictor_bad_config_cell(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(
        t / "lat.csv", plan_configs(tiny_space(), LAT_ROWS, 1), config="not json"
    )
    return Case(predictor_argv(lat, t), lat, "config")


def predictor_config_cell_missing_keys(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(
        t / "lat.csv", plan_configs(tiny_space(), LAT_ROWS, 1), config='{"encoder_embed_dim": 64}'
    )
    return Case(predictor_argv(lat, t), lat, "decoder_embed_dim")


def predictor_non_numeric_reference_ms(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(
        t / "lat.csv", plan_configs(tiny_space(), LAT_ROWS, 1), reference_ms="n/a"
    )
    return Case(predictor_argv(lat, t), lat, "reference_ms")


def predictor_non_numeric_latency(fx: Fx, t: Path) -> Case:
    lat = write_latency_csv(
        t / "lat.csv", plan_configs(tiny_space(), LAT_ROWS, 1), latency_mean_encoder="1,5"
    )
    return Case(predictor_argv(lat, t), lat, "not a number")


def predictor_missing_column(fx: Fx, t: Path) -> Case:
    lat = t / "lat.csv"
    lat.write_text("encoder_embed_dim,latency_mean_encoder\n512,3.0\n")
    return Case(predictor_argv(lat, t), lat, "lacks the column(s)")


def predictor_no_rows(fx: Fx, t: Path) -> Case:
    lat = t / "lat.csv"
    lat.write_text(",".join(HAT_COLUMNS + EXTRA_COLUMNS) + "\n")
    return Case(predictor_argv(lat, t), lat, "no rows")


def predict_with_predictor_missing_keys(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(fx.predictor, t / "p.pt", lambda p: p.pop("nets"))
    return Case(
        ["latency-predictor", "--ckpt-path", str(bad), "--predict", str(fx.sub_yml)], bad, "nets"
    )


def search_supernet_missing_key(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(fx.supernet, t / "s.pt", lambda p: p.pop("model"))
    return Case(search_argv(fx, t, restore=bad), bad, "model")


def search_supernet_wrong_shape(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(
        fx.supernet, t / "s.pt", lambda p: shrink(p["model"], "decoder_layers.0.fc2.weight")
    )
    return Case(search_argv(fx, t, restore=bad), bad, "size mismatch")


def search_supernet_torn(fx: Fx, t: Path) -> Case:
    bad = t / "s.pt"
    bad.write_bytes(fx.supernet.read_bytes()[:1000])
    return Case(search_argv(fx, t, restore=bad), bad, "not a readable checkpoint")


def search_predictor_missing_key(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(fx.predictor, t / "p.pt", lambda p: p.pop("hidden_dim"))
    return Case(search_argv(fx, t, predictor=bad), bad, "hidden_dim")


def search_predictor_wrong_shape(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(
        fx.predictor, t / "p.pt", lambda p: shrink(p["nets"][0], "first_layer.weight")
    )
    return Case(search_argv(fx, t, predictor=bad), bad, "size mismatch")


def search_corrupt_metadata(fx: Fx, t: Path) -> Case:
    data = copy_data(fx, t / "bin", "")
    return Case(search_argv(fx, t, data=data), data / "metadata.json", "not valid JSON")


def search_space_of_another_supernet(fx: Fx, t: Path) -> Case:
    cfg = t / "space.yml"
    cfg.write_text(yaml.safe_dump({**tiny_space(encoder_embed_dim=128).to_hat_dict()}))
    return Case(search_argv(fx, t) + [f"--configs={cfg}"], fx.supernet, "another SuperTransformer")


def generate_supernet_wrong_shape(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(
        fx.supernet, t / "s.pt", lambda p: shrink(p["model"], "encoder_layers.1.fc1.weight")
    )
    return Case(
        ["generate", "--data", str(fx.data), "--path", str(bad), f"--configs={fx.sub_yml}"],
        bad,
        "size mismatch",
    )


def generate_compact_missing_key(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(fx.compact, t / "m.pt", lambda p: p.pop("arch"))
    return Case(["generate", "--data", str(fx.data), "--path", str(bad)], bad, "arch")


def generate_trained_sub_wrong_shape(fx: Fx, t: Path) -> Case:
    bad = trained_sub(fx, t / "m.pt", lambda p: shrink(p["model"], "decoder_layers.0.fc1.weight"))
    return Case(["generate", "--data", str(fx.data), "--path", str(bad)], bad, "size mismatch")


def generate_corrupt_metadata(fx: Fx, t: Path) -> Case:
    data = copy_data(fx, t / "bin", "{oops}")
    return Case(
        ["generate", "--data", str(data), "--path", str(fx.compact)],
        data / "metadata.json",
        "not valid JSON",
    )


def generate_missing_split(fx: Fx, t: Path) -> Case:
    return Case(
        ["generate", "--data", str(fx.data), "--path", str(fx.compact), "--gen-subset", "test9"],
        fx.data,
        "no split 'test9'",
    )


def generate_sub_outside_space(fx: Fx, t: Path) -> Case:
    sub = t / "big.yml"
    outside_tiny_space().to_yaml(sub)
    return Case(
        ["generate", "--data", str(fx.data), "--path", str(fx.supernet), f"--configs={sub}"],
        fx.supernet,
        "larger than the supernet",
    )


def profile_compact_wrong_shape(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(
        fx.compact, t / "m.pt", lambda p: shrink(p["model"], "encoder_layers.0.fc2.weight")
    )
    return Case(["profile", "--path", str(bad)], bad, "size mismatch")


def profile_compact_missing_key(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(fx.compact, t / "m.pt", lambda p: p.pop("settings"))
    return Case(["profile", "--path", str(bad)], bad, "settings")


def profile_missing_file(fx: Fx, t: Path) -> Case:
    return Case(["profile", "--path", str(t / "none.pt")], t / "none.pt", "not found")


def quantize_trained_sub_missing_key(fx: Fx, t: Path) -> Case:
    bad = trained_sub(fx, t / "m.pt", lambda p: p.pop("model"))
    return Case(
        ["quantize", "--path", str(bad), "--method", "int8", "--out", str(t / "q")], bad, "model"
    )


def quantize_compact_wrong_shape(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(
        fx.compact, t / "m.pt", lambda p: shrink(p["model"], "decoder_layers.0.fc2.weight")
    )
    return Case(
        ["quantize", "--path", str(bad), "--method", "kmeans", "--out", str(t / "q")],
        bad,
        "size mismatch",
    )


def export_onnx_trained_sub_wrong_shape(fx: Fx, t: Path) -> Case:
    bad = trained_sub(fx, t / "m.pt", lambda p: shrink(p["model"], "encoder_layers.0.fc1.weight"))
    return Case(["export-onnx", "--path", str(bad), "--out", str(t / "onnx")], bad, "size mismatch")


def export_onnx_trained_sub_missing_key(fx: Fx, t: Path) -> Case:
    bad = trained_sub(fx, t / "m.pt", lambda p: p.pop("kind"))
    return Case(["export-onnx", "--path", str(bad), "--out", str(t / "onnx")], bad, "kind")


def average_different_shapes(fx: Fx, t: Path) -> Case:
    good = edited_checkpoint(fx.compact, t / "a.pt", lambda p: None)
    bad = edited_checkpoint(
        fx.compact, t / "b.pt", lambda p: shrink(p["model"], "encoder_layers.0.fc1.weight")
    )
    return Case(
        ["average", "--inputs", str(good), str(bad), "--output", str(t / "avg.pt")],
        bad,
        "encoder_layers.0.fc1.weight",
    )


def average_torn_checkpoint(fx: Fx, t: Path) -> Case:
    bad = t / "b.pt"
    bad.write_bytes(fx.compact.read_bytes()[:-100])
    return Case(
        ["average", "--inputs", str(fx.compact), str(bad), "--output", str(t / "avg.pt")],
        bad,
        "not a readable checkpoint",
    )


def convert_not_a_hat_checkpoint(fx: Fx, t: Path) -> Case:
    bad = edited_checkpoint(fx.compact, t / "m.pt", lambda p: None)
    return Case(
        ["convert", "--path", str(bad), "--out", str(t / "o.pt")],
        bad,
        "not a HAT/fairseq checkpoint",
    )


def convert_missing_file(fx: Fx, t: Path) -> Case:
    return Case(
        ["convert", "--path", str(t / "none.pt"), "--out", str(t / "o.pt")],
        t / "none.pt",
        "not found",
    )


def download_missing_source(fx: Fx, t: Path) -> Case:
    return Case(
        [
            "download",
            "--model-name",
            "m",
            "--url",
            (t / "gone.pt").as_uri(),
            "--cache-dir",
            str(t / "cache"),
        ],
        t / "gone.pt",
        "failed",
    )


def download_corrupt_sha256_record(fx: Fx, t: Path) -> Case:
    (t / "cache").mkdir()
    (t / "cache" / "sha256.json").write_text('{"m": "ab')
    (t / "src.pt").write_bytes(b"weights")
    return Case(
        [
            "download",
            "--model-name",
            "m",
            "--url",
            (t / "src.pt").as_uri(),
            "--cache-dir",
            str(t / "cache"),
        ],
        t / "cache" / "sha256.json",
        "not valid JSON",
    )


def pipeline_unknown_yaml_key(fx: Fx, t: Path) -> Case:
    cfg = t / "pipe.yml"
    cfg.write_text(f"run-dir: {t / 'run'}\nsupernet-max-updates: 3\n")
    return Case(["pipeline", f"--configs={cfg}"], cfg, "unknown key 'supernet-max-updates'")


def pipeline_choice_outside_space(fx: Fx, t: Path) -> Case:
    cfg = t / "pipe.yml"
    space = {**tiny_space().to_hat_dict(), "encoder-embed-choice": [64, 256]}
    cfg.write_text(yaml.safe_dump({"run-dir": str(t / "run"), **space}))
    return Case(["pipeline", f"--configs={cfg}"], cfg, "encoder-embed-choice has 256")


CASES = [
    pytest.param(f, id=f.__name__)
    for f in (
        preprocess_missing_file,
        preprocess_empty_split,
        preprocess_unknown_yaml_key,
        toy_out_is_a_file,
        train_corrupt_metadata,
        train_metadata_missing_key,
        train_unknown_yaml_key,
        train_torn_checkpoint,
        train_resume_wrong_model_shape,
        train_resume_missing_key,
        train_resume_optimizer_wrong_shape,
        train_resume_optimizer_other_params,
        latency_dataset_other_plan_not_truncated,
        latency_dataset_foreign_file_not_truncated,
        latency_dataset_bad_config_cell,
        latency_dataset_bad_config_id,
        latency_dataset_bad_reference_ms,
        latency_dataset_corrupt_metadata,
        latency_dataset_sub_outside_space,
        predictor_3_rows,
        predictor_7_rows,
        predictor_bad_config_cell,
        predictor_config_cell_missing_keys,
        predictor_non_numeric_reference_ms,
        predictor_non_numeric_latency,
        predictor_missing_column,
        predictor_no_rows,
        predict_with_predictor_missing_keys,
        search_supernet_missing_key,
        search_supernet_wrong_shape,
        search_supernet_torn,
        search_predictor_missing_key,
        search_predictor_wrong_shape,
        search_corrupt_metadata,
        search_space_of_another_supernet,
        generate_supernet_wrong_shape,
        generate_compact_missing_key,
        generate_trained_sub_wrong_shape,
        generate_corrupt_metadata,
        generate_missing_split,
        generate_sub_outside_space,
        profile_compact_wrong_shape,
        profile_compact_missing_key,
        profile_missing_file,
        quantize_trained_sub_missing_key,
        quantize_compact_wrong_shape,
        export_onnx_trained_sub_wrong_shape,
        export_onnx_trained_sub_missing_key,
        average_different_shapes,
        average_torn_checkpoint,
        convert_not_a_hat_checkpoint,
        convert_missing_file,
        download_missing_source,
        download_corrupt_sha256_record,
        pipeline_unknown_yaml_key,
        pipeline_choice_outside_space,
    )
]


def digests(*roots: Path) -> dict[Path, str]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_table_covers_every_command():
    from hat.cli import COMMANDS

    names = {p.values[0].__name__ for p in CASES}
    prefixes = {c.replace("-", "_").replace("latency_predictor", "predict") for c in COMMANDS}
    assert len(CASES) >= 30
    assert all(any(n.startswith(p) for n in names) for p in prefixes), prefixes


@pytest.mark.parametrize("make", CASES)
def test_bad_input_is_one_line_and_changes_nothing(
    make: Callable[[Fx, Path], Case], fx: Fx, tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    case = make(fx, tmp_path)
    before = digests(tmp_path, fx.root)
    capsys.readouterr()
    try:
        code = main(case.argv)
    except SystemExit as e:  # argparse's own exits would land here
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if case.log_ok:
        lines = [line for line in lines if not LOG_LINE.match(line)]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert case.file.name in lines[0], (case.file.name, lines[0])
    assert case.reason in lines[0], (case.reason, lines[0])
    after = digests(tmp_path, fx.root)
    assert {p: after.get(p) for p in before} == before, "an input file changed"

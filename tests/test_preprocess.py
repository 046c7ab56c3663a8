"""`hat preprocess`: binarized layout, round trips, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TOY_TASK, assert_one_line_error, run_cli, write_parallel

from hat.data.dataset import DataDir
from hat.data.preprocess import preprocess
from hat.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from hat.errors import HatError


def test_layout_metadata_and_mmap(toy_bin: Path, toy_raw: Path):
    meta = json.loads((toy_bin / "metadata.json").read_text())
    assert meta["source_lang"] == "en" and meta["target_lang"] == "de"
    assert meta["special_ids"] == {"bos": BOS_ID, "pad": PAD_ID, "eos": EOS_ID, "unk": UNK_ID}
    assert {s: meta["splits"][s]["pairs"] for s in ("train", "valid", "test")} == TOY_TASK
    assert meta["sentencepiece"]["model_type"] == "bpe" and meta["vocab_size"] == 600
    pieces = (toy_bin / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and len(pieces) == 600
    data = DataDir(toy_bin)
    train = data.split("train")
    assert isinstance(train.src.tokens, np.memmap)
    assert train.src.tokens.dtype == np.uint16
    assert train.src.sizes.sum() == meta["splits"]["train"]["source_tokens"]
    assert len(train) == TOY_TASK["train"]
    assert not list(toy_bin.parent.glob(".*.tmp"))  # no temp dir left behind


def test_detokenized_round_trip(toy_bin: Path, toy_raw: Path):
    data = DataDir(toy_bin)
    for split in ("train", "test"):
        ds = data.split(split)
        lines = (toy_raw / f"{split}.de").read_text(encoding="utf-8").splitlines()
        decoded = data.tokenizer.decode([ds.tgt[i] for i in range(len(ds))])
        assert decoded == lines
    # encode -> decode on unseen normal text, specials dropped when decoding
    tok = data.tokenizer
    text = "Der Hund, der schläft, sieht 42 Katzen."
    ids = tok.encode([text])[0]
    assert tok.decode([[BOS_ID] + ids + [EOS_ID, PAD_ID, PAD_ID]]) == [text]


def test_skipped_empty_lines_and_extra_splits(tmp_path: Path):
    pairs = [(f"the dog {i} sleeps .", f"der Hund {i} schläft .") for i in range(60)]
    pairs[5] = ("", "leer")
    pairs[9] = ("only source", "   ")
    write_parallel(tmp_path / "raw" / "train", pairs)
    write_parallel(tmp_path / "raw" / "t1", pairs[:10])
    write_parallel(tmp_path / "raw" / "t2", pairs[10:15])
    meta = preprocess(
        "en",
        "de",
        str(tmp_path / "raw/train"),
        tmp_path / "bin",
        vocab_size=320,
        testpref=f"{tmp_path}/raw/t1,{tmp_path}/raw/t2",
    )
    assert meta["splits"]["train"]["pairs"] == 58
    assert meta["splits"]["train"]["skipped_lines"] == 2
    assert meta["splits"]["train"]["skipped_line_numbers"] == [6, 10]
    assert meta["splits"]["test"]["pairs"] == 8 and meta["splits"]["test1"]["pairs"] == 5


def test_refuses_existing_destdir_then_overwrites(tmp_path: Path):
    pairs = [(f"a cat {i} .", f"eine Katze {i} .") for i in range(50)]
    write_parallel(tmp_path / "raw" / "train", pairs)
    dest = tmp_path / "bin"
    preprocess("en", "de", str(tmp_path / "raw/train"), dest, vocab_size=300)
    with pytest.raises(HatError, match="--overwrite"):
        preprocess("en", "de", str(tmp_path / "raw/train"), dest, vocab_size=300)
    meta = preprocess("en", "de", str(tmp_path / "raw/train"), dest, vocab_size=301, overwrite=True)
    assert meta["vocab_size"] == 301
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "raw"]


def test_multi30k(shared_data: Path, tmp_path: Path):
    m = shared_data / "multi30k"
    meta = preprocess(
        "en",
        "de",
        str(m / "train"),
        tmp_path / "bin",
        validpref=str(m / "val"),
        testpref=str(m / "test_2016_flickr"),
        vocab_size=8000,
    )
    assert [meta["splits"][s]["pairs"] for s in ("train", "valid", "test")] == [29000, 1014, 1000]
    data = DataDir(tmp_path / "bin")
    test = data.split("test")
    lines = (m / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    decoded = data.tokenizer.decode([test.src[i] for i in range(len(test))])
    assert decoded == [" ".join(line.split()) for line in lines]  # up to whitespace runs


# --- bad input: one line on stderr, exit code 2, nothing written ------------------------


def _cli(tmp_path: Path, *extra: str):
    return run_cli(
        "preprocess",
        "-s",
        "en",
        "-t",
        "de",
        "--trainpref",
        str(tmp_path / "train"),
        "--destdir",
        str(tmp_path / "bin"),
        "--vocab-size",
        "300",
        *extra,
    )


def test_mismatched_line_counts(tmp_path: Path):
    write_parallel(tmp_path / "train", [(f"a {i}", f"b {i}") for i in range(30)])
    with open(tmp_path / "train.de", "a", encoding="utf-8") as f:
        f.write("one more\n")
    result = _cli(tmp_path)
    assert_one_line_error(result, "train.en has 30 lines", "train.de has 31", "train.de:31")
    assert not (tmp_path / "bin").exists()


def test_non_utf8_names_file_and_line(tmp_path: Path):
    write_parallel(tmp_path / "train", [(f"a {i}", f"b {i}") for i in range(30)])
    with open(tmp_path / "train.en", "ab") as f:
        f.write("caf\u00e9 latin1\n".encode("latin-1"))
    with open(tmp_path / "train.de", "a", encoding="utf-8") as f:
        f.write("x\n")
    assert_one_line_error(_cli(tmp_path), "train.en:31", "UTF-8")


def test_empty_and_missing_files(tmp_path: Path):
    (tmp_path / "train.en").write_text("")
    (tmp_path / "train.de").write_text("x\n")
    assert_one_line_error(_cli(tmp_path), "train.en", "empty")
    assert_one_line_error(
        _cli(tmp_path, "--validpref", str(tmp_path / "nope")), "not found", "nope.en"
    )


def test_vocab_size_out_of_range_is_a_clear_error(tmp_path: Path):
    write_parallel(tmp_path / "train", [("a b c", "d e f")] * 20)
    assert_one_line_error(
        _cli(tmp_path, "--vocab-size", "5000"), "--vocab-size 5000 is too large", after_log=True
    )
    assert_one_line_error(
        _cli(tmp_path, "--vocab-size", "100"), "--vocab-size 100 is too small", after_log=True
    )


def test_top_level_script_with_configs(tmp_path: Path, toy_raw: Path):
    cfg = tmp_path / "pre.yml"
    cfg.write_text(
        f"source-lang: en\ntarget-lang: de\ntrainpref: {toy_raw}/train\n"
        f"validpref: {toy_raw}/valid\ndestdir: {tmp_path}/bin\nvocab-size: 300\n"
    )
    result = run_cli(f"--configs={cfg}", "--vocab-size", "400", script="preprocess.py")
    assert result.returncode == 0, result.stderr
    assert "vocab 400" in result.stdout  # the flag overrides the file
    assert DataDir(tmp_path / "bin").splits == ["train", "valid"]

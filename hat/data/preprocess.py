"""Raw parallel text -> binarized data directory (`hat preprocess`).

Layout of the data directory (see docs/data.md):

    metadata.json            languages, splits, sizes, vocab, sentencepiece settings
    spm.model                joint sentencepiece model (special ids in hat.data.tokenizer)
    vocab.txt                one piece per line, line i = id i
    {split}.{lang}.tokens.npy    all token ids of the split, concatenated (no </s>)
    {split}.{lang}.offsets.npy   int64, sentence i = tokens[offsets[i]:offsets[i+1]]

The directory is built in a temp folder and renamed into place when complete.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hat import __version__
from hat.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, train_sentencepiece
from hat.errors import HatError
from hat.fsutil import atomic_directory, atomic_write

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
ENCODE_CHUNK = 20_000


@dataclass
class ParallelText:
    """The usable sentence pairs of one split, and what was skipped."""

    source_file: str
    target_file: str
    source: list[str]
    target: list[str]
    lines: int
    skipped_lines: list[int] = field(default_factory=list)  # 1-based, pairs with an empty side


def read_text_lines(path: Path) -> list[str]:
    """All lines of a UTF-8 file; errors name the file and line."""
    if not path.is_file():
        raise HatError(f"input file not found: {path}")
    data = path.read_bytes()
    if not data.strip():
        raise HatError(f"{path}: file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise HatError(
            f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start}); "
            f"convert the file, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    lines = text.split("\n")  # not splitlines(): U+2028 and friends are not line breaks here
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_parallel(source_file: Path, target_file: Path) -> ParallelText:
    """Read a line-aligned pair of files; pairs with an empty side are skipped and counted."""
    src, tgt = read_text_lines(source_file), read_text_lines(target_file)
    if len(src) != len(tgt):
        longer = source_file if len(src) > len(tgt) else target_file
        raise HatError(
            f"{source_file} has {len(src)} lines but {target_file} has {len(tgt)}; "
            f"the sides must be line-aligned ({longer}:{min(len(src), len(tgt)) + 1} "
            f"has no partner)"
        )
    pt = ParallelText(str(source_file), str(target_file), [], [], lines=len(src))
    for i, (s, t) in enumerate(zip(src, tgt, strict=False), start=1):
        if s.strip() and t.strip():
            pt.source.append(s)
            pt.target.append(t)
        else:
            pt.skipped_lines.append(i)
    if not pt.source:
        raise HatError(f"{source_file} and {target_file} have no pair with text on both sides")
    return pt


def split_prefixes(trainpref: str, validpref: str | None, testpref: str | None) -> dict[str, str]:
    """fairseq naming: comma-separated prefixes become valid, valid1, ... and test, test1, ..."""
    splits = {"train": trainpref}
    for name, prefixes in (("valid", validpref), ("test", testpref)):
        for k, prefix in enumerate(p for p in (prefixes or "").split(",") if p):
            splits[name if k == 0 else f"{name}{k}"] = prefix
    return splits


def _binarize(
    tokenizer: Tokenizer, lines: list[str], desc: str, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    chunks, lengths = [], []
    with tqdm(total=len(lines), desc=desc, unit=" lines", disable=None, leave=False) as bar:
        for start in range(0, len(lines), ENCODE_CHUNK):
            ids = tokenizer.encode(lines[start : start + ENCODE_CHUNK], threads=threads)
            lengths.extend(map(len, ids))
            chunks.append(np.fromiter((t for seq in ids for t in seq), dtype=dtype))
            bar.update(len(ids))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.concatenate(chunks), offsets


def preprocess(
    source_lang: str,
    target_lang: str,
    trainpref: str,
    destdir: str | Path,
    validpref: str | None = None,
    testpref: str | None = None,
    vocab_size: int = 8000,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    normalization: str = "nmt_nfkc",
    split_digits: bool = True,
    spm_max_sentences: int = 2_000_000,
    threads: int = 1,
    seed: int = 1,
    overwrite: bool = False,
) -> dict:
    """Train a joint sentencepiece model on the training split and binarize every split.

    Returns the metadata written to `destdir/metadata.json`.
    """
    start = time.time()
    destdir = Path(destdir)
    if destdir.exists() and any(destdir.iterdir()) and not overwrite:
        raise HatError(f"{destdir} already exists and is not empty; pass --overwrite to replace it")
    if source_lang == target_lang:
        raise HatError(f"--source-lang and --target-lang are both '{source_lang}'")
    prefixes = split_prefixes(trainpref, validpref, testpref)
    for prefix in prefixes.values():  # fail on a missing file before any slow work
        for lang in (source_lang, target_lang):
            if not Path(f"{prefix}.{lang}").is_file():
                raise HatError(f"input file not found: {prefix}.{lang}")
    texts = {
        name: read_parallel(Path(f"{p}.{source_lang}"), Path(f"{p}.{target_lang}"))
        for name, p in prefixes.items()
    }

    train = texts["train"]
    log.info(
        "training a joint %s sentencepiece model (vocab %d) on %d train pairs",
        model_type,
        vocab_size,
        len(train.source),
    )
    proto = train_sentencepiece(
        (s for pair in zip(train.source, train.target, strict=False) for s in pair),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        normalization=normalization,
        split_digits=split_digits,
        max_sentences=spm_max_sentences,
        threads=threads,
        seed=seed,
    )
    tokenizer = Tokenizer(proto)

    metadata = {
        "format_version": FORMAT_VERSION,
        "created_by": f"hat {__version__}",
        "source_lang": source_lang,
        "target_lang": target_lang,
        "vocab_size": tokenizer.vocab_size,
        "special_ids": {"bos": BOS_ID, "pad": PAD_ID, "eos": EOS_ID, "unk": UNK_ID},
        "tokens_include_eos": False,
        "sentencepiece": {
            "model_type": model_type,
            "vocab_size": vocab_size,
            "character_coverage": character_coverage,
            "normalization": normalization,
            "split_digits": split_digits,
            "byte_fallback": True,
            "max_sentences": spm_max_sentences,
            "seed": seed,
            "trained_on": "train source + target",
        },
        "splits": {},
    }
    with atomic_directory(destdir, overwrite=overwrite) as tmp:
        (tmp / "spm.model").write_bytes(proto)
        (tmp / "vocab.txt").write_text(
            "".join(p + "\n" for p in tokenizer.pieces()), encoding="utf-8"
        )
        for name, text in texts.items():
            info = {
                "source_file": text.source_file,
                "target_file": text.target_file,
                "lines": text.lines,
                "pairs": len(text.source),
                "skipped_lines": len(text.skipped_lines),
                "skipped_line_numbers": text.skipped_lines[:100],
            }
            for lang, lines in ((source_lang, text.source), (target_lang, text.target)):
                tokens, offsets = _binarize(tokenizer, lines, f"{name}.{lang}", threads)
                np.save(tmp / f"{name}.{lang}.tokens.npy", tokens)
                np.save(tmp / f"{name}.{lang}.offsets.npy", offsets)
                side = "source" if lang == source_lang else "target"
                info[f"{side}_tokens"] = int(len(tokens))
                info[f"{side}_max_len"] = int(np.diff(offsets).max())
            metadata["splits"][name] = info
            if text.skipped_lines:
                log.warning(
                    "%s: skipped %d of %d lines with an empty side (first: line %d)",
                    name,
                    len(text.skipped_lines),
                    text.lines,
                    text.skipped_lines[0],
                )
        metadata["seconds"] = round(time.time() - start, 2)
        with atomic_write(tmp / "metadata.json") as f:
            json.dump(metadata, f, indent=2, ensure_ascii=False)
    return metadata


def format_summary(metadata: dict, destdir: str | Path) -> str:
    """A small table of the splits for the terminal."""
    src, tgt = metadata["source_lang"], metadata["target_lang"]
    rows = [f"{'split':<8} {'pairs':>9} {'skipped':>8} {src + ' tokens':>11} {tgt + ' tokens':>11}"]
    for name, s in metadata["splits"].items():
        rows.append(
            f"{name:<8} {s['pairs']:>9,} {s['skipped_lines']:>8,} "
            f"{s['source_tokens']:>11,} {s['target_tokens']:>11,}"
        )
    rows.append(
        f"vocab {metadata['vocab_size']:,} ({metadata['sentencepiece']['model_type']}, joint) "
        f"-> {destdir}  [{metadata['seconds']:.1f} s]"
    )
    return "\n".join(rows)

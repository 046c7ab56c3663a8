"""Binarized parallel data: memory-mapped token arrays and padded batches."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hat.data.preprocess import FORMAT_VERSION
from hat.data.tokenizer import EOS_ID, PAD_ID, Tokenizer
from hat.errors import HatError
from hat.fsutil import file_sha256, json_sha256


class TokenArray:
    """A ragged array of sentences: `tokens[offsets[i]:offsets[i+1]]` is sentence i."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray):
        self.tokens, self.offsets = tokens, offsets
        self.sizes = np.diff(offsets)

    @classmethod
    def load(cls, prefix: Path) -> TokenArray:
        """Memory-map `{prefix}.tokens.npy` and `{prefix}.offsets.npy`."""
        try:
            return cls(
                np.load(f"{prefix}.tokens.npy", mmap_mode="r"),
                np.load(f"{prefix}.offsets.npy", mmap_mode="r"),
            )
        except (OSError, ValueError) as e:
            raise HatError(
                f"cannot read binarized data {prefix}.*.npy: {e}; re-run `hat preprocess`"
            ) from None

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


@dataclass
class Batch:
    """Right-padded tensors of one batch (decoder input starts with </s>, as fairseq)."""

    indices: torch.Tensor  # (B,) sentence ids within the split
    src_tokens: torch.Tensor  # (B, S) source + </s>
    src_lengths: torch.Tensor  # (B,)
    prev_output_tokens: torch.Tensor  # (B, T) </s> + target
    target: torch.Tensor  # (B, T) target + </s>
    ntokens: int  # non-pad target tokens

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.indices,
            self.src_tokens.to(device),
            self.src_lengths.to(device),
            self.prev_output_tokens.to(device),
            self.target.to(device),
            self.ntokens,
        )

    def __len__(self) -> int:
        return len(self.indices)


def _pad(
    seqs: list[np.ndarray], prepend: int | None = None, append: int | None = None
) -> torch.Tensor:
    start = int(prepend is not None)
    out = np.full(
        (len(seqs), max(len(s) for s in seqs) + start + (append is not None)), PAD_ID, np.int64
    )
    if prepend is not None:
        out[:, 0] = prepend
    for row, seq in enumerate(seqs):
        out[row, start : start + len(seq)] = seq
        if append is not None:
            out[row, start + len(seq)] = append
    return torch.from_numpy(out)


class ParallelDataset:
    """One split of a data directory; sizes include the </s> the model sees."""

    def __init__(self, src: TokenArray, tgt: TokenArray):
        if len(src) != len(tgt):
            raise HatError(
                f"source has {len(src)} sentences but target has {len(tgt)}; "
                "re-run `hat preprocess`"
            )
        self.src, self.tgt = src, tgt
        self.src_sizes = src.sizes + 1
        self.tgt_sizes = tgt.sizes + 1

    def __len__(self) -> int:
        return len(self.src)

    def collate(self, indices: Sequence[int]) -> Batch:
        """Pad the pairs `indices` into a :class:`Batch`."""
        src = [self.src[i] for i in indices]
        tgt = [self.tgt[i] for i in indices]
        target = _pad(tgt, append=EOS_ID)
        return Batch(
            indices=torch.as_tensor(np.asarray(indices, dtype=np.int64)),
            src_tokens=_pad(src, append=EOS_ID),
            src_lengths=torch.as_tensor([len(s) + 1 for s in src]),
            prev_output_tokens=_pad(tgt, prepend=EOS_ID),
            target=target,
            ntokens=int((target != PAD_ID).sum()),
        )


def _read_metadata(meta_file: Path) -> dict:
    """metadata.json of a data directory; a damaged file raises HatError naming it."""
    fix = "re-run `hat preprocess` (or restore the file)"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HatError(f"{meta_file} is not valid JSON ({e}); {fix}") from None
    if not isinstance(meta, dict):
        raise HatError(f"{meta_file} is not valid JSON metadata (a {type(meta).__name__}); {fix}")
    if "format_version" not in meta:
        return meta  # an older format: the version check names it
    missing = [k for k in ("source_lang", "target_lang", "vocab_size", "splits") if k not in meta]
    if missing:
        raise HatError(f"{meta_file} lacks {', '.join(missing)}; {fix}")
    if not isinstance(meta["vocab_size"], int) or not isinstance(meta["splits"], (dict, list)):
        raise HatError(f"{meta_file}: vocab_size or splits has the wrong type; {fix}")
    return meta


class DataDir:
    """A directory written by `hat preprocess`: metadata, tokenizer and splits."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_file = self.path / "metadata.json"
        if not meta_file.is_file():
            raise HatError(
                f"{self.path} is not a hat data directory (no metadata.json); "
                f"create it with `hat preprocess`"
            )
        self.metadata = _read_metadata(meta_file)
        if self.metadata.get("format_version") != FORMAT_VERSION:
            raise HatError(
                f"{self.path}: data format version {self.metadata.get('format_version')} "
                f"is not {FORMAT_VERSION}; re-run `hat preprocess`"
            )
        self.source_lang = self.metadata["source_lang"]
        self.target_lang = self.metadata["target_lang"]
        self.vocab_size = self.metadata["vocab_size"]
        self._tokenizer: Tokenizer | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_file(self.path / "spm.model")
        return self._tokenizer

    @property
    def splits(self) -> list[str]:
        return list(self.metadata["splits"])

    def split_files(self, name: str) -> list[Path]:
        """The token and offset arrays of split `name` (what its contents are made of)."""
        return [
            self.path / f"{name}.{lang}.{part}.npy"
            for lang in (self.source_lang, self.target_lang)
            for part in ("tokens", "offsets")
        ]

    def content_sha256(self, *splits: str) -> str:
        """The identity of what a model trained on `splits` sees: the tokenizer and those
        splits' token arrays (not where they live, so copies of one dataset agree)."""
        files = [self.path / "spm.model", *(f for s in splits for f in self.split_files(s))]
        return json_sha256([file_sha256(f) for f in files])

    def split(self, name: str) -> ParallelDataset:
        if name not in self.metadata["splits"]:
            raise HatError(f"{self.path} has no split '{name}' (it has: {', '.join(self.splits)})")
        return ParallelDataset(
            TokenArray.load(self.path / f"{name}.{self.source_lang}"),
            TokenArray.load(self.path / f"{name}.{self.target_lang}"),
        )

"""Joint sentencepiece tokenizer with fixed special ids (fairseq's order, so HAT-style
decoders that start from </s> work unchanged):

    <s> = 0 (bos)   <pad> = 1   </s> = 2 (eos, also the decoder's start token)   <unk> = 3
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from hat.errors import HatError

BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
MODEL_TYPES = ("bpe", "unigram")


def train_sentencepiece(
    sentences: Iterable[str],
    vocab_size: int,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    normalization: str = "nmt_nfkc",
    split_digits: bool = True,
    max_sentences: int = 2_000_000,
    threads: int = 1,
    seed: int = 1,
) -> bytes:
    """Train a sentencepiece model on `sentences` and return its serialized proto."""
    if model_type not in MODEL_TYPES:
        raise HatError(
            f"--spm-model-type must be one of {', '.join(MODEL_TYPES)}, got '{model_type}'"
        )
    spm.set_random_generator_seed(seed)
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buffer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            normalization_rule_name=normalization,
            split_digits=split_digits,
            byte_fallback=True,
            bos_id=BOS_ID,
            pad_id=PAD_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:
        too_large = re.search(r"value <= (\d+)", str(e))
        if too_large:
            raise HatError(
                f"--vocab-size {vocab_size} is too large for this training data; "
                f"use at most {too_large.group(1)}"
            ) from None
        too_small = re.search(r"required_chars\. \d+ vs (\d+)", str(e))
        if too_small:
            raise HatError(
                f"--vocab-size {vocab_size} is too small: this data needs at least "
                f"{too_small.group(1)} (256 byte pieces, specials, characters)"
            ) from None
        raise HatError(f"sentencepiece training failed: {str(e).strip()}") from None
    return buffer.getvalue()


class Tokenizer:
    """Text <-> token ids with a sentencepiece model (ids exclude </s>; datasets add it)."""

    def __init__(self, model_proto: bytes):
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        specials = (self.sp.bos_id(), self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id())
        if specials != (BOS_ID, PAD_ID, EOS_ID, UNK_ID):
            raise HatError(
                f"sentencepiece model has special ids (bos, pad, eos, unk) = {specials}; "
                f"hat needs {(BOS_ID, PAD_ID, EOS_ID, UNK_ID)}: re-run `hat preprocess`"
            )

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        p = Path(path)
        if not p.is_file():
            raise HatError(f"sentencepiece model not found: {path}")
        return cls(p.read_bytes())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def pieces(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.vocab_size)]

    def encode(self, lines: Sequence[str], threads: int = 1) -> list[list[int]]:
        return self.sp.encode(list(lines), num_threads=threads)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenize; special tokens (</s>, <pad>, ...) are dropped."""
        return self.sp.decode([[int(t) for t in seq] for seq in ids])

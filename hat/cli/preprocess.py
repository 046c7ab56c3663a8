"""`hat preprocess`: train a joint sentencepiece model on raw parallel text and binarize it.

Files are `{pref}.{lang}`, one sentence per line, like fairseq/HAT:
  hat preprocess --source-lang en --target-lang de --trainpref raw/train \\
      --validpref raw/valid --testpref raw/test --destdir data/binary/toy
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hat.cli import run_command
from hat.cli.parser import HatArgumentParser
from hat.data.preprocess import format_summary, preprocess
from hat.data.tokenizer import MODEL_TYPES


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat preprocess", __doc__)
    p.add_argument("--source-lang", "-s", required=True, help="source language suffix (e.g. en)")
    p.add_argument("--target-lang", "-t", required=True, help="target language suffix (e.g. de)")
    p.add_argument("--trainpref", required=True, help="training files prefix: PREF.src / PREF.tgt")
    p.add_argument(
        "--validpref", help="validation prefix(es), comma-separated (valid, valid1, ...)"
    )
    p.add_argument("--testpref", help="test prefix(es), comma-separated (test, test1, ...)")
    p.add_argument("--destdir", default="data/binary", help="output data directory")
    p.add_argument(
        "--vocab-size", type=int, default=8000, help="joint sentencepiece vocabulary size"
    )
    p.add_argument(
        "--spm-model-type", choices=MODEL_TYPES, default="bpe", help="sentencepiece algorithm"
    )
    p.add_argument(
        "--character-coverage",
        type=float,
        default=1.0,
        help="share of characters covered by the vocabulary (0.9995 for large scripts)",
    )
    p.add_argument(
        "--spm-normalization",
        default="nmt_nfkc",
        choices=("nmt_nfkc", "nfkc", "identity"),
        help="sentencepiece text normalization",
    )
    p.add_argument("--no-split-digits", action="store_true", help="let pieces span several digits")
    p.add_argument(
        "--spm-max-sentences",
        type=int,
        default=2_000_000,
        help="train sentencepiece on at most this many sentences (sampled)",
    )
    p.add_argument("--workers", type=int, default=1, help="threads for sentencepiece")
    p.add_argument("--seed", type=int, default=1, help="sentencepiece sampling seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --destdir")
    return p


def run(args: argparse.Namespace) -> None:
    metadata = preprocess(
        args.source_lang,
        args.target_lang,
        args.trainpref,
        args.destdir,
        validpref=args.validpref,
        testpref=args.testpref,
        vocab_size=args.vocab_size,
        model_type=args.spm_model_type,
        character_coverage=args.character_coverage,
        normalization=args.spm_normalization,
        split_digits=not args.no_split_digits,
        spm_max_sentences=args.spm_max_sentences,
        threads=args.workers,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(format_summary(metadata, args.destdir))


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)

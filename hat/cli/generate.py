"""`hat generate` / generate.py: translate a split with beam search and score BLEU.

  python generate.py --data data/binary/multi30k_en_de --path checkpoints/checkpoint_best.pt \\
      --gen-subset test --beam 5 [--configs SUB.yml] [--scoring sacrebleu|normal] \\
      [--results-path DIR]

--path takes a compact model, a trained SubTransformer, or a SuperTransformer checkpoint
(then --configs SUB.yml picks the SubTransformer, exported with its inherited weights).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

import torch

from hat.cli import run_command
from hat.cli.args import add_arch_args, arch_from_args, arch_given
from hat.cli.parser import HatArgumentParser
from hat.data.dataset import DataDir
from hat.errors import HatError
from hat.evaluate import sacrebleu_score, tokenized_bleu, translate_dataset
from hat.generate import MAX_LEN_A, MAX_LEN_B
from hat.quantize import cpu_only
from hat.train.checkpoints import load_model

log = logging.getLogger(__name__)


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat generate", __doc__, config_options=("--configs", "--sub-configs"))
    p.add_argument("--data", required=True, help="data directory written by `hat preprocess`")
    p.add_argument("--path", required=True, help="checkpoint to translate with")
    p.add_argument("--gen-subset", default="test", help="split to translate")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--lenpen", type=float, default=1.0, help="length penalty")
    p.add_argument(
        "--max-len-a",
        type=float,
        default=MAX_LEN_A,
        help="max output length = a * source + b "
        "(fairseq's and HAT's defaults, so BLEU compares with theirs)",
    )
    p.add_argument("--max-len-b", type=int, default=MAX_LEN_B)
    p.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch")
    p.add_argument(
        "--batch-size", "--max-sentences", type=int, help="accepted for HAT/fairseq habits (unused)"
    )
    p.add_argument(
        "--remove-bpe",
        nargs="?",
        const="sentencepiece",
        help="accepted for HAT/fairseq habits: output is always detokenized",
    )
    p.add_argument(
        "--scoring",
        choices=("sacrebleu", "normal"),
        default="sacrebleu",
        help="sacrebleu on detokenized text, or HAT's 'normal' tokenized BLEU",
    )
    p.add_argument(
        "--compound-split",
        action="store_true",
        help="normal BLEU: split hyphenated compounds (HAT's WMT convention)",
    )
    p.add_argument("--results-path", help="write hypotheses, references and sources here")
    p.add_argument(
        "--cpu", action="store_true", help="translate on the CPU even if CUDA is available"
    )
    p.add_argument("--quiet", action="store_true", help="print only the score")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    add_arch_args(p)
    return p


def run(args: argparse.Namespace) -> None:
    if args.beam < 1:
        raise HatError("--beam must be at least 1")
    data = DataDir(args.data)
    dataset = data.split(args.gen_subset)
    arch = arch_from_args(args) if arch_given(args) else None
    model, payload = load_model(args.path, arch)
    if arch is not None and payload.get("kind") == "subtransformer" and model.arch != arch:
        raise HatError(
            f"{args.path} was trained as a different SubTransformer than --configs describes"
        )
    if model.settings.vocab_size != data.vocab_size:
        raise HatError(
            f"{args.path} has a {model.settings.vocab_size}-token vocabulary but {args.data} has "
            f"{data.vocab_size}: use the data directory the model was trained on"
        )
    on_gpu = torch.cuda.is_available() and not args.cpu
    if on_gpu and cpu_only(payload):
        log.info(
            "%s is an int8 model: its kernels run on the CPU only, translating there", args.path
        )
        on_gpu = False
    device = torch.device("cuda" if on_gpu else "cpu")
    model.to(device)
    out = translate_dataset(
        model,
        dataset,
        data.tokenizer,
        beam=args.beam,
        max_tokens=args.max_tokens,
        len_penalty=args.lenpen,
        max_len_a=args.max_len_a,
        max_len_b=args.max_len_b,
        device=device,
        progress=not args.quiet,
    )
    if args.scoring == "sacrebleu":
        score, name = sacrebleu_score(out.hypotheses, out.references), "SacreBLEU"
    else:
        score = tokenized_bleu(out.hypotheses, out.references, compound_split=args.compound_split)
        name = "BLEU (tokenized" + (", compound split)" if args.compound_split else ")")
    if args.results_path:
        out.write(args.results_path, args.gen_subset, data.source_lang, data.target_lang)
    if not args.quiet:
        for src, hyp, ref in list(zip(out.sources, out.hypotheses, out.references, strict=False))[
            :3
        ]:
            print(f"S\t{src}\nT\t{ref}\nH\t{hyp}")
    print(
        f"{name} = {score:.2f}  ({args.gen_subset}: {len(dataset)} sentences, beam {args.beam}, "
        f"lenpen {args.lenpen}, {out.seconds:.1f} s: {out.sentences_per_second:.1f} sentences/s, "
        f"{out.tokens_per_second:.0f} tokens/s)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "bleu": score,
                    "scoring": args.scoring,
                    "subset": args.gen_subset,
                    "sentences": len(dataset),
                    "seconds": out.seconds,
                    "sentences_per_second": out.sentences_per_second,
                    "tokens_per_second": out.tokens_per_second,
                }
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)

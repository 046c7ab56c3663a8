"""`hat <command>`: one module per command in this package."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from hat.errors import HatError

COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": (
        "hat.cli.pipeline",
        "the whole HAT method on this machine, from one YAML, with a report",
    ),
    "toy": ("hat.cli.toy", "write the embedded toy translation task as raw parallel text"),
    "preprocess": (
        "hat.cli.preprocess",
        "train a joint sentencepiece model and binarize parallel text",
    ),
    "train": ("hat.cli.train", "train a SuperTransformer, or a SubTransformer from scratch"),
    "generate": ("hat.cli.generate", "translate a split with beam search and score BLEU"),
    "average": ("hat.cli.average", "average the weights of the last N checkpoints"),
    "profile": ("hat.cli.profile", "#params, FLOPs and latency of a SubTransformer"),
    "quantize": (
        "hat.cli.quantize",
        "int8 dynamic or k-means (2-8 bit) quantization of a compact model",
    ),
    "export-onnx": (
        "hat.cli.export_onnx",
        "export a compact model to ONNX (encoder + cached decoder step)",
    ),
    "download": ("hat.cli.download", "download HAT's released models (resumable, sha256-checked)"),
    "convert": (
        "hat.cli.convert",
        "import a HAT (fairseq) checkpoint as a hat SuperTransformer / compact model",
    ),
    "latency-dataset": (
        "hat.cli.latency_dataset",
        "time sampled SubTransformers on this device (CSV)",
    ),
    "latency-predictor": (
        "hat.cli.latency_predictor",
        "train / evaluate / query a latency predictor",
    ),
    "search": (
        "hat.cli.search",
        "evolutionary (or Pareto) search for SubTransformers under latency budgets",
    ),
}


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines to stderr as `time | level | message`."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s | %(levelname)s | %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def run_command(parser_factory: Callable, run: Callable, argv: Sequence[str] | None) -> int:
    """Parse `argv` with the command's parser and run it; user errors -> one line, exit 2."""
    try:
        args = parser_factory().parse_args(None if argv is None else list(argv))
        setup_logging()
        run(args)
    except HatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: hat <command> [options]   (hat <command> --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hat` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from hat import __version__

        print(f"hat {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}'; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)

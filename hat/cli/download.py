"""`hat download` / download_model.py: fetch HAT's released models (resumable, sha256-checked).

  python download_model.py --model-name=HAT_wmt14ende_raspberrypi@3.5s_bleu@25.8
  python download_model.py --download-all
  python download_model.py --url URL [--model-name NAME] [--sha256 HEX]

A download is saved only when it has the server's full length, is not an HTML page (a Dropbox
'?dl=0' preview), loads as a HAT checkpoint and matches the expected sha256 (--sha256, the
registry's, or the one recorded on its first download).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hat.cli import run_command
from hat.cli.parser import HatArgumentParser
from hat.errors import HatError
from hat.hub import download, registry


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat download", __doc__)
    p.add_argument(
        "--model-name",
        help="a name from the registry (hat/model_registry.json); "
        "with --url, any plain file name (letters, digits, ._@-)",
    )
    p.add_argument("--download-all", action="store_true", help="every model of the registry")
    p.add_argument(
        "--cache-dir", default="downloaded_models", help="where models go (HAT's default)"
    )
    p.add_argument(
        "--url",
        help="download from this URL (overrides the registry); without "
        "--model-name the file is named after the URL's base name",
    )
    p.add_argument("--sha256", help="expected sha256 (overrides the registry)")
    p.add_argument("--list", action="store_true", help="list the registry")
    return p


def run(args: argparse.Namespace) -> None:
    if args.list:
        for name, entry in registry().items():
            print(f"{name:<48} {entry['kind']:<15} {entry['url'] or '(no URL yet: use --url)'}")
        return
    if args.download_all == bool(args.model_name or args.url):
        raise HatError("give one of --model-name NAME (and/or --url URL) and --download-all")
    if args.download_all and args.sha256:
        raise HatError("--sha256 applies to one model: use it with --model-name or --url")
    names = list(registry()) if args.download_all else [args.model_name]
    for name in names:
        path = download(name, args.cache_dir, url=args.url, sha256=args.sha256)
        print(f"{name or path.stem} -> {path}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)

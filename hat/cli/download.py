"""`hat download` / download_model.py: fetch HAT's released models (resumable, sha256-checked).

  python download_model.py --model-name=HAT_wmt14ende_raspberrypi@3.5s_bleu@25.8 [--url URL]
  python download_model.py --download-all
"""
from __future__ import annotations

import argparse
from typing import Sequence

from hat.cli import run_command
from hat.config import HatArgumentParser
from hat.errors import HatError
from hat.hub import download, registry


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat download", __doc__)
    p.add_argument("--model-name", help="a name from the registry (hat/model_registry.json)")
    p.add_argument("--download-all", action="store_true", help="every model of the registry")
    p.add_argument("--cache-dir", default="downloaded_models", help="where models go (HAT's default)")
    p.add_argument("--url", help="download from this URL (overrides the registry)")
    p.add_argument("--sha256", help="expected sha256 (overrides the registry)")
    p.add_argument("--list", action="store_true", help="list the registry")
    return p


def run(args: argparse.Namespace) -> None:
    if args.list:
        for name, entry in registry().items():
            print(f"{name:<48} {entry['kind']:<15} {entry['url'] or '(no URL yet: use --url)'}")
        return
    if args.download_all == bool(args.model_name):
        raise HatError("give exactly one of --model-name NAME and --download-all")
    names = list(registry()) if args.download_all else [args.model_name]
    for name in names:
        path = download(name, args.cache_dir, url=args.url, sha256=args.sha256)
        print(f"{name} -> {path}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)

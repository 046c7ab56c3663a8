"""HAT-style entry point: `python evo_search.py --configs=... --evo-configs=...`, the same as
`hat search ...`."""

from hat.cli.search import main

if __name__ == "__main__":
    raise SystemExit(main())

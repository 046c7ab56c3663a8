"""HAT-style entry point: `python generate.py --configs=...` == `hat generate ...`."""

from hat.cli.generate import main

if __name__ == "__main__":
    raise SystemExit(main())

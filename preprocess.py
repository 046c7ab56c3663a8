"""HAT-style entry point: `python preprocess.py --configs=... ` == `hat preprocess ...`."""

from hat.cli.preprocess import main

if __name__ == "__main__":
    raise SystemExit(main())

"""HAT-style entry point: `python train.py --configs=...` == `hat train ...`."""

from hat.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())

"""HAT-style entry point: `python latency_dataset.py --configs=...` == `hat latency-dataset ...`."""

from hat.cli.latency_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())

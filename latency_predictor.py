"""HAT-style entry point: `python latency_predictor.py --configs=...`, the same as
`hat latency-predictor ...`."""

from hat.cli.latency_predictor import main

if __name__ == "__main__":
    raise SystemExit(main())

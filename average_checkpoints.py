"""HAT-style entry point: `python average_checkpoints.py ...` == `hat average ...`."""

from hat.cli.average import main

if __name__ == "__main__":
    raise SystemExit(main())

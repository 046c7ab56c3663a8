"""HAT-style entry point: `python download_model.py --model-name=...` == `hat download ...`."""

from hat.cli.download import main

if __name__ == "__main__":
    raise SystemExit(main())

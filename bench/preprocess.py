"""Benchmark: toy corpus generation and `hat preprocess` wall time. Prints one JSON object.

python bench/preprocess.py [--multi30k ../shared/data/multi30k]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from hat.data.preprocess import preprocess
from hat.data.toy import write_toy_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--multi30k", default=str(Path(__file__).resolve().parents[2] / "shared/data/multi30k")
    )
    args = p.parse_args()
    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_toy_task(Path(tmp) / "toy", train=50_000, valid=1_000, test=1_000)
        result["runs"]["toy_generate_50k_seconds"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        preprocess(
            "en",
            "de",
            f"{tmp}/toy/train",
            Path(tmp) / "toybin",
            validpref=f"{tmp}/toy/valid",
            testpref=f"{tmp}/toy/test",
            vocab_size=2000,
        )
        result["runs"]["toy_preprocess_seconds"] = round(time.perf_counter() - t, 2)
        m = Path(args.multi30k)
        if (m / "train.en").is_file():
            t = time.perf_counter()
            meta = preprocess(
                "en",
                "de",
                str(m / "train"),
                Path(tmp) / "m30k",
                validpref=str(m / "val"),
                testpref=str(m / "test_2016_flickr"),
                vocab_size=8000,
            )
            result["runs"]["multi30k_preprocess_seconds"] = round(time.perf_counter() - t, 2)
            result["runs"]["multi30k_pairs"] = {k: v["pairs"] for k, v in meta["splits"].items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

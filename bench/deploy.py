"""Benchmark: one trained model deployed four ways. Prints one JSON line per runtime.

fp32 PyTorch, int8 dynamic (torch.ao), 4-bit k-means (dequantized fp32), onnxruntime fp32:
weights' size in bytes, SacreBLEU on a split (beam 5), and CPU latency with the HAT protocol
(one sentence of --sentence-length tokens, beam 5). Latencies of the runtimes are measured
in interleaved rounds, and each figure is the median of the rounds' trimmed means.

    python bench/deploy.py --path runs/m30k_base/checkpoint_best.pt --data data/binary/multi30k_en_de
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from hat.data.dataset import DataDir
from hat.evaluate import translate_dataset
from hat.latency.measure import measure_latency
from hat.onnx_export import OnnxTransformer, export_onnx
from hat.quantize import save_quantized, storage_bytes
from hat.train.checkpoints import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--path", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--gen-subset", default="test")
    p.add_argument("--sentence-length", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--latiter", type=int, default=10)
    args = p.parse_args()
    model, _ = load_model(args.path)
    data = DataDir(args.data)
    split = data.split(args.gen_subset)
    tmp = Path(tempfile.mkdtemp())
    models, sizes = {"fp32": model}, {"fp32": sum(t.numel() * t.element_size() for t in model.state_dict().values())}
    for name, method, bits in (("int8", "int8", 8), ("kmeans4", "kmeans", 4)):
        saved = save_quantized(model, tmp / f"{name}.pt", method, bits)
        sizes[name] = storage_bytes(saved["tensors"])
        models[name] = load_model(tmp / f"{name}.pt")[0]
    models["onnxruntime"] = OnnxTransformer(export_onnx(model, tmp / "onnx"))
    sizes["onnxruntime"] = sum(f.stat().st_size for f in (tmp / "onnx").glob("*.onnx"))
    latency = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, m in models.items():
            latency[name].append(measure_latency(m, args.sentence_length, 5, iters=args.latiter, warmup=3).total_ms)
    for name, m in models.items():
        bleu = translate_dataset(m, split, data.tokenizer, beam=5).sacrebleu
        print(json.dumps({"runtime": name, "weights_bytes": sizes[name], "size_ratio_vs_fp32": sizes["fp32"] / sizes[name],
                          "sacrebleu": bleu, "latency_ms": statistics.median(latency[name]),
                          "speedup_vs_fp32": statistics.median(latency["fp32"]) / statistics.median(latency[name]),
                          "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()

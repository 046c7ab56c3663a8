"""Benchmark: one trained model deployed several ways. Prints one JSON line per runtime.

Runtimes: fp32 PyTorch; int8 as stored (per-row int8 weights and scales run by torch.ao's
per-channel dynamic int8 linears: what `hat quantize --method int8` ships); int8 as the old
loader ran it (the stored weights dequantized and re-quantized per tensor by
`torch.ao.quantization.quantize_dynamic`); int8 as stored on torchao (`Int8Tensor` weights,
the `Int8DynamicActivationInt8WeightConfig` path, when torchao is installed); 4-bit k-means
(dequantized fp32); onnxruntime fp32 from the legacy TorchScript exporter (hat's default) and
from the dynamo (torch.export) exporter.

Per runtime: weights' size in bytes; whether the running weights are bit for bit the stored
int8 values and scales (int8 runtimes); the max |log-prob| difference from PyTorch fp32 and
the export time (onnxruntime); SacreBLEU on a split (beam 5) and how many translations equal
fp32's; CPU latency with the HAT protocol (one sentence of --sentence-length tokens, beam 5);
batch throughput (the first --throughput-sentences sentences of the split, beam 5, sentences
per second). Latency and throughput are measured in interleaved rounds; each figure is the
median over the rounds (of the rounds' trimmed means for latency). onnxruntime gets as many
intra-op threads as torch (`OMP_NUM_THREADS`, `torch.get_num_threads()`).

    python bench/deploy.py --path runs/m30k_base/checkpoint_best.pt \
        --data data/binary/multi30k_en_de
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hat.cli.export_onnx import max_logprob_difference
from hat.data.dataset import DataDir, ParallelDataset, TokenArray
from hat.evaluate import translate_dataset
from hat.latency.measure import measure_latency
from hat.onnx_export import OnnxTransformer, export_onnx
from hat.quantize import dequantize_state, save_quantized, storage_bytes
from hat.train.checkpoints import load_model
from hat.transformer import Transformer


def first(split: ParallelDataset, n: int) -> ParallelDataset:
    """The first `n` pairs of `split`."""
    n = min(n, len(split))
    return ParallelDataset(
        TokenArray(split.src.tokens, split.src.offsets[: n + 1]),
        TokenArray(split.tgt.tokens, split.tgt.offsets[: n + 1]),
    )


def stored_weight(tensors: dict[str, Any], name: str, in_features: int) -> dict[str, torch.Tensor]:
    """The stored int8 weights and row scales of linear layer `name` (the output projection
    reads the tied table's first `in_features` columns)."""
    if name == "output_projection":
        table = tensors["embed_tokens.weight"]
        return {"int8": table["int8"][:, :in_features], "scale": table["scale"]}
    return tensors[f"{name}.weight"]


def runs_stored_int8(model: nn.Module, tensors: dict[str, Any]) -> bool:
    """True when every int8 linear of `model` holds exactly the stored int8 values and scales."""
    found = 0
    for name, m in model.named_modules():
        if isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
            w = m.weight()
            if w.qscheme() != torch.per_channel_affine:
                return False
            int8, scale = w.int_repr(), w.q_per_channel_scales().float()
        elif type(getattr(m, "weight", None)).__name__ == "Int8Tensor":
            int8, scale = m.weight.qdata, m.weight.scale.flatten()
        else:
            continue
        found += 1
        stored = stored_weight(tensors, name, int8.shape[1])
        if not (torch.equal(int8, stored["int8"]) and torch.equal(scale, stored["scale"])):
            return False
    return found > 0


def old_int8(dequantized: Transformer) -> nn.Module:
    """What the loader did before: re-quantize the dequantized weights per tensor."""
    q = copy.deepcopy(dequantized).eval()
    q.untie_output_projection()
    with warnings.catch_warnings():  # the deprecated API under comparison; its notice is known
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(q, {nn.Linear}, dtype=torch.qint8)


def torchao_int8(dequantized: Transformer, tensors: dict[str, Any]) -> nn.Module:
    """The stored int8 weights and row scales on torchao (dynamic int8 activations)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    q = copy.deepcopy(dequantized).eval()
    q.untie_output_projection()
    quantize_(q, Int8DynamicActivationInt8WeightConfig())
    for name, m in q.named_modules():
        if isinstance(m, nn.Linear):  # torchao's own per-row int8 values -> the stored ones
            stored = stored_weight(tensors, name, m.in_features)
            m.weight.qdata = stored["int8"].contiguous()
            m.weight.scale = stored["scale"][:, None].clone()
    return q


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--path", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--gen-subset", default="test")
    p.add_argument("--sentence-length", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--latiter", type=int, default=10)
    p.add_argument("--throughput-sentences", type=int, default=200)
    p.add_argument("--throughput-rounds", type=int, default=3)
    p.add_argument("--bleu-sentences", type=int, default=0, help="BLEU on the first N (0: all)")
    args = p.parse_args()
    model, _ = load_model(args.path)
    data = DataDir(args.data)
    split = data.split(args.gen_subset)
    if args.bleu_sentences:
        split = first(split, args.bleu_sentences)
    tmp = Path(tempfile.mkdtemp())
    fp32 = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    models: dict[str, Any] = {"fp32": model}
    info: dict[str, dict[str, Any]] = {"fp32": {"weights_bytes": fp32}}
    int8 = save_quantized(model, tmp / "int8.pt", "int8")["tensors"]
    dequantized = copy.deepcopy(model)
    dequantized.load_state_dict(dequantize_state(int8))
    builders = {
        "int8": lambda: load_model(tmp / "int8.pt")[0],
        "int8-old-per-tensor": lambda: old_int8(dequantized),
    }
    if importlib.util.find_spec("torchao"):
        builders["int8-torchao"] = lambda: torchao_int8(dequantized, int8)
    for name, build in builders.items():
        models[name] = build()
        info[name] = {
            "weights_bytes": storage_bytes(int8),
            "runs_stored_int8": runs_stored_int8(models[name], int8),
        }
    kmeans = save_quantized(model, tmp / "kmeans4.pt", "kmeans", 4)["tensors"]
    models["kmeans4"] = load_model(tmp / "kmeans4.pt")[0]
    info["kmeans4"] = {"weights_bytes": storage_bytes(kmeans)}
    for name, dynamo in (("onnxruntime-torchscript", False), ("onnxruntime-dynamo", True)):
        start = time.perf_counter()
        out = export_onnx(model, tmp / name, dynamo=dynamo)
        seconds = time.perf_counter() - start
        models[name] = OnnxTransformer(out, threads=torch.get_num_threads())  # as many as torch
        info[name] = {
            "weights_bytes": sum(f.stat().st_size for f in out.glob("*.onnx")),
            "export_seconds": seconds,
            "max_abs_logprob_diff": max_logprob_difference(model, models[name]),
        }
    subset = first(split, args.throughput_sentences)
    latency: dict[str, list[float]] = {name: [] for name in models}
    throughput: dict[str, list[float]] = {name: [] for name in models}
    for r in range(max(args.rounds, args.throughput_rounds)):
        for name, m in models.items():
            if r < args.rounds:
                lat = measure_latency(m, args.sentence_length, 5, iters=args.latiter, warmup=3)
                latency[name].append(lat.total_ms)
            if r < args.throughput_rounds:
                tr = translate_dataset(m, subset, data.tokenizer, beam=5)
                throughput[name].append(len(subset) / tr.seconds)
    reference = None
    for name, m in models.items():
        tr = translate_dataset(m, split, data.tokenizer, beam=5)
        reference = reference or tr.hypotheses
        lat, tput = statistics.median(latency[name]), statistics.median(throughput[name])
        same = sum(a == b for a, b in zip(reference, tr.hypotheses, strict=True))
        row = {
            "runtime": name,
            **info[name],
            "size_ratio_vs_fp32": fp32 / info[name]["weights_bytes"],
            "sacrebleu": tr.sacrebleu,
            "identical_to_fp32": same,
            "sentences": len(split),
            "latency_ms": lat,
            "speedup_vs_fp32": statistics.median(latency["fp32"]) / lat,
            "throughput_sent_per_s": tput,
            "throughput_vs_fp32": tput / statistics.median(throughput["fp32"]),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

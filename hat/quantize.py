"""Quantized SubTransformers: int8 dynamic quantization (torch.ao) and k-means weight
quantization to 2-8 bits with per-layer codebooks (the HAT paper's 4-bit setting).

A quantized checkpoint (`format: hat.quantized`) stores the compact model's config and:
- int8: every weight matrix as int8 with one scale per output row (symmetric), biases and
  norms in fp32. Loading gives every linear layer exactly the stored int8 values and per-row
  scales (a per-channel torch.ao dynamic int8 linear: int8 kernels on the CPU); embedding
  lookups use the table dequantized (int8 * scale).
- kmeans: every weight matrix (embedding table included) as a codebook of 2^bits fp32
  centroids plus the packed b-bit index of each weight; loading dequantizes to fp32.
Either loads with `load_model`, so a quantized model is accepted wherever a compact one is.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hat.checkpoint import save_checkpoint
from hat.errors import HatError
from hat.space import ArchConfig
from hat.transformer import ModelSettings, Transformer

QUANTIZED_FORMAT = "hat.quantized"
METHODS = ("int8", "kmeans")


# --- bit packing ----------------------------------------------------------------------------
def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack integers in [0, 2^bits) into a uint8 stream, `bits` bits each."""
    planes = ((values.astype(np.uint16)[:, None] >> np.arange(bits, dtype=np.uint16)) & 1).astype(
        np.uint8
    )
    return np.packbits(planes.reshape(-1))


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    planes = np.unpackbits(packed)[: count * bits].reshape(count, bits).astype(np.uint16)
    return (planes << np.arange(bits, dtype=np.uint16)).sum(axis=1)


# --- k-means --------------------------------------------------------------------------------
def kmeans_1d(values: torch.Tensor, k: int, iters: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm on scalars: (sorted centroids (k,), index of each value)."""
    x = values.flatten().double()
    centroids = torch.quantile(
        x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:100_000]],
        torch.linspace(0, 1, k, dtype=torch.float64),
    )
    for _ in range(iters):
        centroids = centroids.sort().values
        index = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
        sums = torch.zeros(k, dtype=torch.float64).scatter_add_(0, index, x)
        counts = torch.zeros(k, dtype=torch.float64).scatter_add_(0, index, torch.ones_like(x))
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    centroids = centroids.sort().values
    index = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
    return centroids.float(), index


def _is_matrix(name: str, tensor: torch.Tensor) -> bool:
    return tensor.dim() == 2 and tensor.is_floating_point()


def quantize_state(model: Transformer, method: str, bits: int = 8) -> dict[str, Any]:
    """The compact model's weights in the quantized storage format (matrices quantized)."""
    if method not in METHODS:
        raise HatError(f"--method must be one of {', '.join(METHODS)}, got {method}")
    if method == "kmeans" and not 2 <= bits <= 8:
        raise HatError(f"--bits must be between 2 and 8 for k-means, got {bits}")
    tensors: dict[str, Any] = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        if not _is_matrix(name, t):
            tensors[name] = t.clone()
        elif method == "int8":
            scale = (t.abs().amax(dim=1) / 127).clamp_min(1e-12)
            tensors[name] = {
                "int8": torch.round(t / scale[:, None]).clamp(-127, 127).to(torch.int8),
                "scale": scale,
            }
        else:
            centroids, index = kmeans_1d(t, 2**bits)
            tensors[name] = {
                "codebook": centroids,
                "bits": bits,
                "shape": list(t.shape),
                "packed": torch.from_numpy(pack_bits(index.numpy(), bits)),
            }
    return tensors


def dequantize_state(tensors: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in tensors.items():
        if torch.is_tensor(t):
            out[name] = t
        elif "int8" in t:
            out[name] = t["int8"].float() * t["scale"][:, None]
        else:
            count = int(np.prod(t["shape"]))
            index = torch.from_numpy(
                unpack_bits(t["packed"].numpy(), t["bits"], count).astype(np.int64)
            )
            out[name] = t["codebook"][index].view(t["shape"])
    return out


def storage_bytes(tensors: dict[str, Any]) -> int:
    """Bytes of the stored weights (what the quantization saves)."""
    total = 0
    for t in tensors.values():
        parts = [t] if torch.is_tensor(t) else [v for v in t.values() if torch.is_tensor(v)]
        total += sum(p.numel() * p.element_size() for p in parts)
    return total


def int8_linear(int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A dynamic int8 linear layer (torch.ao, CPU) computing with exactly these int8 weights
    (out, in) and per-output-row fp32 scales (out,): no re-quantization."""
    out_features, in_features = int8.shape
    layer = torch.ao.nn.quantized.dynamic.Linear(
        in_features, out_features, bias_=bias is not None, dtype=torch.qint8
    )
    zero = torch.zeros(out_features, dtype=torch.int64)
    weight = torch._make_per_channel_quantized_tensor(int8.contiguous(), scale.double(), zero, 0)
    layer.set_weight_bias(weight, None if bias is None else bias.detach().float().clone())
    return layer


def int8_linears(model: Transformer, tensors: dict[str, Any]) -> Transformer:
    """`model` (eval mode) with every linear layer, the output projection included, running the
    int8 weights and per-row scales of `tensors` (the int8 storage format); in place."""
    model.untie_output_projection()
    table, dim = tensors["embed_tokens.weight"], model.arch.decoder_embed_dim
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        if name == "output_projection":  # the tied table's first `dim` columns, same row scales
            stored = {"int8": table["int8"][:, :dim], "scale": table["scale"]}
        else:
            stored = tensors[f"{name}.weight"]
        parent, _, attr = name.rpartition(".")
        layer = int8_linear(stored["int8"], stored["scale"], module.bias)
        setattr(model.get_submodule(parent), attr, layer)
    return model.eval()


def dynamic_int8(model: Transformer) -> Transformer:
    """int8 dynamic quantization of every linear layer, the output projection included: the
    model `save_quantized(model, ..., "int8")` stores and `load_quantized` runs."""
    tensors = quantize_state(model, "int8")
    q = copy.deepcopy(model).eval()
    q.load_state_dict(dequantize_state(tensors))
    return int8_linears(q, tensors)


def save_quantized(
    model: Transformer, path: str | Path, method: str, bits: int = 8, spm_model: bytes | None = None
) -> dict[str, Any]:
    tensors = quantize_state(model, method, bits)
    payload = {
        "format": QUANTIZED_FORMAT,
        "version": 1,
        "method": method,
        "bits": 8 if method == "int8" else bits,
        "arch": model.arch.to_dict(),
        "settings": model.settings.to_dict(),
        "tensors": tensors,
        "spm_model": spm_model,
    }
    save_checkpoint(payload, path)
    return payload


def cpu_only(payload: dict[str, Any]) -> bool:
    """True for a checkpoint whose model runs on the CPU alone (torch's int8 dynamic kernels)."""
    return payload.get("format") == QUANTIZED_FORMAT and payload.get("method") == "int8"


def load_quantized(payload: dict[str, Any], path: str | Path) -> Transformer:
    """The model of a hat.quantized payload: k-means dequantized to fp32; int8 with every linear
    layer computing with the stored int8 weights and per-row scales (`int8_linears`)."""
    settings = ModelSettings.from_dict(payload["settings"])
    model = Transformer(ArchConfig.from_dict(payload["arch"]), settings)
    try:
        model.load_state_dict(dequantize_state(payload["tensors"]))
        model.eval()
        return int8_linears(model, payload["tensors"]) if payload["method"] == "int8" else model
    except (RuntimeError, KeyError) as e:
        first = str(e).splitlines()[0]
        raise HatError(
            f"{path}: quantized weights do not match the architecture: {first}"
        ) from None

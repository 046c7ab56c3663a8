"""HAT's released checkpoints: import (fairseq format, without fairseq and without running
pickled code) and download (registry, resumable, sha256-verified).

Import. A HAT checkpoint is a dict with `args` (an argparse.Namespace of HAT's options) and
`model` (a SuperTransformer-shaped fairseq state dict); HAT's SubTransformer checkpoints are
supernet-shaped too. It is unpickled with an allow-list: tensors, storages, OrderedDict,
argparse.Namespace and numpy scalars are rebuilt; any other class named in the file
(fairseq's meters, say) becomes an inert placeholder, and no other callable is ever invoked.
The fairseq keys map to hat's as follows (`{i}`: layer number):

    {enc,dec}oder.embed_tokens.weight                  -> embed_tokens.weight (decoder / shared),
                                                          src_embed_tokens.weight (unshared encoder)
    *.self_attn.in_proj_weight|bias  ([q; k; v] rows) -> *.self_attn.in_proj.weight|bias
    *.self_attn.{q,k,v}_proj.weight|bias              -> concatenated into *.self_attn.in_proj
    decoder.layers.{i}.encoder_attn.in_proj_weight|bias -> ende_attn.q_proj (rows of q), ende_attn.kv_proj (k; v)
    decoder.layers.{i}.encoder_attn.{q,k,v}_proj.*    -> ende_attn.q_proj, ende_attn.kv_proj (k; v)
    *.self_attn.out_proj / encoder_attn.out_proj      -> *.self_attn.out_proj / ende_attn.out_proj
    *.self_attn_layer_norm                            -> *.self_attn_norm
    decoder.layers.{i}.encoder_attn_layer_norm        -> ende_attn_norm
    *.final_layer_norm                                -> *.ffn_norm
    *.fc1, *.fc2                                      -> *.fc1, *.fc2
    encoder.layer_norm / decoder.layer_norm           -> encoder_norm / decoder_norm (pre-norm models)
    *.embed_positions._float_tensor, *.version        -> dropped (positions are recomputed: fairseq's table)
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import pickle
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from hat.errors import HatError
from hat.fsutil import atomic_write
from hat.space import CHOICE_KEYS, SUPERNET_KEYS, SearchSpace
from hat.supernet import SuperTransformer
from hat.transformer import ModelSettings

# --- safe unpickling of fairseq checkpoints ------------------------------------------------------
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
}
for _name in ("FloatStorage", "DoubleStorage", "HalfStorage", "LongStorage", "IntStorage", "ByteStorage",
              "BoolStorage", "BFloat16Storage", "CharStorage", "ShortStorage"):
    _ALLOWED[("torch", _name)] = getattr(torch, _name)


class Placeholder:
    """Stands for a class a checkpoint names that hat does not allow (e.g. fairseq meters)."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def _numpy_global(module: str, name: str):
    import numpy as np

    if name == "scalar":
        return lambda dtype, data: np.frombuffer(data, dtype=dtype)[0]
    if name == "dtype":
        return np.dtype
    return None


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy") and _numpy_global(module, name):
            return _numpy_global(module, name)
        return type(name, (Placeholder,), {"__module__": "hat.hub.placeholder." + module})


class _SafePickle:
    """A pickle module for torch.load whose Unpickler only builds allow-listed classes."""
    Unpickler = _AllowListUnpickler
    load = staticmethod(lambda f, **kw: _AllowListUnpickler(f, **kw).load())
    __name__ = "hat.hub.safe_pickle"


def read_hat_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict of a HAT (fairseq) checkpoint, unpickled with the allow-list."""
    p = Path(path)
    if not p.is_file():
        raise HatError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(p, map_location="cpu", pickle_module=_SafePickle, weights_only=False)
    except Exception as e:  # torch/pickle raise many kinds on foreign or torn files
        raise HatError(f"{path} is not a readable HAT checkpoint: {type(e).__name__}: {str(e)[:160]}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "args" not in ckpt:
        raise HatError(f"{path} is not a HAT/fairseq checkpoint (expected a dict with 'args' and 'model')")
    return ckpt


# --- key mapping -------------------------------------------------------------------------------------
def _hat_space(args: argparse.Namespace) -> SearchSpace:
    values = {}
    for name in list(SUPERNET_KEYS) + list(CHOICE_KEYS):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    try:
        return SearchSpace(**values)
    except TypeError as e:
        raise HatError(f"the checkpoint's args lack SuperTransformer dims: {e}") from None


def convert_state_dict(fairseq: dict[str, torch.Tensor], share_all: bool) -> dict[str, torch.Tensor]:
    """fairseq/HAT key names -> hat's (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    pending: dict[str, dict[str, torch.Tensor]] = collections.defaultdict(dict)
    for key, value in fairseq.items():
        if key.endswith(("embed_positions._float_tensor", ".version")) or key == "version":
            continue
        if key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            side = key.split(".")[0]
            if side == "decoder" or share_all:
                out["embed_tokens.weight"] = value
            else:
                out["src_embed_tokens.weight"] = value
            continue
        if key == "decoder.embed_out":
            raise HatError("the checkpoint has an untied output projection (decoder.embed_out); hat ties it "
                           "to the decoder embeddings")
        key = re.sub(r"^(encoder|decoder)\.layer_norm\.", r"\1_norm.", key)
        key = re.sub(r"^(encoder|decoder)\.layers\.", r"\1_layers.", key)
        key = key.replace("self_attn_layer_norm", "self_attn_norm").replace("encoder_attn_layer_norm", "ende_attn_norm")
        key = key.replace("final_layer_norm", "ffn_norm").replace("encoder_attn.", "ende_attn.")
        m = re.match(r"^(.*\.(self_attn|ende_attn))\.(in_proj_weight|in_proj_bias|[qkv]_proj\.weight|[qkv]_proj\.bias|"
                     r"[qkv]_proj_weight)$", key)
        if m:
            part = m.group(3).replace("_proj.", "_proj_").replace("in_proj_", "in_")
            pending[m.group(1)][part] = value
            continue
        out[key] = value
    for prefix, parts in pending.items():
        for kind in ("weight", "bias"):
            if f"in_{kind}" in parts:
                q, k, v = parts[f"in_{kind}"].chunk(3, dim=0)
            elif all(f"{x}_proj_{kind}" in parts for x in "qkv"):
                q, k, v = (parts[f"{x}_proj_{kind}"] for x in "qkv")
            else:
                raise HatError(f"{prefix}: cannot find its {kind} q/k/v projections in the checkpoint")
            if prefix.endswith("self_attn"):
                out[f"{prefix}.in_proj.{kind}"] = torch.cat([q, k, v])
            else:
                out[f"{prefix}.q_proj.{kind}"] = q
                out[f"{prefix}.kv_proj.{kind}"] = torch.cat([k, v])
    return out


def import_hat_checkpoint(path: str | Path) -> SuperTransformer:
    """A SuperTransformer holding the weights of HAT's checkpoint `path`."""
    ckpt = read_hat_checkpoint(path)
    args = ckpt["args"]
    if not isinstance(args, argparse.Namespace):
        raise HatError(f"{path}: 'args' is not an argparse Namespace")
    space = _hat_space(args)
    share_all = bool(getattr(args, "share_all_embeddings", False))
    state = convert_state_dict(ckpt["model"], share_all)
    vocab = state["embed_tokens.weight"].shape[0]
    settings = ModelSettings(vocab_size=vocab, qkv_dim=space.qkv_dim, dropout=float(getattr(args, "dropout", 0.1)),
                             attention_dropout=float(getattr(args, "attention_dropout", 0.0)),
                             share_all_embeddings=share_all,
                             normalize_before=bool(getattr(args, "encoder_normalize_before", False)),
                             max_source_positions=int(getattr(args, "max_source_positions", 1024)),
                             max_target_positions=int(getattr(args, "max_target_positions", 1024)))
    net = SuperTransformer(space, settings)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise HatError(f"{path}: the weights do not map onto hat's SuperTransformer (missing: {missing[:4]}, "
                       f"unexpected: {unexpected[:4]}); see the key mapping in hat/hub.py")
    return net.eval()


# --- downloads -----------------------------------------------------------------------------------------
REGISTRY_FILE = Path(__file__).with_name("model_registry.json")


def registry() -> dict[str, dict]:
    return json.loads(REGISTRY_FILE.read_text())["models"]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, cache_dir: str | Path, url: str | None = None, sha256: str | None = None,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Download model `name` into `cache_dir` (resuming a partial file), verify its sha256
    (the registry's, the given one, or the one recorded at its first download)."""
    entry = registry().get(name, {})
    url = url or entry.get("url")
    if not url:
        known = ", ".join(sorted(registry())[:3])
        raise HatError(f"no download URL for '{name}'" + ("" if entry else f" (not in the registry; e.g. {known})")
                       + ": pass --url")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest, part = cache / f"{name}.pt", cache / f"{name}.pt.part"
    recorded_file = cache / "sha256.json"
    recorded = json.loads(recorded_file.read_text()) if recorded_file.exists() else {}
    expected = sha256 or entry.get("sha256") or recorded.get(name)
    if dest.exists() and (expected is None or sha256_of(dest) == expected):
        return dest
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            total = int(response.headers.get("Content-Length") or 0) + have
            with open(part, "ab" if have else "wb") as f, \
                    tqdm(total=total or None, initial=have, unit="B", unit_scale=True, desc=name,
                         disable=not progress or None) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        raise HatError(f"download of {name} from {url} failed ({e}); re-run to resume") from None
    digest = sha256_of(part)
    if expected and digest != expected:
        part.unlink()
        raise HatError(f"{name}: sha256 {digest} does not match the expected {expected}; the download was deleted")
    os.replace(part, dest)
    if not expected:
        recorded[name] = digest
        with atomic_write(recorded_file) as f:
            json.dump(recorded, f, indent=1)
    return dest

"""HAT's released checkpoints: import (fairseq format, without fairseq and without running
pickled code) and download (registry of the authors' links, resumable; a download is saved
only once it is complete, not an HTML page, a HAT checkpoint and of the expected sha256).

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
    decoder.layers.{i}.encoder_attn.in_proj_weight|bias -> ende_attn.q_proj (rows of q),
                                                           ende_attn.kv_proj (k; v)
    decoder.layers.{i}.encoder_attn.{q,k,v}_proj.*    -> ende_attn.q_proj, ende_attn.kv_proj (k; v)
    *.self_attn.out_proj / encoder_attn.out_proj      -> *.self_attn.out_proj / ende_attn.out_proj
    *.self_attn_layer_norm                            -> *.self_attn_norm
    decoder.layers.{i}.encoder_attn_layer_norm        -> ende_attn_norm
    *.final_layer_norm                                -> *.ffn_norm
    *.fc1, *.fc2                                      -> *.fc1, *.fc2
    encoder.layer_norm / decoder.layer_norm           -> encoder_norm / decoder_norm (pre-norm)
    *.embed_positions._float_tensor, *.version        -> dropped (positions: fairseq's table)
    decoder.output_projection.weight (fairseq >= 0.10) -> dropped when it is the decoder's table
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from hat.errors import HatError
from hat.fsutil import atomic_write, sha256_of
from hat.space import CHOICE_KEYS, SUPERNET_KEYS, SearchSpace
from hat.supernet import SuperTransformer
from hat.transformer import ModelSettings

# --- safe unpickling of fairseq checkpoints ------------------------------------------------------
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}
for _name in (
    "FloatStorage",
    "DoubleStorage",
    "HalfStorage",
    "LongStorage",
    "IntStorage",
    "ByteStorage",
    "BoolStorage",
    "BFloat16Storage",
    "CharStorage",
    "ShortStorage",
):
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
        if module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy") and _numpy_global(
            module, name
        ):
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
        raise HatError(
            f"{path} is not a readable HAT checkpoint: {type(e).__name__}: {str(e)[:160]}"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "args" not in ckpt:
        raise HatError(
            f"{path} is not a HAT/fairseq checkpoint (expected a dict with 'args' and 'model')"
        )
    return ckpt


# --- key mapping ----------------------------------------------------------------------------------
def _hat_space(args: argparse.Namespace) -> SearchSpace:
    values = {}
    for name in list(SUPERNET_KEYS) + list(CHOICE_KEYS):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    try:
        return SearchSpace(**values)
    except TypeError as e:
        raise HatError(f"the checkpoint's args lack SuperTransformer dims: {e}") from None


def convert_state_dict(
    fairseq: dict[str, torch.Tensor], share_all: bool
) -> dict[str, torch.Tensor]:
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
        table = fairseq.get("decoder.embed_tokens.weight")
        if (
            key == "decoder.output_projection.weight"
            and table is not None
            and torch.equal(value, table)
        ):
            continue  # fairseq >= 0.10 stores the tied output projection under its own name
        if key in ("decoder.embed_out", "decoder.output_projection.weight"):
            raise HatError(
                f"the checkpoint has an untied output projection ({key}); hat ties it "
                "to the decoder embeddings"
            )
        key = re.sub(r"^(encoder|decoder)\.layer_norm\.", r"\1_norm.", key)
        key = re.sub(r"^(encoder|decoder)\.layers\.", r"\1_layers.", key)
        key = key.replace("self_attn_layer_norm", "self_attn_norm").replace(
            "encoder_attn_layer_norm", "ende_attn_norm"
        )
        key = key.replace("final_layer_norm", "ffn_norm").replace("encoder_attn.", "ende_attn.")
        m = re.match(
            r"^(.*\.(self_attn|ende_attn))\.(in_proj_weight|in_proj_bias|[qkv]_proj\.weight|[qkv]_proj\.bias|"
            r"[qkv]_proj_weight)$",
            key,
        )
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
                raise HatError(
                    f"{prefix}: cannot find its {kind} q/k/v projections in the checkpoint"
                )
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
    settings = ModelSettings(
        vocab_size=vocab,
        qkv_dim=space.qkv_dim,
        dropout=float(getattr(args, "dropout", 0.1)),
        attention_dropout=float(getattr(args, "attention_dropout", 0.0)),
        share_all_embeddings=share_all,
        normalize_before=bool(getattr(args, "encoder_normalize_before", False)),
        max_source_positions=int(getattr(args, "max_source_positions", 1024)),
        max_target_positions=int(getattr(args, "max_target_positions", 1024)),
    )
    net = SuperTransformer(space, settings)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise HatError(
            f"{path}: the weights do not map onto hat's SuperTransformer (missing: {missing[:4]}, "
            f"unexpected: {unexpected[:4]}); see the key mapping in hat/hub.py"
        )
    return net.eval()


# --- downloads ------------------------------------------------------------------------------------
REGISTRY_FILE = Path(__file__).with_name("model_registry.json")
_SAFE_NAME = re.compile(r"[A-Za-z0-9@][A-Za-z0-9._@-]{0,199}")  # a plain file name: no '/', no '..'
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PREVIEW_HINT = (
    "a preview page? a Dropbox '?dl=0' link serves one; the '?dl=1' form downloads the file"
)


class ModelSource(NamedTuple):
    """A model to download: its cache name (a registry name or a sanitised file name), its URL,
    the sha256 it must have (None: the one recorded at its first download) and its registry kind."""

    name: str
    url: str
    sha256: str | None
    kind: str | None


def registry() -> dict[str, dict]:
    """HAT's released models: name -> {kind, task, url, sha256} (hat/model_registry.json)."""
    return json.loads(REGISTRY_FILE.read_text())["models"]


def safe_name(text: str) -> str:
    """`text` as a plain file name: characters outside [A-Za-z0-9._@-] become '_', and leading
    dots, dashes and underscores are dropped (no hidden files, no '..')."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", text).lstrip("._-")[:200]


def resolve(name: str | None, url: str | None = None, sha256: str | None = None) -> ModelSource:
    """Where model `name` comes from: the registry's URL (or `url`) and the file name it is cached
    under. A name outside the registry must be a plain file name (letters, digits, `._@-`); with
    no name, the sanitised base name of the URL's path is used."""
    models = registry()
    entry = models.get(name or "", {})
    url = url or entry.get("url")
    if not url:
        if name and not entry:
            known = ", ".join(list(models)[:2])
            raise HatError(
                f"'{name}' is not in the registry (e.g. {known}; see --list): "
                "pass --url URL to download it"
            )
        raise HatError(f"no download URL for '{name}': pass --url")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise HatError(f"--url {url!r} is not an http(s) or file URL")
    if name:
        if not _SAFE_NAME.fullmatch(name):
            raise HatError(
                f"model name {name!r} is neither a registry name nor a plain file "
                "name (letters, digits, '._@-'; no '/' or '..'): it would leave the "
                "cache dir"
            )
        stem = name
    else:
        base = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1]
        stem = safe_name(base.removesuffix(".pt"))
        if not stem:
            raise HatError(f"cannot name the file of {url}: pass --model-name NAME")
    expected = (sha256 or entry.get("sha256") or "").strip().lower() or None
    if expected and not _SHA256.fullmatch(expected):
        raise HatError(f"sha256 {expected!r} is not 64 hex digits")
    return ModelSource(stem, url, expected, entry.get("kind"))


def _is_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml"))


def checkpoint_problem(path: Path) -> str | None:
    """Why the file at `path` is not a HAT/fairseq checkpoint (None when it is one).

    Both registry kinds (supernet, subtransformer) are fairseq checkpoint dicts with `args` (a
    Namespace) and `model` (a state dict of tensors with the token embeddings); the file is read
    with the allow-list unpickler, so no code in it runs."""
    with open(path, "rb") as f:
        head = f.read(512)
    if _is_html(head):
        return f"an HTML page, not a checkpoint ({_PREVIEW_HINT})"
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_SafePickle, weights_only=False)
    except Exception as e:  # noqa: BLE001 (torch/pickle raise many kinds on foreign files)
        reason = (str(e).strip().splitlines() or [""])[0][:120]
        return f"a file that is not a readable torch checkpoint ({type(e).__name__}: {reason})"
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("args"), argparse.Namespace):
        return "a file that is not a HAT/fairseq checkpoint (no 'args' Namespace)"
    model = ckpt.get("model")
    if (
        not isinstance(model, dict)
        or not model
        or not all(isinstance(v, torch.Tensor) for v in model.values())
    ):
        return "a file that is not a HAT/fairseq checkpoint (no 'model' state dict of tensors)"
    if "encoder.embed_tokens.weight" not in model and "decoder.embed_tokens.weight" not in model:
        return "a checkpoint that is not a HAT Transformer's (no embed_tokens in its 'model')"
    return None


def _fetch(src: ModelSource, part: Path, progress: bool, timeout: float) -> None:
    """Download `src.url` into `part` (resuming it if present); a failed connection keeps `part`
    for a re-run, a short body or an HTML page deletes it."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(src.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if "text/html" in (response.headers.get("Content-Type") or "").lower():
                part.unlink(missing_ok=True)
                raise HatError(
                    f"{src.name}: {src.url} served an HTML page, not a checkpoint "
                    f"({_PREVIEW_HINT}); nothing was saved"
                )
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            length = response.headers.get("Content-Length")
            total = int(length) + have if length and length.strip().isdigit() else None
            with (
                open(part, "ab" if have else "wb") as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=src.name,
                    disable=not progress or None,
                ) as bar,
            ):
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        raise HatError(
            f"download of {src.name} from {src.url} failed ({e}); re-run to resume"
        ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        part.unlink()
        raise HatError(
            f"download of {src.name} from {src.url} truncated: got {size} of {total} "
            "bytes (the server's Content-Length); nothing was saved, re-run to retry"
        )


def download(
    name: str | None,
    cache_dir: str | Path,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download model `name` (or the file at `url`) into `cache_dir` and return its path.

    The body goes to `<name>.pt.part` (resumed when present) and is renamed to `<name>.pt` only
    once it has the server's full length, is not an HTML page, loads as a HAT checkpoint and
    has the expected sha256 (`sha256`, the registry's, or the one recorded in the cache's
    sha256.json at its first download, which a successful first download records). Any failure
    deletes the temp file, records nothing and raises HatError; a dropped connection keeps it,
    so that a re-run resumes."""
    src = resolve(name, url, sha256)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest, part = cache / f"{src.name}.pt", cache / f"{src.name}.pt.part"
    if dest.resolve().parent != cache.resolve():  # resolve() admits plain file names only
        raise HatError(f"model name {src.name!r} would leave the cache dir {cache}")
    recorded_file = cache / "sha256.json"
    try:
        recorded = json.loads(recorded_file.read_text()) if recorded_file.exists() else {}
    except ValueError:
        raise HatError(
            f"{recorded_file} is not valid JSON: fix or delete it (it holds the sha256 "
            "each model had at its first download)"
        ) from None
    expected = src.sha256 or recorded.get(src.name)
    if dest.exists() and (expected is None or sha256_of(dest) == expected):
        return dest
    _fetch(src, part, progress, timeout)
    try:
        digest = sha256_of(part)
        if expected and digest != expected:
            raise HatError(
                f"{src.name}: the sha256 {digest} of {src.url} does not match the "
                f"expected {expected}; the download was deleted"
            )
        problem = checkpoint_problem(part)
        if problem:
            raise HatError(f"{src.name}: {src.url} served {problem}; nothing was saved")
    except (HatError, OSError):
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    if not expected:
        recorded[src.name] = digest
        with atomic_write(recorded_file) as f:
            json.dump(recorded, f, indent=1)
    return dest

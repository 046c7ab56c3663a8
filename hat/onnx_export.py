"""ONNX export of a compact SubTransformer and beam search on onnxruntime.

Two graphs: `encoder.onnx` (source tokens -> padding mask and every decoder layer's static
encoder-decoder keys/values) and `decoder_step.onnx` (one token per row, the step, the mask,
the static keys/values and the self-attention cache -> log-probabilities and the grown cache).
:class:`OnnxTransformer` drives them with the same interface as the PyTorch model, so
`beam_search`, `translate_dataset` and the latency protocol run on onnxruntime unchanged.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hat.data.tokenizer import PAD_ID
from hat.errors import HatError
from hat.fsutil import atomic_write
from hat.nn.attention import MultiheadAttention, attention_math
from hat.transformer import ModelSettings, Transformer


def _heads(x: torch.Tensor, parts: int, heads: int, qkv: int) -> torch.Tensor:
    n, t, _ = x.shape
    return x.reshape(n, t, parts, heads, qkv // heads).permute(2, 0, 3, 1, 4)


class EncoderGraph(nn.Module):
    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src_tokens: torch.Tensor):
        m = self.model
        enc = m.encode(src_tokens)
        outs = [enc.padding_mask]
        for layer in m.decoder_layers:
            memory, _ = enc.memory(layer.ende_layers)
            kv = _heads(
                layer.ende_attn.kv_proj(memory),
                2,
                layer.ende_attn.num_heads,
                layer.ende_attn.qkv_dim,
            )
            outs += [kv[0], kv[1]]
        return tuple(outs)


class DecoderStepGraph(nn.Module):
    """One incremental step, the cache passed in and returned (concatenated in time)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(
        self,
        tokens: torch.Tensor,
        step: torch.Tensor,
        padding_mask: torch.Tensor,
        *cache: torch.Tensor,
    ):
        m = self.model
        dim = m.arch.decoder_embed_dim
        pos = m.decoder_positions.table.index_select(
            0, step.reshape(1) + m.decoder_positions.OFFSET
        )[:, :dim]
        x = m.embed_tokens(tokens, dim) * math.sqrt(dim) + pos
        layers = list(m.decoder_layers)
        ende, past = cache[: 2 * len(layers)], cache[2 * len(layers) :]
        present = []
        for i, layer in enumerate(layers):
            a = layer.self_attn
            q, k, v = _heads(a.in_proj(x), 3, a.num_heads, a.qkv_dim)
            k, v = torch.cat([past[2 * i], k], dim=2), torch.cat([past[2 * i + 1], v], dim=2)
            present += [k, v]
            n = q.shape[0]
            h = a.out_proj(attention_math(q, k, v, None).transpose(1, 2).reshape(n, 1, a.qkv_dim))
            x = layer.self_attn_norm(x + h)
            e = layer.ende_attn
            q = _heads(e.q_proj(x), 1, e.num_heads, e.qkv_dim)[0]
            mask = (~padding_mask).repeat(1, layer.ende_layers)[:, None, None, :]
            h = e.out_proj(
                attention_math(q, ende[2 * i], ende[2 * i + 1], mask)
                .transpose(1, 2)
                .reshape(n, 1, e.qkv_dim)
            )
            x = layer.ende_attn_norm(x + h)
            x = layer.ffn_norm(x + layer._ffn(x))
        logits = m.output_layer(x[:, 0])
        return (F.log_softmax(logits.float(), dim=-1), *present)


def require(package: str) -> None:
    """A one-line error, not an ImportError traceback, when the `onnx` extra is not installed."""
    if importlib.util.find_spec(package) is None:
        raise HatError(
            f"{package} is not installed: pip install 'hardware-aware-transformers[onnx]'"
        )


def export_onnx(
    model: Transformer, out_dir: str | Path, opset: int = 18, dynamo: bool = False
) -> Path:
    """Write encoder.onnx, decoder_step.onnx and model.json (config) into `out_dir`.

    `dynamo`: PyTorch's torch.export-based exporter (needs onnxscript). The default is still the
    legacy TorchScript exporter (deprecated by PyTorch; its warning is not filtered): as exact,
    no slower on onnxruntime and ~20x faster to export (docs/deployment.md has the figures)."""
    if model.settings.normalize_before:
        raise HatError("ONNX export supports post-norm models (HAT's); this one is pre-norm")
    require("onnx")
    if dynamo:
        require("onnxscript")
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, MultiheadAttention):
            module.fused = False  # plain matmuls: exporters handle them exactly
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = list(model.decoder_layers)
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, PAD_ID, PAD_ID]])
    enc_names = ["padding_mask"] + [f"ende_{kv}_{i}" for i in range(len(layers)) for kv in "kv"]
    past_names = [f"past_{kv}_{i}" for i in range(len(layers)) for kv in "kv"]
    present_names = [f"present_{kv}_{i}" for i in range(len(layers)) for kv in "kv"]
    encoder, decoder = EncoderGraph(model).eval(), DecoderStepGraph(model).eval()
    with torch.no_grad():
        enc = encoder(src)
        # two cached steps and contiguous keys/values: torch.export keeps sizes 0/1 static and
        # records the strides of its example inputs
        heads = [(layer.self_attn.num_heads, layer.self_attn.qkv_dim) for layer in layers]
        past = [torch.zeros(2, h, 2, qkv // h) for h, qkv in heads for _ in "kv"]
        ende = [e.contiguous() for e in enc[1:]]
        dec_args = (torch.tensor([[4], [4]]), torch.tensor(2), enc[0], *ende, *past)
        dec_names = ["tokens", "step", "padding_mask", *enc_names[1:], *past_names]
        if dynamo:
            # DYNAMIC: an error, not a silently static graph, if a size gets specialised (older
            # torch has AUTO only)
            dyn = getattr(torch.export.Dim, "DYNAMIC", torch.export.Dim.AUTO)
            options = dict(opset_version=opset, dynamo=True, external_data=False, verbose=False)
            torch.onnx.export(
                encoder,
                (src,),
                out / "encoder.onnx",
                input_names=["src_tokens"],
                output_names=enc_names,
                dynamic_shapes={"src_tokens": {0: dyn, 1: dyn}},
                **options,
            )
            cache = tuple({0: dyn, 2: dyn} for _ in dec_args[3:])
            torch.onnx.export(
                decoder,
                dec_args,
                out / "decoder_step.onnx",
                input_names=dec_names,
                output_names=["log_probs", *present_names],
                **options,
                dynamic_shapes={
                    "tokens": {0: dyn},
                    "step": None,
                    "padding_mask": {0: dyn, 1: dyn},
                    "cache": cache,
                },
            )
        else:
            _export_torchscript(
                encoder, decoder, src, dec_args, out, opset, enc_names, dec_names, present_names
            )
    with atomic_write(out / "model.json") as f:
        json.dump(
            {
                "arch": model.arch.to_dict(),
                "settings": model.settings.to_dict(),
                "heads": [list(h) for h in heads],
            },
            f,
        )
    return out


def _export_torchscript(
    encoder: nn.Module,
    decoder: nn.Module,
    src: torch.Tensor,
    dec_args: tuple[torch.Tensor, ...],
    out: Path,
    opset: int,
    enc_names: list[str],
    dec_names: list[str],
    present_names: list[str],
) -> None:
    """The legacy (TorchScript) exporter; PyTorch's deprecation warning is left visible."""
    mem = {n: {0: "batch", 2: "mem_len"} for n in enc_names[1:]}
    rows = {n: {0: "rows", 2: "mem_len"} for n in enc_names[1:]}
    rows |= {n: {0: "rows", 2: "past_len"} for n in dec_names[3 + len(mem) :]}
    rows |= {n: {0: "rows", 2: "len"} for n in present_names}
    rows |= {
        "tokens": {0: "rows"},
        "log_probs": {0: "rows"},
        "padding_mask": {0: "rows", 1: "src_len"},
    }
    with warnings.catch_warnings():
        # the tracer flags Python-side constants (head dims, the positions bound check)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            encoder,
            (src,),
            out / "encoder.onnx",
            input_names=["src_tokens"],
            output_names=enc_names,
            opset_version=opset,
            dynamo=False,
            dynamic_axes={
                "src_tokens": {0: "batch", 1: "src_len"},
                "padding_mask": {0: "batch", 1: "src_len"},
                **mem,
            },
        )
        torch.onnx.export(
            decoder,
            dec_args,
            out / "decoder_step.onnx",
            input_names=dec_names,
            output_names=["log_probs", *present_names],
            opset_version=opset,
            dynamo=False,
            dynamic_axes=rows,
        )


class _OrtEncoderOut:
    def __init__(self, outputs: list[np.ndarray]):
        self.padding_mask, self.ende = outputs[0], outputs[1:]


class _OrtState:
    """Decoder cache of the ONNX runner (numpy arrays), with the PyTorch state's interface."""

    def __init__(self, padding_mask: np.ndarray, ende: list[np.ndarray], past: list[np.ndarray]):
        self.padding_mask, self.ende, self.past, self.step = padding_mask, ende, past, 0

    def fan_out(self, beam: int) -> None:
        rows = self.padding_mask.shape[0]  # every array here has one row per hypothesis
        self.reorder(torch.arange(rows).repeat_interleave(beam), rows_changed=True)

    def reorder(self, index: torch.Tensor, rows_changed: bool) -> None:
        idx = index.cpu().numpy()
        self.past = [p[idx] for p in self.past]
        if rows_changed:
            self.padding_mask = self.padding_mask[idx]
            self.ende = [e[idx] for e in self.ende]


class OnnxTransformer:
    """Beam search / latency interface of a compact model, computed by onnxruntime."""

    training = False

    def __init__(self, directory: str | Path, threads: int | None = None):
        require("onnxruntime")
        import onnxruntime as ort

        d = Path(directory)
        if not (d / "model.json").is_file():
            raise HatError(f"{d} holds no exported model (model.json): run `hat export-onnx` first")
        meta = json.loads((d / "model.json").read_text())
        self.settings = ModelSettings.from_dict(meta["settings"])
        self.heads = meta["heads"]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.encoder = ort.InferenceSession(
            str(d / "encoder.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.decoder = ort.InferenceSession(
            str(d / "decoder_step.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def eval(self) -> OnnxTransformer:
        return self

    def train(self, mode: bool = True) -> OnnxTransformer:
        return self

    def to(self, device) -> OnnxTransformer:
        return self

    def encode(self, src_tokens: torch.Tensor) -> _OrtEncoderOut:
        return _OrtEncoderOut(
            self.encoder.run(None, {"src_tokens": src_tokens.cpu().numpy().astype(np.int64)})
        )

    def start_decoding(
        self, enc: _OrtEncoderOut, beam: int = 1, max_steps: int | None = None
    ) -> _OrtState:
        rep = lambda a: np.repeat(a, beam, axis=0) if beam > 1 else a  # noqa: E731
        rows = enc.padding_mask.shape[0] * beam
        past = [np.zeros((rows, h, 0, qkv // h), np.float32) for h, qkv in self.heads for _ in "kv"]
        return _OrtState(rep(enc.padding_mask), [rep(e) for e in enc.ende], past)

    def decode_step(self, tokens: torch.Tensor, state: _OrtState) -> torch.Tensor:
        names = [i.name for i in self.decoder.get_inputs()]
        values = [
            tokens.cpu().numpy().astype(np.int64)[:, None],
            np.array(state.step, np.int64),
            state.padding_mask,
            *state.ende,
            *state.past,
        ]
        outputs = self.decoder.run(None, dict(zip(names, values, strict=True)))
        state.past, state.step = outputs[1:], state.step + 1
        return torch.from_numpy(outputs[0])

"""The encoder-decoder Transformer, and its compact heterogeneous form.

:class:`EncoderDecoder` holds the forward logic (full sequence and incremental decoding).
:class:`Transformer` is the compact model built for one :class:`ArchConfig`, with plain
modules and per-layer dims: what `SuperTransformer.export()` returns and what gets trained
from scratch, measured and deployed. The SuperTransformer runs the same code with elastic
modules.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hat.checkpoint import load_checkpoint, load_weights, save_checkpoint
from hat.data.tokenizer import PAD_ID
from hat.errors import HatError
from hat.nn.attention import KVCache
from hat.nn.dropout import dropout
from hat.nn.elastic import ElasticEmbedding, SinusoidalPositions
from hat.nn.layers import DecoderLayer, EncoderLayer
from hat.settings import setting
from hat.space import DEFAULT_QKV_DIM, ArchConfig

CHECKPOINT_FORMAT = "hat.transformer"


@dataclass(frozen=True)
class ModelSettings:
    """Everything about the model that is not searched.

    `supernet_*_embed_dim`: the SuperTransformer a SubTransformer comes from. As in HAT, the
    residual and activation dropouts scale with `active dim / supernet dim` and positions are the
    supernet's sinusoidal table sliced to the active dim. None means the model's own dims.
    """

    vocab_size: int = 0  # the data's (0 until a data directory gives it)
    qkv_dim: int = DEFAULT_QKV_DIM  # the SuperTransformer's (HAT's qkv-dim key, a space key)
    dropout: float = setting(0.1, "dropout (scaled by active/supernet dim, as HAT)", hat=True)
    attention_dropout: float = setting(0.0, "", hat=True)
    activation_dropout: float = setting(0.0, "", aliases=("relu-dropout",))
    max_source_positions: int = setting(1024, "")
    max_target_positions: int = setting(1024, "")
    share_all_embeddings: bool = setting(
        True, "one token table for source and target (joint vocabulary)", hat=True
    )
    normalize_before: bool = setting(False, "pre-norm layers (default: post-norm, as HAT)")
    supernet_encoder_embed_dim: int | None = None
    supernet_decoder_embed_dim: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def for_subtransformer(self, arch: ArchConfig) -> ModelSettings:
        """Settings of a SubTransformer of this supernet (records the supernet dims)."""
        return dataclasses.replace(
            self,
            supernet_encoder_embed_dim=self.encoder_table_dim(arch),
            supernet_decoder_embed_dim=self.decoder_table_dim(arch),
        )

    def encoder_table_dim(self, arch: ArchConfig) -> int:
        return self.supernet_encoder_embed_dim or arch.encoder_embed_dim

    def decoder_table_dim(self, arch: ArchConfig) -> int:
        return self.supernet_decoder_embed_dim or arch.decoder_embed_dim


def scaled_dropouts(settings: ModelSettings, dim: int, table_dim: int) -> dict[str, float]:
    """The dropout, attention_dropout and activation_dropout of a side whose embed dim is `dim`
    in a supernet of `table_dim`: as HAT, the residual/embedding and activation dropouts scale
    by dim / table_dim, the attention-weight dropout does not."""
    r = dim / table_dim
    return {
        "dropout": settings.dropout * r,
        "attention_dropout": settings.attention_dropout,
        "activation_dropout": settings.activation_dropout * r,
    }


@dataclass
class EncoderOut:
    """Outputs of the last encoder layers (oldest first), each (B, S, D), and the padding mask."""

    states: list[torch.Tensor]
    padding_mask: torch.Tensor  # (B, S), True at padding

    def memory(self, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last `layers` outputs concatenated in time, and their padding mask."""
        if layers == 1:
            return self.states[-1], self.padding_mask
        return torch.cat(self.states[-layers:], dim=1), self.padding_mask.repeat(1, layers)


class DecoderState:
    """Incremental decoding state: per-layer self-attention caches (one row per hypothesis)
    and the static encoder-decoder keys/values, computed once per sentence and kept one row
    per sentence (its `beam` hypotheses share them: see `MultiheadAttention.cross`)."""

    def __init__(
        self,
        ende_kv: list[tuple[torch.Tensor, torch.Tensor]],
        ende_masks: list[torch.Tensor],
        capacity: int,
        beam: int = 1,
    ):
        self.ende_kv, self.ende_masks, self.beam = ende_kv, ende_masks, beam
        self.caches = [KVCache(capacity) for _ in ende_kv]
        self.step = 0

    def fan_out(self, beam: int) -> None:
        """From one hypothesis row per sentence to `beam` copies of it (rows b * beam ..)."""
        keys = self.ende_kv[0][0]  # one row per sentence
        self.reorder(torch.arange(keys.shape[0], device=keys.device).repeat_interleave(beam), False)
        self.beam = beam

    def reorder(self, index: torch.Tensor, rows_changed: bool) -> None:
        """Select hypothesis rows `index` of the caches (each sentence's `beam` rows stay
        together and come from that sentence's rows). `rows_changed` is True when sentences
        leave the batch: then the static keys/values keep the remaining sentences' rows."""
        for cache in self.caches:
            cache.reorder(index)
        if rows_changed:
            sentences = index[:: self.beam] // self.beam
            self.ende_kv = [
                (k.index_select(0, sentences), v.index_select(0, sentences))
                for k, v in self.ende_kv
            ]
            self.ende_masks = [m.index_select(0, sentences) for m in self.ende_masks]


class EncoderDecoder(nn.Module):
    """Forward logic shared by the compact Transformer and the SuperTransformer.

    Subclasses build: settings, arch (the active ArchConfig), embed_tokens (+ optional
    src_embed_tokens), encoder/decoder_positions, encoder/decoder_layers, and, for
    pre-norm, encoder_norm/decoder_norm; plus the scaled dropout rates.
    """

    settings: ModelSettings
    arch: ArchConfig
    encoder_dropout: float
    decoder_dropout: float

    def _build_embeddings(
        self, enc_table: int, dec_table: int, enc_width: int, dec_width: int
    ) -> None:
        """The token table(s), the sinusoidal position tables, and no separate output layer
        (the table is tied to it; `Transformer.untie_output_projection` gives it one)."""
        s = self.settings
        self.output_projection: nn.Linear | None = None
        if s.share_all_embeddings:
            self.embed_tokens = ElasticEmbedding(s.vocab_size, max(enc_width, dec_width), PAD_ID)
            self.src_embed_tokens = None
        else:
            self.embed_tokens = ElasticEmbedding(s.vocab_size, dec_width, PAD_ID)
            self.src_embed_tokens = ElasticEmbedding(s.vocab_size, enc_width, PAD_ID)
        self.encoder_positions = SinusoidalPositions(s.max_source_positions, enc_table)
        self.decoder_positions = SinusoidalPositions(s.max_target_positions, dec_table)

    # --- encoder ---------------------------------------------------------------------------
    def encode(self, src_tokens: torch.Tensor) -> EncoderOut:
        """Run the active encoder layers on right-padded `src_tokens` (B, S)."""
        dim = self.arch.encoder_embed_dim
        padding_mask = src_tokens.eq(PAD_ID)
        table = self.src_embed_tokens or self.embed_tokens
        x = table(src_tokens, dim) * math.sqrt(dim) + self.encoder_positions(
            0, src_tokens.shape[1], dim
        )
        x = dropout(x, self.encoder_dropout, self.training)
        keep = max(self.arch.ende_layers(i) for i in range(self.arch.decoder_layer_num))
        states = []
        for layer in self.encoder_layers[: self.arch.encoder_layer_num]:
            x = layer(x, padding_mask)
            states.append(x)
        states = states[-keep:]
        if self.settings.normalize_before:
            states = [self.encoder_norm(s) for s in states]
        return EncoderOut(states, padding_mask)

    # --- decoder ---------------------------------------------------------------------------
    def _embed_target(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        dim = self.arch.decoder_embed_dim
        x = self.embed_tokens(tokens, dim) * math.sqrt(dim) + self.decoder_positions(
            start, tokens.shape[1], dim
        )
        return dropout(x, self.decoder_dropout, self.training)

    def _active_decoder_layers(self) -> list[DecoderLayer]:
        return list(self.decoder_layers[: self.arch.decoder_layer_num])

    def _final_norm(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder_norm(features) if self.settings.normalize_before else features

    def output_layer(self, features: torch.Tensor) -> torch.Tensor:
        """Decoder features (..., D) -> logits (..., V) with the tied embedding table."""
        features = self._final_norm(features)
        if self.output_projection is not None:
            return self.output_projection(features)
        return self.embed_tokens.project(features)

    def output_inputs(
        self, src_tokens: torch.Tensor, prev_output_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What `forward` multiplies last: the features (B, T, D) the output layer takes and its
        (V, D) weight, for losses that project a block of tokens at a time."""
        x = self._final_norm(self.decode_features(prev_output_tokens, self.encode(src_tokens)))
        if self.output_projection is not None:
            return x, self.output_projection.weight
        return x, self.embed_tokens.columns(x.shape[-1])

    def decode_features(self, prev_output_tokens: torch.Tensor, enc: EncoderOut) -> torch.Tensor:
        """Full-sequence (teacher-forced) decoder features (B, T, D), before the output layer."""
        x = self._embed_target(prev_output_tokens, 0)
        memories: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for layer in self._active_decoder_layers():
            if layer.ende_layers not in memories:
                memories[layer.ende_layers] = enc.memory(layer.ende_layers)
            memory, mask = memories[layer.ende_layers]
            x = layer(x, layer.ende_attn.project_kv(memory), mask)
        return x

    def forward(self, src_tokens: torch.Tensor, prev_output_tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of the target given the source (teacher forcing)."""
        return self.output_layer(self.decode_features(prev_output_tokens, self.encode(src_tokens)))

    # --- incremental decoding --------------------------------------------------------------
    def start_decoding(
        self, enc: EncoderOut, beam: int = 1, max_steps: int | None = None
    ) -> DecoderState:
        """A state for `decode_step` on `beam` hypotheses per sentence of `enc` (rows
        b * beam .. b * beam + beam - 1 are sentence b's)."""
        kv, masks = [], []
        for layer in self._active_decoder_layers():
            memory, mask = enc.memory(layer.ende_layers)
            kv.append(layer.ende_attn.project_kv(memory))
            masks.append(mask)
        capacity = max_steps or self.settings.max_target_positions
        return DecoderState(kv, masks, capacity=capacity, beam=beam)

    def decode_step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Feed one token per row (N,); return log-probabilities (N, V) of the next token."""
        x = self._embed_target(tokens[:, None], state.step)
        for i, layer in enumerate(self._active_decoder_layers()):
            x = layer(x, state.ende_kv[i], state.ende_masks[i], cache=state.caches[i])
        state.step += 1
        return F.log_softmax(self.output_layer(x[:, 0]).float(), dim=-1)


class Transformer(EncoderDecoder):
    """The compact SubTransformer: plain modules, heterogeneous layers, own parameters only."""

    def __init__(self, arch: ArchConfig, settings: ModelSettings):
        super().__init__()
        self.arch, self.settings = arch, settings
        if arch.encoder_embed_dim % 2 or arch.decoder_embed_dim % 2:
            raise HatError("embed dims must be even (sinusoidal positions)")
        for heads in (
            *arch.encoder_self_attention_heads,
            *arch.decoder_self_attention_heads,
            *arch.decoder_ende_attention_heads,
        ):
            if settings.qkv_dim % heads:
                raise HatError(f"{heads} heads do not divide qkv-dim {settings.qkv_dim}")
        enc_table, dec_table = settings.encoder_table_dim(arch), settings.decoder_table_dim(arch)
        self._build_embeddings(enc_table, dec_table, arch.encoder_embed_dim, arch.decoder_embed_dim)
        enc_p = scaled_dropouts(settings, arch.encoder_embed_dim, enc_table)
        dec_p = scaled_dropouts(settings, arch.decoder_embed_dim, dec_table)
        self.encoder_dropout, self.decoder_dropout = enc_p["dropout"], dec_p["dropout"]
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(
                embed_dim=arch.encoder_embed_dim,
                ffn_dim=arch.encoder_ffn_embed_dim[i],
                heads=arch.encoder_self_attention_heads[i],
                qkv_dim=settings.qkv_dim,
                normalize_before=settings.normalize_before,
                **enc_p,
            )
            for i in range(arch.encoder_layer_num)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(
                embed_dim=arch.decoder_embed_dim,
                encoder_embed_dim=arch.encoder_embed_dim,
                ffn_dim=arch.decoder_ffn_embed_dim[i],
                self_heads=arch.decoder_self_attention_heads[i],
                ende_heads=arch.decoder_ende_attention_heads[i],
                ende_layers=arch.ende_layers(i),
                qkv_dim=settings.qkv_dim,
                normalize_before=settings.normalize_before,
                **dec_p,
            )
            for i in range(arch.decoder_layer_num)
        )
        if settings.normalize_before:
            self.encoder_norm = nn.LayerNorm(arch.encoder_embed_dim)
            self.decoder_norm = nn.LayerNorm(arch.decoder_embed_dim)

    def untie_output_projection(self) -> None:
        """Give the output layer its own copy of the tied weights (an nn.Linear that int8
        quantization can convert); the outputs do not change."""
        weight = self.embed_tokens.columns(self.arch.decoder_embed_dim).detach().clone()
        self.output_projection = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.output_projection.weight.copy_(weight)

    def num_params(self, embeddings: bool = False) -> int:
        """#parameters; without `embeddings`, HAT's convention (no embedding table or output)."""
        tables = {id(t.weight) for t in (self.embed_tokens, self.src_embed_tokens) if t is not None}
        return sum(p.numel() for p in self.parameters() if embeddings or id(p) not in tables)

    # --- checkpoint ---------------------------------------------------------------------------
    def save(
        self, path: str | Path, spm_model: bytes | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        """Self-describing checkpoint: ArchConfig, settings, weights, sentencepiece model."""
        save_checkpoint(
            {
                "format": CHECKPOINT_FORMAT,
                "version": 1,
                "arch": self.arch.to_dict(),
                "settings": self.settings.to_dict(),
                "model": self.state_dict(),
                "spm_model": spm_model,
                "extra": extra or {},
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> tuple[Transformer, dict[str, Any]]:
        """(model in eval mode, the checkpoint payload)."""
        payload = load_checkpoint(
            path, kind=CHECKPOINT_FORMAT, require=("arch", "settings", "model")
        )
        model = cls(
            ArchConfig.from_dict(payload["arch"]), ModelSettings.from_dict(payload["settings"])
        )
        load_weights(model, payload["model"], path, hint=" it describes")
        return model.eval(), payload

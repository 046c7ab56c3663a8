"""The training loop for SuperTransformers and compact SubTransformers.

One update = `update_freq` batches per rank. A SuperTransformer update trains the
SubTransformer(s) the sampler picks for that update (the same on every rank); gradients
are summed over ranks and divided by the update's target tokens (fairseq's
normalisation). Checkpoints hold model, optimizer, LR schedule, AMP scaler, RNG and the
position in the epoch, so a killed run resumes where its last checkpoint was written.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from hat.data.batching import TokenBatcher
from hat.data.dataset import Batch, DataDir, ParallelDataset
from hat.errors import HatError
from hat.settings import setting
from hat.space import ArchConfig
from hat.supernet import SuperTransformer
from hat.train.checkpoints import TRAIN_FORMAT, CheckpointManager, move_optimizer_state
from hat.train.criterion import (
    projected_distillation_loss,
    projected_label_smoothed_nll,
    projected_teacher_loss,
)
from hat.train.distributed import DistInfo, all_reduce_gradients, all_reduce_sum, barrier
from hat.train.sampling import ConfigSampler
from hat.train.schedule import ScheduleConfig, build_scheduler
from hat.transformer import EncoderDecoder

log = logging.getLogger(__name__)
DEFAULT_RESTORE_FILE = "checkpoint_last.pt"  # looked up in --save-dir (fairseq's rule)
LN2 = math.log(2)
# Under autocast PyTorch picks cuDNN's SDPA, which builds a graph for every new (batch, length)
# shape (~20 ms forward + ~28 ms backward per call on an H100): token-bucketed batches made fp16
# and bf16 training 7x slower than fp32. The other attention kernels have no such cost.
MIXED_PRECISION_SDPA = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@contextmanager
def mixed_precision(device_type: str, dtype: torch.dtype):
    """Autocast to `dtype`, with attention kept off the cuDNN kernel."""
    with torch.autocast(device_type, dtype=dtype), sdpa_kernel(MIXED_PRECISION_SDPA):
        yield


PRECISIONS = ("fp32", "fp16", "bf16")
# bf16 matmuls on the CPU run through oneDNN, which keeps a primitive for each of the last 1,024
# shapes; token-bucketed batches have a new (batch, length) shape at every update, so the cache
# only grows: 3.2 GB of peak memory after 300 updates of the Transformer 256 against 1.8 GB with
# 8 primitives, at 4.6% less speed (docs/benchmarks.md). Read when oneDNN starts; a value set in
# the environment wins.
ONEDNN_CACHE_VARIABLE, BF16_CPU_PRIMITIVE_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8"
CONVERGENCE_WINDOW = 0.2  # the last fifth of the updates (issue #15's convergence criterion)
BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}  # bf16 dot products in hardware (x86)


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU computes bf16 dot products in hardware (None: unknown, not Linux)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), None)
    return None if flags is None else bool(BF16_CPU_FLAGS & set(flags))


def _betas(text: str | tuple | list) -> tuple[float, float]:
    """Adam betas from HAT's text form '(0.9, 0.98)' (or two numbers)."""
    try:
        values = ast.literal_eval(text) if isinstance(text, str) else text
        betas = tuple(float(b) for b in values)
    except (ValueError, SyntaxError, TypeError):
        raise HatError(f"--adam-betas must look like '(0.9, 0.98)', got {text!r}") from None
    if len(betas) != 2:
        raise HatError(f"--adam-betas needs two numbers, got {text!r}")
    return betas


@dataclass
class TrainConfig:
    """One training run's recipe (fairseq/HAT key names)."""

    save_dir: str = setting("checkpoints", "where checkpoints and train_log.jsonl go", hat=True)
    max_tokens: int = setting(4096, "tokens per batch, padding included", hat=True)
    max_sentences: int | None = setting(None, "sentences per batch", aliases=("batch-size",))
    update_freq: int = setting(1, "batches per update (gradient accumulation)", hat=True)
    max_update: int = setting(0, "stop after this many updates (0: no limit)", hat=True)
    max_epoch: int = setting(0, "stop after this many epochs (0: no limit)", hat=True)
    stop_time_hours: float = setting(0.0, "stop after this much wall time (0: no limit)")
    convergence_tolerance: float = setting(
        0.0,
        "stop once the validation loss changed by less than this fraction over the last 20%% "
        "of the updates (0: off; 0.01: converged as the ranking study defines it)",
    )
    convergence_smoothing: int = setting(
        3,
        "--convergence-tolerance also holds for the mean of the last N validations against the "
        "N ending 20%% of the updates earlier, so one lucky validation does not stop a run that "
        "still improves; no verdict until N validations lie before and N within the last 20%% "
        "(1: the single validations alone)",
    )
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    adam_betas: tuple[float, float] = setting(
        (0.9, 0.98), "Adam betas, e.g. '(0.9, 0.98)'", parse=_betas, show=str, hat=True
    )
    adam_eps: float = setting(1e-8, "")
    weight_decay: float = setting(0.0, "decoupled (AdamW)", hat=True)
    clip_norm: float = setting(0.0, "clip gradients to this norm (0: off)", hat=True)
    label_smoothing: float = setting(0.1, "", hat=True)
    precision: str = setting(
        "fp32",
        "fp16: CUDA AMP with loss scaling; bf16: bfloat16 autocast",
        choices=PRECISIONS,
        switches={"fp16": "fp16", "bf16": "bf16"},
        hat=True,
    )
    seed: int = setting(1, "")
    save_interval: int = setting(1, "keep checkpoint<epoch>.pt every N epochs", hat=True)
    save_interval_updates: int = setting(0, "also checkpoint every N updates")
    keep_last_epochs: int = setting(-1, "keep only the last N epoch checkpoints", hat=True)
    keep_interval_updates: int = setting(-1, "keep only the last N update checkpoints")
    validate_interval: int = setting(1, "validate every N epochs", hat=True)
    validate_interval_updates: int = setting(0, "also validate every N updates")
    valid_subset: str = setting("valid", "")
    eval_bleu: bool = setting(False, "also report validation BLEU (beam search)")
    eval_bleu_beam: int = setting(4, "")
    distill_weight: float = setting(
        1.0, "sandwich: weight of the distillation loss (the rest: label-smoothed CE)"
    )
    log_interval: int = setting(50, "log every N updates")
    progress_bar: bool = setting(True, "")
    restore_file: str = setting(
        DEFAULT_RESTORE_FILE,
        "checkpoint to resume from: the default name is looked up in --save-dir, any other "
        "path is used as given (fairseq's rule)",
        hat=True,
    )

    def __post_init__(self) -> None:
        self.adam_betas = _betas(self.adam_betas)
        if self.schedule.max_update != self.max_update:  # the schedule ends with the run
            self.schedule = replace(self.schedule, max_update=self.max_update)

    def check(self) -> None:
        for name in ("max_tokens", "update_freq", "convergence_smoothing"):
            if getattr(self, name) <= 0:
                raise HatError(f"--{name.replace('_', '-')} must be positive")


@dataclass
class TrainState:
    epoch: int = 1
    batch_offset: int = 0  # batches of this epoch already consumed (this rank)
    updates: int = 0
    best_loss: float = math.inf
    wall_seconds: float = 0.0
    valid_losses: list[list[float]] = field(default_factory=list)  # [update, loss] (main rank)


def loss_change(
    valid_losses: list[list[float]], smoothing: int, window: float = CONVERGENCE_WINDOW
) -> float | None:
    """Relative change of the validation loss over the last `window` of the updates, the larger
    of two: the last validation (at update u) against the latest one at or before
    (1 - window) x u, and the mean of the last `smoothing` validations against the mean of the
    `smoothing` ending at that earlier one. None while there are fewer than `smoothing`
    validations before the window or within it (a short run's window is narrower than the
    validation interval: the two means would share validations and hide the change)."""
    if not valid_losses:
        return None
    losses = [loss for _, loss in valid_losses]
    early = sum(u <= (1 - window) * valid_losses[-1][0] for u, _ in valid_losses)  # a prefix
    if early < smoothing or len(losses) - early < smoothing:
        return None

    def change(before: list[float], now: list[float]) -> float:
        mean_before = sum(before) / len(before)
        return abs(mean_before - sum(now) / len(now)) / mean_before

    return max(
        change(losses[early - 1 : early], losses[-1:]),
        change(losses[early - smoothing : early], losses[-smoothing:]),
    )


class JsonlLog:
    """Append-and-flush JSON lines (only the main rank writes)."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()


def restore_path(restore_file: str, save_dir: str | Path) -> Path:
    """Where `--restore-file` points: the default name in `save_dir`, anything else as given."""
    if restore_file == DEFAULT_RESTORE_FILE:
        return Path(save_dir) / restore_file
    return Path(restore_file)


def model_meta(model: EncoderDecoder) -> dict[str, Any]:
    """What a checkpoint needs to rebuild `model`: its kind, space or arch, and settings."""
    if isinstance(model, SuperTransformer):
        described = {"kind": "supernet", "space": model.space.to_hat_dict()}
    else:
        described = {"kind": "subtransformer", "arch": model.arch.to_dict()}
    return {**described, "settings": model.settings.to_dict()}


class Trainer:
    def __init__(
        self,
        model: EncoderDecoder,
        cfg: TrainConfig,
        data: DataDir,
        sampler: ConfigSampler | None,
        world: DistInfo,
        extra_meta: dict[str, Any] | None = None,
    ):
        """`sampler`: which SubTransformers a SuperTransformer trains (None: train `model` as is).
        Checkpoints describe the model (`model_meta`), the data and `extra_meta`."""
        self.model, self.cfg, self.data, self.sampler, self.world = model, cfg, data, sampler, world
        self.device = world.device
        self.meta = {
            **model_meta(model),
            "data": {"source_lang": data.source_lang, "target_lang": data.target_lang},
            **(extra_meta or {}),
            "spm_model": (data.path / "spm.model").read_bytes(),
        }
        self.model.to(self.device)
        self.params = list(model.parameters())
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=1.0,
            betas=cfg.adam_betas,
            eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay,
            fused=self._fused_adam,
        )
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule)
        self.autocast, self.scaler = self._precision()
        self.state = TrainState()
        self.last_valid: dict[str, Any] = {}
        self._converged_logged = False
        self.checkpoints = CheckpointManager(
            cfg.save_dir, cfg.keep_last_epochs, cfg.keep_interval_updates
        )
        self.log = JsonlLog(Path(cfg.save_dir) / "train_log.jsonl", world.is_main)
        positions = (model.settings.max_source_positions, model.settings.max_target_positions)
        self.train_set = data.split("train")
        self.batcher = TokenBatcher(
            self.train_set.src_sizes,
            self.train_set.tgt_sizes,
            cfg.max_tokens,
            cfg.max_sentences,
            positions,
            seed=cfg.seed,
            shuffle=True,
            num_shards=world.world_size,
            shard_id=world.rank,
        )
        self.valid_set: ParallelDataset | None = None
        if cfg.valid_subset in data.splits:
            self.valid_set = data.split(cfg.valid_subset)
            self.valid_batches = TokenBatcher(
                self.valid_set.src_sizes,
                self.valid_set.tgt_sizes,
                cfg.max_tokens,
                cfg.max_sentences,
                positions,
                shuffle=False,
            ).batches(1)
        self._start_time = time.time()

    # --- setup --------------------------------------------------------------------------
    @property
    def _fused_adam(self) -> bool | None:
        """AdamW's fused kernel on the CPU: one pass over all parameters, ~4x faster steps than
        the default per-parameter loop (docs/benchmarks.md); the default elsewhere."""
        return True if self.device.type == "cpu" else None

    def _precision(self):
        p = self.cfg.precision
        if p == "fp32":
            return nullcontext, None
        if p == "fp16":
            if self.device.type != "cuda":
                raise HatError("--fp16 needs a CUDA device; train in fp32 on the CPU (or --bf16)")
            return (lambda: mixed_precision("cuda", torch.float16)), torch.amp.GradScaler("cuda")
        if p == "bf16":
            if self.device.type == "cpu" and cpu_has_bf16() is False:
                log.warning(
                    "--bf16: this CPU has no bf16 instructions (%s): bf16 autocast emulates "
                    "them and trains slower than fp32 here",
                    " or ".join(sorted(BF16_CPU_FLAGS)),
                )
            if self.device.type == "cpu":
                os.environ.setdefault(ONEDNN_CACHE_VARIABLE, BF16_CPU_PRIMITIVE_CACHE)
            return (lambda: mixed_precision(self.device.type, torch.bfloat16)), None
        raise HatError(f"unknown precision {p}")

    def resume(self) -> bool:
        """Load the checkpoint to resume from if it exists; True if resumed.

        fairseq's rule: the default name (checkpoint_last.pt) is looked up in save_dir, any other
        `restore_file` is a path as given (a stray file in the working directory is never used)."""
        path = restore_path(self.cfg.restore_file, self.cfg.save_dir)
        if not path.exists():
            if self.cfg.restore_file != DEFAULT_RESTORE_FILE:  # fairseq trains from scratch too
                log.warning("--restore-file %s not found: training from scratch", path)
            return False
        from hat.checkpoint import (
            load_checkpoint,
            load_optimizer_state,
            load_weights,
            require_entries,
        )

        payload = load_checkpoint(path, kind=TRAIN_FORMAT, require=("model",))
        load_weights(
            self.model,
            payload["model"],
            path,
            hint=" being trained (different space or architecture?)",
        )
        if payload.get("optimizer") is not None:
            require_entries(payload, path, ("scheduler", "train_state", "rng"))
            load_optimizer_state(self.optimizer, payload["optimizer"], path)
            for group in self.optimizer.param_groups:  # this run's kernel, not the checkpoint's
                group["fused"] = self._fused_adam
            move_optimizer_state(self.optimizer, self.device)
            self.scheduler.load_state_dict(payload["scheduler"])
            if self.scaler is not None and payload.get("scaler"):
                self.scaler.load_state_dict(payload["scaler"])
            self.state = TrainState(**payload["train_state"])
            self.last_valid = dict(payload.get("valid", {}))
            torch.set_rng_state(payload["rng"]["torch"])
            if torch.cuda.is_available() and payload["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(payload["rng"]["cuda"], self.device)
        log.info("resumed from %s: epoch %d, update %d", path, self.state.epoch, self.state.updates)
        self.log.write(
            {
                "type": "resume",
                "from": str(path),
                "update": self.state.updates,
                "epoch": self.state.epoch,
            }
        )
        return True

    # --- the loop -----------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[tuple[torch.Tensor, float]]:
        """This rank's batches, padded with zero-weight repeats to the same count on every rank."""
        mine = self.batcher.batches(epoch)
        steps = self.batcher.steps_per_shard(epoch)
        return [(b, 1.0) for b in mine] + [(mine[0], 0.0)] * (steps - len(mine))

    def _finished(self) -> bool:
        c, s = self.cfg, self.state
        if c.max_update and s.updates >= c.max_update:
            return True
        if c.max_epoch and s.epoch > c.max_epoch:
            return True
        if not (c.stop_time_hours or c.convergence_tolerance):
            return False
        time_up = float(bool(c.stop_time_hours) and self._elapsed() >= c.stop_time_hours * 3600)
        change, converged = self.convergence if c.convergence_tolerance else (None, False)
        converged = float(converged)
        time_up, converged = all_reduce_sum([time_up, converged], self.world)  # every rank agrees
        if converged and not self._converged_logged and self.world.is_main:
            self._converged_logged = True
            log.info(
                "converged at update %d: validation loss changed %.2f%% over the last %d%% of "
                "the updates (< %.2f%%)",
                s.updates,
                100 * change,
                100 * CONVERGENCE_WINDOW,
                100 * c.convergence_tolerance,
            )
        return time_up > 0 or converged > 0

    @property
    def convergence(self) -> tuple[float | None, bool]:
        """The validation loss's relative change over the last 20% of the updates (`loss_change`;
        None before enough validations that early) and whether it is below
        --convergence-tolerance."""
        change = loss_change(self.state.valid_losses, self.cfg.convergence_smoothing)
        return change, change is not None and change < self.cfg.convergence_tolerance

    def _elapsed(self) -> float:
        return self.state.wall_seconds + time.time() - self._start_time

    def train(self) -> dict[str, Any]:
        """Train until max-update, max-epoch or stop-time-hours; return the last validation."""
        if self.world.is_main:
            log.info("batching: %s", self.batcher.report)
        last_valid = self.last_valid  # a finished run, resumed, reports its last validation
        while not self._finished():
            epoch = self.state.epoch
            batches = self._epoch_batches(epoch)
            uf = self.cfg.update_freq
            bar = tqdm(
                total=math.ceil(len(batches) / uf),
                initial=self.state.batch_offset // uf,
                desc=f"epoch {epoch:03d}",
                unit="upd",
                leave=False,
                disable=not (self.world.is_main and self.cfg.progress_bar) or None,
            )
            while self.state.batch_offset < len(batches) and not self._finished():
                start = self.state.batch_offset
                group = batches[start : start + uf]
                stats = self._update(group)
                self.state.batch_offset = start + len(group)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{stats['loss']:.3f}",
                    lr=f"{stats['lr']:.2e}",
                    tok_s=f"{stats['tokens_per_s']:.0f}",
                )
                if self.state.updates % self.cfg.log_interval == 0 or self.state.updates == 1:
                    self.log.write({"type": "train", **stats})
                    if self.world.is_main and bar.disable:  # no progress bar: log lines instead
                        log.info(
                            "update %d | loss %.3f | nll %.3f | lr %.3e | %.0f tok/s",
                            stats["update"],
                            stats["loss"],
                            stats["nll_loss"],
                            stats["lr"],
                            stats["tokens_per_s"],
                        )
                mid_valid = (
                    self.cfg.validate_interval_updates
                    and self.state.updates % self.cfg.validate_interval_updates == 0
                )
                mid_save = (
                    self.cfg.save_interval_updates
                    and self.state.updates % self.cfg.save_interval_updates == 0
                )
                if mid_valid:
                    last_valid = self.validate()
                if mid_save or mid_valid:
                    self._save(last_valid, end_of_epoch=False, keep_update=bool(mid_save))
            bar.close()
            if self.state.batch_offset >= len(batches):  # the epoch is complete
                if epoch % self.cfg.validate_interval == 0 or self._finished():
                    last_valid = self.validate()
                self.state.epoch, self.state.batch_offset = epoch + 1, 0
                self._save(last_valid, end_of_epoch=True, keep_update=False, epoch=epoch)
            else:  # stopped mid-epoch (max-update / time budget)
                last_valid = self.validate()
                self._save(last_valid, end_of_epoch=False, keep_update=False)
        return last_valid

    def _update(self, group: list[tuple[torch.Tensor, float]]) -> dict[str, float]:
        t0 = time.time()
        self.model.train()
        configs = self.sampler.configs(self.state.updates) if self.sampler else [None]
        distill = len(configs) > 1 and self.cfg.distill_weight > 0
        loss_sum = nll_sum = ntokens = 0.0
        self.optimizer.zero_grad(set_to_none=True)
        for indices, weight in group:
            batch = self.train_set.collate(indices.tolist()).to(self.device)
            teacher = None
            for j, arch in enumerate(configs):
                if j == 0:  # the largest in sandwich sampling: learns from the data alone
                    loss, nll, teacher = self._forward(batch, arch, teach=distill)
                    loss_sum += weight * loss.item()
                    nll_sum += weight * nll.item()
                else:
                    loss, _, _ = self._forward(batch, arch, teacher=teacher)
                self._backward(loss * weight)
            ntokens += weight * batch.ntokens
        loss_sum, nll_sum, ntokens = all_reduce_sum([loss_sum, nll_sum, ntokens], self.world)
        lr = self.scheduler.get_last_lr()[0]
        gnorm = self._step(ntokens)
        self.state.updates += 1
        elapsed = time.time() - t0
        return {
            "update": self.state.updates,
            "epoch": self.state.epoch,
            "loss": loss_sum / ntokens / LN2,
            "nll_loss": nll_sum / ntokens / LN2,
            "lr": lr,
            "gnorm": gnorm,
            "ntokens": ntokens,
            "tokens_per_s": ntokens / max(elapsed, 1e-9),
            "wall": round(self._elapsed(), 2),
        }

    def _forward(
        self,
        batch: Batch,
        arch: ArchConfig | None,
        teach: bool = False,
        teacher: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(loss, nll, distribution), projected a block of target tokens at a time (criterion.py:
        logits never held whole). With `teach`, the distribution is this model's over the
        vocabulary at each non-pad target token, for students' `teacher` (else None). A
        student's loss is distill-weight x KL(teacher || student) + the rest x its
        label-smoothed loss, and its nll None."""
        if arch is not None:
            self.model.set_config(arch)
        smoothing, share = self.cfg.label_smoothing, self.cfg.distill_weight
        with self.autocast():
            features, weight = self.model.output_inputs(batch.src_tokens, batch.prev_output_tokens)
            if teach:
                return projected_teacher_loss(features, weight, batch.target, smoothing)
            if teacher is None:
                loss, nll = projected_label_smoothed_nll(features, weight, batch.target, smoothing)
                return loss, nll, None
            loss = projected_distillation_loss(features, weight, teacher, batch.target)
            if share < 1:
                ce, _ = projected_label_smoothed_nll(features, weight, batch.target, smoothing)
                loss = share * loss + (1 - share) * ce
            return loss, None, None

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def _step(self, ntokens: float) -> float:
        """Sum gradients over ranks, normalise by the update's tokens, clip, step; the norm."""
        all_reduce_gradients(self.params, self.world)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        for p in self.params:
            if p.grad is not None:
                p.grad.div_(max(ntokens, 1.0))
        gnorm = torch.nn.utils.clip_grad_norm_(
            self.params, self.cfg.clip_norm if self.cfg.clip_norm > 0 else math.inf
        )
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return float(gnorm)

    # --- validation -----------------------------------------------------------------------
    def represent_configs(self) -> dict[str, ArchConfig | None]:
        """HAT validates the largest and smallest SubTransformers of a SuperTransformer."""
        if self.sampler is None:
            return {"model": None}
        return {"largest": self.sampler.space.largest(), "smallest": self.sampler.space.smallest()}

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Validation loss (base 2, per target token) of each represent config (main rank)."""
        if self.valid_set is None:
            return {}
        result: dict[str, Any] = {
            "type": "valid",
            "update": self.state.updates,
            "epoch": self.state.epoch,
        }
        if self.world.is_main:
            self.model.eval()
            losses = []
            for name, arch in self.represent_configs().items():
                loss = nll = tokens = 0.0
                for indices in self.valid_batches:
                    batch = self.valid_set.collate(indices.tolist()).to(self.device)
                    batch_loss, batch_nll, _ = self._forward(batch, arch)
                    loss += batch_loss.item()
                    nll += batch_nll.item()
                    tokens += batch.ntokens
                result[f"{name}_loss"] = loss / tokens / LN2
                result[f"{name}_nll_loss"] = nll / tokens / LN2
                losses.append(result[f"{name}_loss"])
                if self.cfg.eval_bleu:
                    from hat.evaluate import translate_dataset

                    model = self.model if arch is None else self.model.export(arch)
                    bleu = translate_dataset(
                        model,
                        self.valid_set,
                        self.data.tokenizer,
                        beam=self.cfg.eval_bleu_beam,
                        max_tokens=self.cfg.max_tokens,
                        device=self.device,
                    ).sacrebleu
                    result[f"{name}_bleu"] = bleu
            result["loss"] = sum(losses) / len(losses)
            history = self.state.valid_losses
            if history and history[-1][0] == self.state.updates:  # validated again, same weights
                history.pop()
            history.append([self.state.updates, result["loss"]])
            self.log.write(result)
            log.info(
                "valid | update %d | %s",
                self.state.updates,
                " | ".join(
                    f"{k} {v:.3f}" for k, v in result.items() if k.endswith(("loss", "bleu"))
                ),
            )
        barrier(self.world)
        return result

    # --- checkpoints ----------------------------------------------------------------------
    def _save(
        self, valid: dict[str, Any], end_of_epoch: bool, keep_update: bool, epoch: int | None = None
    ) -> None:
        if self.world.is_main:
            is_best = (
                "loss" in valid
                and valid["update"] == self.state.updates
                and valid["loss"] < self.state.best_loss
            )
            if is_best:
                self.state.best_loss = valid["loss"]
            self.state.wall_seconds = self._elapsed()
            self._start_time = time.time()
            payload = {
                "format": TRAIN_FORMAT,
                "version": 1,
                **self.meta,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "train_state": asdict(self.state),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(self.device)
                    if self.device.type == "cuda"
                    else None,
                },
                "valid": {k: v for k, v in valid.items() if isinstance(v, (int, float, str))},
            }
            keep_epoch = epoch is not None and epoch % self.cfg.save_interval == 0
            self.checkpoints.save(
                payload,
                epoch or self.state.epoch,
                self.state.updates,
                end_of_epoch,
                keep_epoch=keep_epoch,
                keep_update=keep_update,
                is_best=is_best,
            )
        barrier(self.world)

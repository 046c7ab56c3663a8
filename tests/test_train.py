"""Training: schedules, loss, SuperTransformer / SubTransformer runs, checkpoints, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import (
    REPO,
    TOY_TASK,
    assert_one_line_error,
    outside_tiny_space,
    run_cli,
    tiny_space,
)

from hat.errors import HatError
from hat.train import criterion
from hat.train.checkpoints import load_model
from hat.train.criterion import (
    label_smoothed_nll,
    projected_distillation_loss,
    projected_label_smoothed_nll,
    projected_teacher_loss,
)
from hat.train.sampling import ConfigSampler
from hat.train.schedule import ScheduleConfig, lr_function

TRAIN_KEYS = {
    "max-tokens": 600,
    "dropout": 0.1,
    "lr": 0.002,
    "warmup-updates": 20,
    "warmup-init-lr": 1e-5,
    "log-interval": 1,
    "no-progress-bar": True,
    "cpu": True,
    "seed": 3,
}


def write_space_yaml(path: Path, **extra) -> Path:
    path.write_text(
        yaml.safe_dump({**tiny_space().to_hat_dict(), **TRAIN_KEYS, **extra}, sort_keys=False)
    )
    return path


def read_log(save_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (save_dir / "train_log.jsonl").read_text().splitlines()]


def test_inverse_sqrt_and_cosine_schedules():
    f = lr_function(ScheduleConfig("inverse_sqrt", lr=1e-3, warmup_updates=100, warmup_init_lr=0.0))
    assert f(0) == 0 and f(50) == pytest.approx(5e-4) and f(100) == pytest.approx(1e-3)
    assert f(400) == pytest.approx(5e-4)  # lr * sqrt(100 / 400)
    c = lr_function(
        ScheduleConfig(
            "cosine",
            lr=1e-7,
            max_lr=1e-3,
            warmup_updates=10,
            warmup_init_lr=1e-7,
            max_update=110,
            lr_shrink=0.5,
        )
    )
    assert c(10) == pytest.approx(1e-3) and c(60) == pytest.approx((1e-3 + 1e-7) / 2)
    assert c(109) == pytest.approx(1e-7, abs=1e-6)
    assert c(110) == pytest.approx(0.5e-3)  # restart, shrunk
    with pytest.raises(HatError, match="needs --max-lr"):
        lr_function(ScheduleConfig("cosine", max_update=100))


def test_label_smoothed_loss_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    target = torch.randint(4, 11, (3, 5))
    target[0, 3:] = 1  # pad
    loss, nll = label_smoothed_nll(logits, target, 0.1)
    ref = F.cross_entropy(
        logits.view(-1, 11), target.view(-1), ignore_index=1, label_smoothing=0.1, reduction="sum"
    )
    ref_nll = F.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=1, reduction="sum")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5) and nll.item() == pytest.approx(
        ref_nll.item(), rel=1e-5
    )


@pytest.mark.parametrize("block_rows", [1, 4, 100])
def test_projected_loss_matches_logits_loss_and_gradients(monkeypatch, block_rows):
    """Blockwise projection with gradients formed in forward: the loss, nll and the gradients
    of the features and the weight are those of logits -> label_smoothed_nll; pads add
    nothing; without grad mode nothing is kept for backward."""
    vocab, dim = 11, 6
    monkeypatch.setattr(criterion, "BLOCK_BYTES", 4 * vocab * block_rows)
    torch.manual_seed(0)
    features = torch.randn(3, 5, dim, requires_grad=True)
    weight = torch.randn(vocab, dim, requires_grad=True)
    target = torch.randint(4, vocab, (3, 5))
    target[0, 3:] = 1  # pad
    loss, nll = label_smoothed_nll(F.linear(features, weight), target, 0.1)
    (0.5 * loss).backward()
    want = features.grad.clone(), weight.grad.clone()
    features.grad = weight.grad = None
    got_loss, got_nll = projected_label_smoothed_nll(features, weight, target, 0.1)
    assert got_loss.item() == pytest.approx(loss.item(), rel=1e-6)
    assert got_nll.item() == pytest.approx(nll.item(), rel=1e-6) and not got_nll.requires_grad
    (0.5 * got_loss).backward()
    torch.testing.assert_close(features.grad, want[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weight.grad, want[1], rtol=1e-5, atol=1e-6)
    assert features.grad[0, 3:].abs().sum() == 0  # pad positions get no gradient
    with torch.no_grad():
        quiet_loss, _ = projected_label_smoothed_nll(features, weight, target, 0.1)
    assert quiet_loss.item() == pytest.approx(loss.item(), rel=1e-6)
    assert quiet_loss.grad_fn is None


@pytest.mark.parametrize("block_rows", [1, 4, 100])
def test_projected_distillation_matches_kl_div_and_its_gradients(monkeypatch, block_rows):
    """The teacher's loss is the projected loss and its distribution softmax(logits) at the
    non-pad tokens; a student's blockwise KL(teacher || student) and its gradients are those of
    F.kl_div on the logits; pads add nothing; a student equal to its teacher scores 0."""
    vocab, dim = 11, 6
    monkeypatch.setattr(criterion, "BLOCK_BYTES", 4 * vocab * block_rows)
    torch.manual_seed(0)
    target = torch.randint(4, vocab, (3, 5))
    target[0, 3:] = 1  # pad
    keep = target.view(-1).ne(1)
    teacher_features = torch.randn(3, 5, dim, requires_grad=True)
    teacher_weight = torch.randn(vocab, dim)
    loss, nll, probs = projected_teacher_loss(teacher_features, teacher_weight, target, 0.1)
    want_loss, want_nll = label_smoothed_nll(
        F.linear(teacher_features, teacher_weight), target, 0.1
    )
    assert (loss.item(), nll.item()) == pytest.approx((want_loss.item(), want_nll.item()), rel=1e-6)
    teacher_logits = F.linear(teacher_features, teacher_weight).detach().view(-1, vocab)[keep]
    torch.testing.assert_close(probs, teacher_logits.softmax(-1))
    assert not probs.requires_grad and probs.shape == (int(keep.sum()), vocab)

    features = torch.randn(3, 5, dim - 2, requires_grad=True)  # a narrower student
    weight = torch.randn(vocab, dim - 2, requires_grad=True)
    want = F.kl_div(
        F.linear(features, weight).view(-1, vocab)[keep].log_softmax(-1),
        teacher_logits.log_softmax(-1),
        log_target=True,
        reduction="sum",
    )
    (0.5 * want).backward()
    want_grads = features.grad.clone(), weight.grad.clone()
    features.grad = weight.grad = None
    got = projected_distillation_loss(features, weight, probs, target)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    (0.5 * got).backward()
    torch.testing.assert_close(features.grad, want_grads[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weight.grad, want_grads[1], rtol=1e-5, atol=1e-6)
    assert features.grad[0, 3:].abs().sum() == 0
    same = projected_distillation_loss(teacher_features, teacher_weight, probs, target)
    assert same.item() == pytest.approx(0.0, abs=1e-5)


def test_projected_loss_under_bf16_autocast_tracks_fp32():
    torch.manual_seed(1)
    features = torch.randn(40, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    target = torch.randint(4, 50, (40,))
    loss, _ = label_smoothed_nll(F.linear(features, weight), target, 0.1)
    loss.backward()
    want = features.grad.clone()
    features.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = projected_label_smoothed_nll(features, weight, target, 0.1)
    got.backward()
    assert got.dtype == torch.float32 and got.item() == pytest.approx(loss.item(), rel=2e-2)
    assert features.grad.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(features.grad.view(-1), want.view(-1), 0) > 0.99

    teacher = torch.randn(40, 50).softmax(-1)  # distillation: the same, KL's value in fp32
    features.grad = None
    kl = projected_distillation_loss(features, weight, teacher, target)
    kl.backward()
    want = kl.item(), features.grad.clone()
    features.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = projected_distillation_loss(features, weight, teacher, target)
    got.backward()
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want[0], rel=2e-2)
    assert torch.nn.functional.cosine_similarity(features.grad.view(-1), want[1].view(-1), 0) > 0.99


def test_sampler_is_a_function_of_seed_and_update():
    space = tiny_space()
    a, b = ConfigSampler(space, "uniform", seed=1), ConfigSampler(space, "uniform", seed=1)
    assert [a.configs(u) for u in range(20)] == [b.configs(u) for u in range(20)]
    assert len({a.configs(u)[0] for u in range(20)}) > 10
    sandwich = ConfigSampler(space, "sandwich", seed=1, n_random=2).configs(7)
    assert sandwich[0] == space.largest() and sandwich[1] == space.smallest() and len(sandwich) == 4


def test_supernet_training_run(tmp_path: Path, toy_bin: Path):
    cfg = write_space_yaml(tmp_path / "space.yml")
    save = tmp_path / "ckpt"
    result = run_cli(
        f"--configs={cfg}",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(save),
        "--max-epoch",
        "2",
        "--keep-last-epochs",
        "1",
        "--sampling",
        "sandwich",
        "--max-tokens",
        "2000",
        script="train.py",
    )
    assert result.returncode == 0, result.stderr
    assert "done:" in result.stdout and "largest_loss" in result.stdout
    records = read_log(save)
    train = [r for r in records if r["type"] == "train"]
    valid = [r for r in records if r["type"] == "valid"]
    assert len(valid) == 2 and {"largest_loss", "smallest_loss"} <= valid[-1].keys()
    assert train[-1]["loss"] < train[0]["loss"]
    assert valid[-1]["largest_loss"] < valid[0]["largest_loss"]
    assert sorted(p.name for p in save.glob("*.pt")) == [
        "checkpoint2.pt",
        "checkpoint_best.pt",
        "checkpoint_last.pt",
    ]
    space = tiny_space()
    model, payload = load_model(save / "checkpoint_best.pt", space.smallest())
    assert payload["kind"] == "supernet" and model.arch == space.smallest()
    with pytest.raises(HatError, match="pass --configs"):
        load_model(save / "checkpoint_best.pt")


def test_subtransformer_from_scratch_generate_and_average(
    tmp_path: Path, toy_bin: Path, toy_raw: Path
):
    space = tiny_space()
    sub = tmp_path / "sub.yml"
    space.smallest().to_yaml(sub)
    common = write_space_yaml(tmp_path / "common.yml", **{"train-subtransformer": True})
    save = tmp_path / "ckpt"
    result = run_cli(
        "train",
        f"--configs={sub}",
        f"--sub-configs={common}",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(save),
        "--max-epoch",
        "3",
        "--eval-bleu",
        "--eval-bleu-beam",
        "1",
        "--max-tokens",
        "2000",
    )
    assert result.returncode == 0, result.stderr
    valid = [r for r in read_log(save) if r["type"] == "valid"]
    assert "model_loss" in valid[-1] and "model_bleu" in valid[-1]
    model, payload = load_model(save / "checkpoint_last.pt")
    assert payload["kind"] == "subtransformer" and model.arch == space.smallest()
    assert model.settings.supernet_encoder_embed_dim == 64  # HAT: dropout/positions of the supernet
    avg = tmp_path / "avg.pt"
    result = run_cli(
        "--inputs",
        str(save),
        "--num-epoch-checkpoints",
        "3",
        "--output",
        str(avg),
        script="average_checkpoints.py",
    )
    assert result.returncode == 0, result.stderr
    averaged, _ = load_model(avg)
    states = [load_model(save / f"checkpoint{e}.pt")[0].state_dict() for e in (1, 2, 3)]
    key = "decoder_layers.0.fc1.weight"
    assert torch.allclose(averaged.state_dict()[key], sum(s[key] for s in states) / 3, atol=1e-6)
    out = tmp_path / "results"
    result = run_cli(
        "--data",
        str(toy_bin),
        "--path",
        str(avg),
        "--gen-subset",
        "test",
        "--beam",
        "2",
        "--results-path",
        str(out),
        "--json",
        "--quiet",
        script="generate.py",
    )
    assert result.returncode == 0, result.stderr
    score = json.loads(result.stdout.strip().splitlines()[-1])
    sentences = TOY_TASK["test"]
    assert score["sentences"] == sentences and 0 <= score["bleu"] <= 100
    assert score["sentences_per_second"] == pytest.approx(sentences / score["seconds"])
    assert score["tokens_per_second"] * score["seconds"] >= sentences  # at least </s> each
    refs = (out / "test.ref.de").read_text(encoding="utf-8").splitlines()
    assert refs == (toy_raw / "test.de").read_text(encoding="utf-8").splitlines()
    assert len((out / "test.hyp.de").read_text(encoding="utf-8").splitlines()) == sentences
    normal = run_cli(
        "generate",
        "--data",
        str(toy_bin),
        "--path",
        str(avg),
        "--beam",
        "1",
        "--scoring",
        "normal",
        "--compound-split",
        "--quiet",
    )
    assert normal.returncode == 0 and "BLEU (tokenized, compound split)" in normal.stdout


def _train_cmd(cfg: Path, toy_bin: Path, save: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train.py"),
        f"--configs={cfg}",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(save),
        "--max-update",
        "40",
        "--save-interval-updates",
        "5",
        "--dropout",
        "0.2",
        *extra,
    ]


def test_resume_after_kill_continues_exactly(tmp_path: Path, toy_bin: Path):
    cfg = write_space_yaml(tmp_path / "space.yml")
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(cfg, toy_bin, straight), check=True, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(cfg, toy_bin, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # kill -9 once a mid-epoch checkpoint exists and training went on
        log_file = killed / "train_log.jsonl"
        if (killed / "checkpoint_last.pt").exists() and log_file.exists():
            updates = [
                json.loads(x)["update"] for x in log_file.read_text().splitlines() if '"train"' in x
            ]
            if updates and updates[-1] >= 12:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = torch.load(killed / "checkpoint_last.pt", weights_only=True)["train_state"]["updates"]
    assert 5 <= before < 40
    subprocess.run(_train_cmd(cfg, toy_bin, killed), check=True, capture_output=True, timeout=300)
    resumed = [r for r in read_log(killed)]
    marker = next(i for i, r in enumerate(resumed) if r["type"] == "resume")
    after = [r for r in resumed[marker + 1 :] if r["type"] == "train"]
    reference = {r["update"]: r for r in read_log(straight) if r["type"] == "train"}
    assert after[0]["update"] == before + 1  # the update count continues
    for r in after:  # same data order, same sampled SubTransformers, same dropout, same lr
        assert r["lr"] == pytest.approx(reference[r["update"]]["lr"], rel=1e-9)
        assert r["loss"] == pytest.approx(reference[r["update"]]["loss"], rel=1e-5)
    assert after[-1]["update"] == 40


def test_bad_restore_file_and_data_are_one_line_errors(tmp_path: Path, toy_bin: Path):
    cfg = write_space_yaml(tmp_path / "space.yml")
    save = tmp_path / "ckpt"
    save.mkdir()
    (save / "checkpoint_last.pt").write_bytes(b"not a checkpoint at all")
    result = run_cli(
        "train",
        f"--configs={cfg}",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(save),
        "--max-update",
        "2",
    )
    assert_one_line_error(result, "not a readable checkpoint", after_log=True)
    result = run_cli(
        "train", f"--configs={cfg}", "--data", str(tmp_path / "nodata"), "--save-dir", str(save)
    )
    assert_one_line_error(result, "not a hat data directory")
    result = run_cli("train", f"--configs={cfg}", "--data", str(toy_bin), "--adam-betas", "0.9")
    assert_one_line_error(result, "--adam-betas")


def test_restore_file_follows_fairseqs_rule(tmp_path: Path, toy_bin: Path):
    """The default name is looked up in --save-dir only: a stray checkpoint_last.pt in the working
    directory is never picked up; any other --restore-file is a path as given."""
    cfg = write_space_yaml(tmp_path / "space.yml")
    work = tmp_path / "work"
    work.mkdir()
    (work / "checkpoint_last.pt").write_bytes(b"a stray file, not this run's checkpoint")
    save = tmp_path / "ckpt"
    result = run_cli(
        "train",
        f"--configs={cfg}",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(save),
        "--max-update",
        "2",
        "--no-progress-bar",
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    assert "resumed" not in result.stderr and (save / "checkpoint_last.pt").exists()
    (work / "mine.pt").write_bytes((save / "checkpoint_last.pt").read_bytes())
    result = run_cli(
        "train",
        f"--configs={cfg}",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(tmp_path / "c2"),
        "--max-update",
        "3",
        "--restore-file",
        "mine.pt",
        "--no-progress-bar",
        cwd=work,
    )
    assert result.returncode == 0 and "resumed from mine.pt" in result.stderr, result.stderr
    result = run_cli(
        "train",
        f"--configs={cfg}",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(tmp_path / "c3"),
        "--max-update",
        "1",
        "--restore-file",
        "missing.pt",
        "--no-progress-bar",
        cwd=work,
    )
    assert (
        result.returncode == 0
        and "--restore-file missing.pt not found: training from scratch" in result.stderr
    )


def test_fixed_subtransformer_must_fit_its_supernet(tmp_path: Path, toy_bin: Path):
    big = outside_tiny_space()
    sub = tmp_path / "sub.yml"
    big.to_yaml(sub)
    common = write_space_yaml(tmp_path / "common.yml")
    result = run_cli(
        "train",
        f"--configs={sub}",
        f"--sub-configs={common}",
        "--train-subtransformer",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(tmp_path / "c"),
    )
    assert_one_line_error(result, "larger than the supernet")


def test_bf16_on_a_cpu_without_bf16_instructions_warns(tmp_path: Path, monkeypatch, caplog):
    """cpu_has_bf16 reads the CPU's flags; --bf16 on a CPU without them still autocasts to
    bf16 but warns that it will be slower than fp32."""
    from types import SimpleNamespace

    import hat.train.trainer as trainer

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert trainer.cpu_has_bf16(info) is True
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n")
    assert trainer.cpu_has_bf16(info) is False
    assert trainer.cpu_has_bf16(tmp_path / "missing") is None

    monkeypatch.setattr(trainer, "cpu_has_bf16", lambda: False)
    fake = SimpleNamespace(cfg=SimpleNamespace(precision="bf16"), device=torch.device("cpu"))
    with caplog.at_level("WARNING", logger="hat.train.trainer"):
        autocast, scaler = trainer.Trainer._precision(fake)
    assert scaler is None and "no bf16 instructions" in caplog.text
    with autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_bf16_on_the_cpu_bounds_onednn_primitive_cache(monkeypatch):
    """bf16 on the CPU caps oneDNN's primitive cache (its memory grows with every batch shape)
    unless the user set the variable; fp32 leaves the environment alone."""
    from types import SimpleNamespace

    import hat.train.trainer as trainer

    name = trainer.ONEDNN_CACHE_VARIABLE
    monkeypatch.delenv(name, raising=False)
    fake = SimpleNamespace(cfg=SimpleNamespace(precision="fp32"), device=torch.device("cpu"))
    trainer.Trainer._precision(fake)
    assert name not in os.environ
    fake.cfg.precision = "bf16"
    trainer.Trainer._precision(fake)
    assert os.environ[name] == trainer.BF16_CPU_PRIMITIVE_CACHE
    monkeypatch.setenv(name, "256")
    trainer.Trainer._precision(fake)
    assert os.environ[name] == "256"


def test_loss_change_takes_the_larger_of_the_single_and_the_smoothed_change():
    """The change over the last 20% of the updates: the last validation against the latest at
    or before 80% of the updates, and the mean of the last N against the N ending there."""
    from hat.train.trainer import loss_change

    assert loss_change([], 1) is None and loss_change([[10, 5.0]], 1) is None
    assert loss_change([[5, 10.0], [10, 9.0]], 1) == pytest.approx(0.1)
    assert loss_change([[4, 10.0], [8, 9.95], [10, 9.9]], 1) == pytest.approx(0.05 / 9.95)
    assert loss_change([[4, 10.0], [9, 9.95], [10, 9.9]], 1) == pytest.approx(0.1 / 10.0)
    # a lucky low validation at the early point (update 30 of 38): alone it says 0.6%, the
    # means of three say 5%; the larger counts
    history = [[10, 10.0], [20, 9.8], [30, 9.0], [35, 9.3], [36, 9.1], [38, 8.95]]
    assert loss_change(history, 1) == pytest.approx(0.05 / 9.0)
    assert loss_change(history, 3) == pytest.approx((9.6 - (9.3 + 9.1 + 8.95) / 3) / 9.6)
    # and a lucky last validation on a plateau: the single change is the larger
    plateau = [[10, 9.0], [20, 9.0], [30, 9.0], [35, 9.0], [36, 9.2], [38, 8.8]]
    assert loss_change(plateau, 3) == pytest.approx(0.2 / 9.0)
    assert loss_change(history[1:], 3) is None  # two validations at or before update 30.4
    # a short run (a fine-tuning's first 600 updates): its window (480-600] holds one
    # validation, so the means of three would share two and say 0.54%: too early to judge
    short = [[200, 4.582], [237, 4.580], [400, 4.572], [474, 4.522], [600, 4.506]]
    assert loss_change(short, 3) is None and loss_change(short, 1) < 0.01
    longer = [*short, [711, 4.47], [800, 4.45], [900, 4.44]]
    assert loss_change(longer, 3) is None  # two in (720, 900]
    before, now = (4.506 + 4.47 + 4.45) / 3, (4.44 + 4.43 + 4.42) / 3  # three in (800, 1000]
    assert loss_change([*longer, [948, 4.43], [1000, 4.42]], 3) == pytest.approx(
        (before - now) / before
    )


def test_training_stops_once_the_validation_loss_converged(tmp_path: Path, toy_bin: Path):
    """--convergence-tolerance stops when the validation loss moved less than that fraction over
    the last 20% of the updates (the default smoothing: three validations before them and three
    within them); a resumed run keeps the history and stays stopped."""
    cfg, save = write_space_yaml(tmp_path / "space.yml"), tmp_path / "ckpt"
    flags = ("--validate-interval-updates", "2", "--convergence-tolerance", "0.99")
    cmd = _train_cmd(cfg, toy_bin, save, *flags)
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "converged at update 22" in first.stderr  # at 20: two validations in (16, 20]
    state = torch.load(save / "checkpoint_last.pt", weights_only=True)["train_state"]
    assert state["updates"] == 22  # of --max-update 40
    assert [u for u, _ in state["valid_losses"]] == list(range(2, 23, 2))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    after = torch.load(save / "checkpoint_last.pt", weights_only=True)["train_state"]
    assert after["updates"] == 22 and after["valid_losses"] == state["valid_losses"]


def test_a_resumed_run_steps_with_this_runs_adam_kernel(tmp_path: Path, toy_bin: Path):
    """AdamW's fused kernel on the CPU, also for a checkpoint written with torch's default loop
    (its optimizer state loads, its kernel setting does not)."""
    from hat.data.dataset import DataDir
    from hat.train.distributed import DistInfo
    from hat.train.trainer import TrainConfig, Trainer
    from hat.transformer import ModelSettings, Transformer

    data = DataDir(toy_bin)

    def trainer(updates: int) -> Trainer:
        torch.manual_seed(0)
        settings = ModelSettings(vocab_size=data.vocab_size, qkv_dim=32)
        cfg = TrainConfig(save_dir=str(tmp_path), max_update=updates, progress_bar=False)
        model = Transformer(tiny_space().smallest(), settings)
        return Trainer(model, cfg, data, None, DistInfo())

    first = trainer(2)
    assert [g["fused"] for g in first.optimizer.param_groups] == [True]
    first.train()
    checkpoint = tmp_path / "checkpoint_last.pt"
    payload = torch.load(checkpoint, weights_only=True)
    payload["optimizer"]["param_groups"][0]["fused"] = None  # as the default loop writes it
    torch.save(payload, checkpoint)
    resumed = trainer(3)
    assert resumed.resume() and resumed.state.updates == 2
    assert [g["fused"] for g in resumed.optimizer.param_groups] == [True]
    resumed.train()
    assert resumed.state.updates == 3

"""The ranking study's references (issue #15): each one's validation loss over its updates, and
where the convergence criterion stops it with and without smoothing (`--convergence-smoothing`
1 and 3): one plot, and one JSON line per reference.

    python bench/reference_curves.py --work-dir runs/study15/refs \\
        --out docs/results/multi30k_study/reference_curves.png

The curves come from each reference's latest checkpoint (its validation history), finished
or not, and, with `--ledger`, from the finished references recorded there with their history
(bench/supernet_ranking.py keeps it), whose work dirs may be gone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hat.checkpoint import load_checkpoint  # noqa: E402
from hat.fsutil import atomic_write  # noqa: E402
from hat.ledger import Ledger  # noqa: E402
from hat.train.trainer import loss_change  # noqa: E402


def first_stop(history: list[list[float]], smoothing: int, tolerance: float) -> int | None:
    """The index of the first validation at which the criterion says converged, or None."""
    for i in range(len(history)):
        change = loss_change(history[: i + 1], smoothing)
        if change is not None and change < tolerance:
            return i
    return None


def histories(work_dir: str, ledger: str | None) -> list[tuple[str, dict, list[list[float]]]]:
    """(name, arch, validation history) of each reference: those in the work dir's checkpoints,
    then the last record of each other arch in the ledger that has a history and was trained
    from scratch (named `ledger#N`, N its record's index from 0)."""
    refs = sorted(Path(work_dir).glob("ref*/checkpoint_last.pt"), key=lambda f: f.parent.name)
    found = []
    for checkpoint in refs:
        payload = load_checkpoint(checkpoint)
        found.append(
            (checkpoint.parent.name, payload["arch"], payload["train_state"]["valid_losses"])
        )
    seen = {json.dumps(arch, sort_keys=True) for _, arch, _ in found}
    recorded = {}  # arch -> (name, arch, history): the last record of each arch
    for n, record in enumerate(Ledger(ledger).entries() if ledger else []):
        arch, history = record["inputs"].get("arch"), record["result"].get("valid_history")
        key = json.dumps(arch, sort_keys=True)
        if history and key not in seen and "inherited_from" not in record["inputs"]:
            recorded[key] = (f"ledger#{n}", arch, history)  # from scratch, not fine-tuned
    found += recorded.values()
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", default="runs/study15/refs")
    p.add_argument("--ledger", help="also the finished references of this results ledger")
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--out", default="reference_curves.png")
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (name, arch, history) in enumerate(histories(args.work_dir, args.ledger)):
        label = f"{name}: depth {arch['decoder_layer_num']}, embed {arch['encoder_embed_dim']}"
        updates, losses = [u for u, _ in history], [v for _, v in history]
        ax.plot(updates, losses, "-", c=f"C{k}", lw=1, label=label)
        stops = {}
        for smoothing, marker in ((1, "x"), (3, "o")):
            i = first_stop(history, smoothing, args.tolerance)
            stops[smoothing] = None if i is None else {"update": updates[i], "loss": losses[i]}
            if i is not None:
                ax.plot(updates[i], losses[i], marker, c=f"C{k}", ms=8, mfc="none")
        print(json.dumps({"ref": name, "arch": arch, "validations": len(history), "stops": stops}))
    ax.plot([], [], "kx", label="stop: last validation alone")
    ax.plot([], [], "ko", mfc="none", label="stop: and the mean of the last 3")
    ax.set_ylim(top=min(5.2, ax.get_ylim()[1]))
    ax.set_xlabel("update")
    ax.set_ylabel("validation loss (bits/token)")
    ax.set_title(
        f"ranking study references: converged = < {100 * args.tolerance:g}% change over the "
        "last 20% of updates",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    with atomic_write(args.out, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main()

"""The ranking study's taus against supernet training (issue #15, "more updates"): Kendall tau
of each supernet's order of the references against their validation loss and BLEU, over all
references and within decoder depths (the mean), at each scored stage of each supernet (named
NAME_UPDATES by bench/ranking_study.sh), next to the free proxies; and, for the last stage of
each supernet, each reference's loss with inherited weights against its loss trained alone (the
pairs behind the taus): one plot, one JSON line a supernet.

    python bench/ranking_curves.py --ranking runs/study15/ranking.json \\
        --out docs/results/multi30k_study/ranking_curves.png
"""

from __future__ import annotations

import argparse
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hat.fsutil import atomic_write  # noqa: E402

TRUTHS = {"loss": "validation loss", "bleu": "validation BLEU"}
PROXIES = {"proxy_params": "proxy: #params", "proxy_depth": "proxy: decoder depth"}


def family(name: str) -> str:
    """A supernet's name without its stage: uniform_4000 -> uniform."""
    return re.sub(r"_\d+$", "", name)


def trained(name: str, facts: dict) -> int:
    """A supernet's updates in all: its stage (`fewshot_24000` counts the updates of the
    supernet its parts started from), else those it records."""
    stage = re.search(r"_(\d+)$", name)
    return int(stage.group(1)) if stage else facts["updates"]


def draw_pairs(ax, table: list[dict], supernets: dict, families: list[str]) -> None:
    """Each reference's validation loss with the inherited weights of each family's last stage
    (y) against its own trained alone (x), labelled by decoder depth."""
    truth = [r["valid_loss"] for r in table]
    for k, fam in enumerate(families):
        last = max(
            (n for n in supernets if family(n) == fam), key=lambda n: trained(n, supernets[n])
        )
        inherited = [r["inherited_loss"][last] for r in table]
        ax.scatter(truth, inherited, c=f"C{k}", s=14, label=last)
        for x, y, r in zip(truth, inherited, table, strict=True):
            ax.annotate(
                str(r["depth"]), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points"
            )
    ax.set_title("each reference (label: decoder depth), each supernet's last stage", fontsize=9)
    ax.set_xlabel("validation loss trained alone (bits)")
    ax.set_ylabel("validation loss, inherited weights (bits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranking", required=True, help="bench/supernet_ranking.py's --out")
    p.add_argument("--out", default="ranking_curves.png")
    args = p.parse_args()
    with open(args.ranking) as f:
        study = json.load(f)
    supernets = study["supernets"]
    families = sorted({family(n) for n in supernets})
    fig, axes = plt.subplots(1, len(TRUTHS) + 1, figsize=(16, 4))
    axes[1].sharey(axes[0])  # before drawing: the taus' panels scale to both
    for ax, (truth, title) in zip(axes, TRUTHS.items(), strict=False):
        ranks = study["rank_by"][truth]
        for k, fam in enumerate(families):
            names = sorted(
                (n for n in supernets if family(n) == fam), key=lambda n: trained(n, supernets[n])
            )
            updates = [trained(n, supernets[n]) for n in names]
            for key, style in (("overall", "o-"), ("within_depth_mean", "s--")):
                taus = [ranks[f"supernet_{n}"][key] for n in names]
                taus = [float("nan") if t is None else t for t in taus]  # undefined: a gap
                label = f"{fam}: {'all' if key == 'overall' else 'within depths (mean)'}"
                ax.plot(updates, taus, style, c=f"C{k}", ms=4, label=label)
        for j, (proxy, label) in enumerate(PROXIES.items()):
            for key, style in (("overall", "-"), ("within_depth_mean", "--")):
                tau = ranks[proxy][key]
                if tau is not None:
                    ax.axhline(tau, ls=style, c=f"C{len(families) + j}", lw=0.8, alpha=0.7)
            ax.plot([], [], c=f"C{len(families) + j}", lw=0.8, label=label)
        ax.axhline(0.8, c="k", lw=0.5, ls=":")
        ax.set_title(f"against the references' {title}", fontsize=9)
        ax.set_xlabel("supernet updates")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Kendall tau")
    axes[0].legend(fontsize=7)
    draw_pairs(axes[-1], study["table"], supernets, families)
    fig.suptitle(
        f"{study['references']} references: how supernets rank them (dotted: the goal, 0.8)",
        fontsize=10,
    )
    for name, facts in supernets.items():
        taus = {t: study["rank_by"][t][f"supernet_{name}"]["overall"] for t in TRUTHS}
        print(json.dumps({"supernet": name, "updates": trained(name, facts), "tau": taus}))
    with atomic_write(args.out, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main()

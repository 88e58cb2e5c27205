"""Validation curves of training runs: hole PSNR of the net minus that of its own prefill, its
texture distance over the prefill's (runs that log it), and the training loss of the net over the
prefill's on the same batches (residual runs log both).

    python scripts/plot_curves.py runs/A-lr3e-4 runs/B-lr1e-3-ema runs/final -o docs/curves.png
"""

import argparse
import json
from pathlib import Path


def read(run: Path):
    """(PSNR gains, texture ratios, loss ratios): lists of (step, value) of one run's log."""
    val, texture, ratio, buf = [], [], [], []
    for line in open(run / "log.jsonl"):
        d = json.loads(line)
        if "val" in d:
            model, pre = d["val"]["model"], d["val"]["prefill"]
            val.append((d["step"], model["psnr_hole"] - pre["psnr_hole"]))
            if "texture" in model:
                texture.append((d["step"], model["texture"] / pre["texture"]))
        elif "prefill_rec" in d:
            buf.append((d["step"], d["g_rec"], d["prefill_rec"]))
            if len(buf) == 250:  # one point per 250 steps: sum of losses over sum of prefill losses
                ratio.append((buf[0][0], sum(b[1] for b in buf) / sum(b[2] for b in buf)))
                buf = []
    return val, texture, ratio


PANELS = (("hole PSNR: net − its prefill (dB)", "held-out crops (data/val)", 0),
          ("texture distance: net / its prefill", "held-out crops (data/val)", 1),
          ("training loss / prefill's loss", "same training batches", 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {run: read(run) for run in args.runs}
    # the panels some run has data for (CE runs log no prefill loss, older runs no texture)
    shown = [i for i in range(len(PANELS)) if any(c[i] for c in curves.values())]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 3.8), squeeze=False)
    for ax, i in zip(axes[0], shown):
        for run, c in curves.items():
            if c[i]:
                ax.plot(*zip(*c[i]), marker=".", label=run.name)
        ylabel, title, ref = PANELS[i]
        ax.axhline(ref, color="k", lw=0.8)
        ax.set(xlabel="step", ylabel=ylabel, title=title)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

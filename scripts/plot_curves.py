"""Validation curves of training runs: hole PSNR of the net minus that of its own prefill, and the
training loss of the net over the prefill's on the same batches (residual runs log both).

    python scripts/plot_curves.py runs/A-lr3e-4 runs/B-lr1e-3-ema runs/final -o docs/curves.png
"""

import argparse
import json
from pathlib import Path


def read(run: Path):
    val, ratio, buf = [], [], []
    for line in open(run / "log.jsonl"):
        d = json.loads(line)
        if "val" in d:
            val.append((d["step"], d["val"]["model"]["psnr_hole"] - d["val"]["prefill"]["psnr_hole"]))
        elif "prefill_rec" in d:
            buf.append((d["step"], d["g_rec"], d["prefill_rec"]))
            if len(buf) == 250:  # one point per 250 steps: sum of losses over sum of prefill losses
                ratio.append((buf[0][0], sum(b[1] for b in buf) / sum(b[2] for b in buf)))
                buf = []
    return val, ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {run: read(run) for run in args.runs}
    with_ratio = any(ratio for _, ratio in curves.values())  # (CE runs log no prefill loss)
    fig, axes = plt.subplots(1, 2 if with_ratio else 1, figsize=(11 if with_ratio else 6, 3.8), squeeze=False)
    a = axes[0][0]
    for run, (val, ratio) in curves.items():
        if val:
            a.plot(*zip(*val), marker=".", label=run.name)
        if ratio:
            axes[0][1].plot(*zip(*ratio), marker=".", label=run.name)
    a.axhline(0, color="k", lw=0.8)
    a.set(xlabel="step", ylabel="hole PSNR: net − its prefill (dB)", title="held-out crops (data/val)")
    if with_ratio:
        b = axes[0][1]
        b.axhline(1, color="k", lw=0.8)
        b.set(xlabel="step", ylabel="training loss / prefill's loss", title="same training batches")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

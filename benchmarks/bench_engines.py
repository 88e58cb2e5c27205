"""GLCIC on ONNX Runtime CPU, OpenVINO and PyTorch eager, same weights, same threads, next to this
CPU's own sgemm rate measured in the same run.

Run from the repo root (needs the `train` extra for torch and onnx; OpenVINO when installed):

    python benchmarks/bench_engines.py [--sizes 256,512,1024] [--width 1.0] [--threads N]
                                       [--profile] [--gpu] [--json FILE]

The model is a random-init CompletionNet (train.export.random_model, the same He init the exporter
uses; speed does not depend on the weights) exported to ONNX by train.export; PyTorch eager runs
the same weights with BatchNorm folded into the convolutions, as in the ONNX file. Each size runs
the back-ends interleaved (a rotating order) so a busy machine slows them alike; sgemm (numpy
float32 matmul, 4096^2, same thread count) is one more contender in that loop, so each size's
"of sgemm" compares rates measured at the same moments.

Targets (docs/ARCHITECTURE.md, Targets): ONNX Runtime >= 1.5x PyTorch eager at 512^2; ONNX Runtime >= 75 %
of sgemm; the fastest CPU back-end >= 90 %. When a target is missed, ONNX Runtime's profiler
(per-node times) says which layers take the time (always with --profile).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `train` from the repo root
SGEMM_N = 4096


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,512,1024", help="square sides, comma separated")
    ap.add_argument("--width", type=float, default=1.0, help="CompletionNet channel multiplier")
    ap.add_argument("--threads", type=int, default=None, help="threads for every back-end "
                    "[default: the usable cores]")
    ap.add_argument("--iters", type=int, default=None,
                    help="timed iterations per size [default: 10 at 256, fewer for larger]")
    ap.add_argument("--max-seconds", type=float, default=150.0,
                    help="stop a size's iterations after this long (at least 2 run)")
    ap.add_argument("--model", default=None, help="use this GLCIC .onnx instead of a random one "
                    "(PyTorch eager is then skipped unless --checkpoint)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch eager")
    ap.add_argument("--no-openvino", action="store_true", help="skip OpenVINO")
    ap.add_argument("--profile", action="store_true", help="always profile ONNX Runtime per node")
    ap.add_argument("--profile-size", type=int, default=512)
    ap.add_argument("--gpu", action="store_true",
                    help="add TensorRT FP16 and ONNX Runtime CUDA when a GPU is present")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # BLAS threads must be fixed before numpy loads OpenBLAS (threadpoolctl is used too if present)
    from fastfill.bench import default_threads

    threads = args.threads or default_threads()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import numpy as np

    from fastfill import bench as fb
    from fastfill import ops
    from fastfill.engines import load_engine

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    env = fb.environment(threads)
    print(f"date: {env['date']}")
    print(f"cpu: {env['cpu']}, {env['cores']} cores ({env['usable_cores']} usable); threads per "
          f"back-end: {threads}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))

    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(threads)
            torch.set_num_interop_threads(1)
        except ImportError:
            print("PyTorch not installed: eager skipped (pip install 'fastfill[train]')")
            torch = None

    tmp = tempfile.TemporaryDirectory(prefix="fastfill-bench-")
    eager = None
    if args.model:
        model_path = Path(args.model)
    else:
        if torch is None:
            sys.exit("a random GLCIC needs torch (or pass --model FILE.onnx)")
        from train.export import export_model, fold_batchnorm, random_model
        from train.torch_engine import TorchEngine

        net = random_model("glcic", args.width, seed=0)
        model_path = Path(tmp.name) / f"glcic_w{args.width:g}.onnx"
        t0 = time.perf_counter()
        export_model(net, model_path, provenance={"random_init": True, "seed": 0,
                                                   "config": net.config()}, log=lambda m: None)
        print(f"model: random CompletionNet(width={args.width:g}), exported in "
              f"{time.perf_counter() - t0:.1f} s to a temporary .onnx (BatchNorm folded)")
        eager = fold_batchnorm(copy.deepcopy(net)).eval()

    engines = {"onnxruntime": load_engine(model_path, threads=threads)}
    if not args.no_openvino:
        try:
            engines["openvino"] = load_engine(model_path, backend="openvino", threads=threads,
                                              cache_dir=False)
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            print(f"OpenVINO skipped: {e}")
    if eager is not None:
        engines["torch eager"] = TorchEngine.from_model(eager, threads=threads)
    if args.gpu:
        engines.update(gpu_engines(model_path, tmp.name))

    sg = fb.sgemm_gflops(threads, n=SGEMM_N)
    print(f"sgemm (numpy float32 {SGEMM_N}^2, {threads} threads) at the start: "
          f"{sg['gflops']:.1f} GFLOP/s; measured again inside every size's loop")
    sa = np.random.default_rng(0).standard_normal((SGEMM_N, SGEMM_N), dtype=np.float32)
    sc = np.empty_like(sa)
    rows = []
    sgemm_by_size = {}
    rng = np.random.default_rng(0)
    for s in sizes:
        img = rng.integers(0, 256, (1, s, s, 3), dtype=np.uint8)
        mask = np.zeros((1, s, s), np.uint8)
        mask[:, s // 4: s // 2, s // 4: s // 2] = 1
        x = ops.prepare(img, mask, (0.5, 0.5, 0.5), 4)
        try:
            gflop = fb.onnx_flops(model_path, s, s)["gflop"]
        except fb.FlopCountError as e:  # printed as n/a
            print(f"note: {e}")
            gflop = None
        iters = args.iters or max(2, round(10 * (256 / s) ** 2))
        outs = {}
        fns = {}
        for name, eng in engines.items():
            fns[name] = (lambda e=eng, n=name: outs.__setitem__(n, e.infer(x)))
        fns["sgemm"] = lambda: np.matmul(sa, sa, out=sc)  # the CPU's own rate, same moments
        times = fb.time_interleaved(fns, iters, warmup=1, max_seconds=args.max_seconds)
        sg_t = times.pop("sgemm")
        sgemm_by_size[s] = 2.0 * SGEMM_N ** 3 / float(np.median(sg_t)) / 1e9
        ref = outs["onnxruntime"]
        for name, t in times.items():
            lat = fb.percentiles(t)
            rate = gflop / (lat["p50"] / 1e3) if gflop else None
            rows.append({"size": s, "backend": name, "iterations": len(t), "latency_ms": lat,
                         "gflop": gflop, "gflops": rate, "sgemm_gflops": sgemm_by_size[s],
                         "max_abs_diff_vs_ort": float(np.abs(outs[name] - ref).max())})
    sgemm_runs = [sg["gflops"]] + list(sgemm_by_size.values())

    print("sgemm inside each size's loop (median of its calls): "
          + ", ".join(f"{s}^2: {v:.1f}" for s, v in sgemm_by_size.items())
          + " GFLOP/s; each row's 'of sgemm' uses its own size's figure")
    print()
    hdr = (f"{'size':>6} {'back-end':<14}{'n':>3}{'p50 ms':>10}{'mean ms':>10}{'GFLOP':>8}"
           f"{'GFLOP/s':>9}{'sgemm':>7}{'of sgemm':>10}{'vs eager':>10}{'|diff|':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        eager_r = next((q for q in rows if q["size"] == r["size"] and q["backend"] == "torch eager"),
                       None)
        r["fraction_of_sgemm"] = r["gflops"] / r["sgemm_gflops"] if r["gflops"] else None
        r["speedup_vs_eager"] = (eager_r["latency_ms"]["p50"] / r["latency_ms"]["p50"]
                                 if eager_r else None)
        print(f"{r['size']:>6} {r['backend']:<14}{r['iterations']:>3}{r['latency_ms']['p50']:>10.1f}"
              f"{r['latency_ms']['mean']:>10.1f}{fb._fmt(r['gflop'], '.1f'):>8}"
              f"{fb._fmt(r['gflops'], '.1f'):>9}{r['sgemm_gflops']:>7.0f}"
              f"{fb._fmt(r['fraction_of_sgemm'] and 100 * r['fraction_of_sgemm'], '.0f') + ' %':>10}"
              f"{(fb._fmt(r['speedup_vs_eager'], '.2f') + 'x') if r['speedup_vs_eager'] else 'n/a':>10}{r['max_abs_diff_vs_ort']:>9.1e}")

    # targets
    print()
    verdicts = []
    by = {(r["size"], r["backend"]): r for r in rows}
    s_t = 512 if 512 in sizes else sizes[len(sizes) // 2]
    ort = by.get((s_t, "onnxruntime"))
    if ort and ort["speedup_vs_eager"]:
        verdicts.append((f"ONNX Runtime vs PyTorch eager at {s_t}^2 >= 1.5x",
                         ort["speedup_vs_eager"], 1.5, f"{ort['speedup_vs_eager']:.2f}x"))
    cpu_rows = [r for r in rows if r["backend"] in ("onnxruntime", "openvino", "torch eager")
                and r["fraction_of_sgemm"]]
    ort_best = max((r["fraction_of_sgemm"] for r in cpu_rows if r["backend"] == "onnxruntime"),
                   default=None)
    if ort_best:
        verdicts.append(("ONNX Runtime >= 75 % of sgemm (best size)", ort_best, 0.75,
                         f"{100 * ort_best:.0f} %"))
    best = max(cpu_rows, key=lambda r: r["fraction_of_sgemm"], default=None)
    if best:
        verdicts.append((f"fastest CPU back-end ({best['backend']}, {best['size']}^2) >= 90 % "
                         "of sgemm", best["fraction_of_sgemm"], 0.90,
                         f"{100 * best['fraction_of_sgemm']:.0f} %"))
    missed = False
    for what, val, target, shown in verdicts:
        ok = val >= target
        missed |= not ok
        print(f"target {what}: {shown} -> "
              f"{'met' if ok else f'MISSED by {100 * (1 - val / target):.0f} %'}")

    prof = None
    if args.profile or missed:
        prof = profile_ort(model_path, args.profile_size, threads,
                           fb.sgemm_gflops(threads, n=SGEMM_N)["gflops"], tmp.name)
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "sgemm_gflops": sgemm_runs,
                                               "rows": rows, "profile": prof}, indent=2,
                                              default=str) + "\n")
    for e in engines.values():
        e.close()
    tmp.cleanup()


def profile_ort(model_path, size, threads, sgemm, tmpdir, runs=2, top=12):
    """ONNX Runtime's own profiler at size^2: per-node time, FLOPs and rate, by layer."""
    import numpy as np
    import onnxruntime as ort

    from fastfill import bench as fb

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tmpdir) / "ort_profile")
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 4, size, size), dtype=np.float32)
    sess.run(None, {"input": x})  # warm-up (also profiled; dropped below)
    for _ in range(runs):
        sess.run(None, {"input": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs_seen = [e for e in events if e.get("name") == "model_run"]
    keep_from = runs_seen[1]["ts"] if len(runs_seen) > 1 else 0  # skip the warm-up run
    per: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < keep_from:
            continue
        name = e["name"][: -len("_kernel_time")]
        a = e.get("args", {})
        d = per.setdefault(name, {"op": a.get("op_name", "?"), "us": 0.0,
                                  "gflop": node_gflop(a), "shape": node_shape(a)})
        d["us"] += e["dur"] / runs
    total = sum(d["us"] for d in per.values())
    try:  # nodes ORT keeps by name (e.g. ConvTranspose)
        by_name = {n: g for n, _, g in fb.onnx_flops(model_path, size, size)["layers"]}
    except fb.FlopCountError:
        by_name = {}
    for name, d in per.items():
        if not d["gflop"] and name in by_name:
            d["gflop"] = by_name[name]
    print(f"\nONNX Runtime profile at {size}^2 ({runs} runs, {threads} threads): "
          f"{total / 1e3:.1f} ms in {len(per)} nodes (fused/renamed by ORT's optimizer)")
    print(f"{'node':<36}{'op':<14}{'weight -> output':<30}{'ms':>8}{'share':>7}{'GFLOP':>7}"
          f"{'GFLOP/s':>8}{'of sgemm':>9}")
    rows = []
    for name, d in sorted(per.items(), key=lambda kv: -kv[1]["us"]):
        g = d["gflop"]
        rate = g / (d["us"] / 1e6) if g and d["us"] > 0 else None
        rows.append({"node": name, "op": d["op"], "shape": d["shape"], "ms": d["us"] / 1e3,
                     "share": d["us"] / total, "gflop": g, "gflops": rate})
    for r in rows[:top]:
        print(f"{r['node'][-35:]:<36}{r['op']:<14}{r['shape'][:29]:<30}{r['ms']:>8.1f}"
              f"{100 * r['share']:>6.1f}%{fb._fmt(r['gflop'], '.1f'):>7}{fb._fmt(r['gflops'], '.1f'):>8}"
              f"{fb._fmt(r['gflops'] and 100 * r['gflops'] / sgemm, '.0f') + ' %':>9}")
    by_op: dict[str, float] = {}
    for r in rows:
        by_op[r["op"]] = by_op.get(r["op"], 0.0) + r["ms"]
    print("by op type: " + ", ".join(f"{k} {v:.0f} ms ({100 * v * 1e3 / total:.0f} %)"
                                     for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])))
    return {"size": size, "total_ms": total / 1e3, "nodes": rows, "by_op_ms": by_op}


def _shapes(a, key):
    return [next(iter(t.values())) for t in a.get(key, []) if t]


def node_gflop(a):
    """FLOPs (2 x MACs) of a profiled Conv / ConvTranspose / MatMul from its logical shapes."""
    import numpy as np

    op = a.get("op_name")
    ins, outs = _shapes(a, "input_type_shape"), _shapes(a, "output_type_shape")
    try:
        if op in ("Conv", "FusedConv", "NchwcConv", "ConvTranspose") and len(ins[1]) != 4:
            return None  # weights pre-packed by ORT (not listed): counted from the graph instead
        if op in ("Conv", "FusedConv", "NchwcConv"):
            return 2.0 * np.prod(outs[0]) * np.prod(ins[1][1:]) / 1e9
        if op == "ConvTranspose":
            return 2.0 * np.prod(ins[0]) * np.prod(ins[1][1:]) / 1e9
        if op in ("MatMul", "Gemm", "FusedMatMul"):
            return 2.0 * np.prod(outs[0]) * ins[0][-1] / 1e9
    except (IndexError, TypeError):
        return None
    return None


def node_shape(a):
    ins, outs = _shapes(a, "input_type_shape"), _shapes(a, "output_type_shape")
    if a.get("op_name") in ("Conv", "FusedConv", "NchwcConv", "ConvTranspose") and len(ins) > 1 \
            and len(ins[1]) == 4:
        w = "x".join(str(v) for v in ins[1])
        o = "x".join(str(v) for v in outs[0][1:]) if outs else "?"
        return f"{w} -> {o}"
    if outs:
        i = "x".join(str(v) for v in ins[0][1:]) if ins else "?"
        return f"{i} -> " + "x".join(str(v) for v in outs[0][1:])
    return ""


def gpu_engines(model_path, tmpdir):
    """TensorRT FP16 and ONNX Runtime CUDA, when a GPU and their packages are present."""
    from fastfill import ops
    from fastfill.engines import load_engine

    out = {}
    if not ops.cuda_available():
        print("--gpu: no usable NVIDIA GPU here; GPU back-ends skipped")
        return out
    try:
        # (strict: without the CUDA provider it would warn and run on the CPU, under this label)
        out["ort cuda"] = load_engine(model_path, device="cuda", strict=True)
    except Exception as e:  # noqa: BLE001
        print(f"ONNX Runtime CUDA skipped: {e}")
    try:
        from fastfill.build import build_engine

        plan = Path(tmpdir) / "model.plan"
        build_engine(model_path, plan, precision="fp16", log=lambda m: None)
        out["tensorrt fp16"] = load_engine(plan)
    except Exception as e:  # noqa: BLE001
        print(f"TensorRT skipped: {e}")
    return out


if __name__ == "__main__":
    main()

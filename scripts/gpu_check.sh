#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, build fastfill's native module with its CUDA
# kernels, run the `gpu`-marked tests (the only coverage of the CUDA kernels, the device path and
# TensorRT) and the GPU benchmarks, each step under `timeout`, all within GPU_CHECK_BUDGET seconds
# (360), and write one report: $OUT/gpu_report.txt (OUT unset: ./gpu_report/gpu_report.txt) with
# nvidia-smi, the versions, the pytest summary, the benchmark lines and each step's time, also
# printed at the end; each step's whole log is kept beside it ($OUT/gpu_<step>.log, the tests'
# JUnit XML as $OUT/gpu_tests.xml).
#
#   bash scripts/gpu_check.sh          # from anywhere; it works in the repository it belongs to
#
# Without an NVIDIA GPU it stops at once: one line ("gpu_check: no NVIDIA GPU: ..."), exit 2.
#
# It needs a Python (PYTHON, default python3) that has the build and test tools installed (numpy,
# onnxruntime, click, pillow, tqdm, pytest, pybind11, scikit-build-core, cmake, ninja; onnx and
# torch for the engine benchmark) and the CUDA toolkit (nvcc); it creates no virtual environment
# and changes nothing installed: the module is built in the tree (build/, fastfill/_C*.so, both
# ignored by git) and the tests import fastfill from there. onnxruntime-gpu and the `trt` extra (tensorrt,
# cuda-python) are added into a folder of its own when missing: from wheels in GPU_CHECK_WHEELS
# (default .whl/ in the repository) without an index, else from the package index if one answers
# within seconds; otherwise the tests that need them skip and the report says why.
#
# Environment: OUT, GPU_CHECK_BUDGET (seconds, 360), PYTHON, NVIDIA_SMI (nvidia-smi),
# GPU_CHECK_WHEELS, FASTFILL_REV (the commit, said in the report where the tree is no git
# checkout). Exit: 0 every step passed; 1 a step failed or ran out of time; 2 no NVIDIA GPU.
set -uo pipefail

now() { local t=${EPOCHREALTIME:-$(date +%s.%N)}; echo "${t/,/.}"; }
T0=$(now)
BUDGET=${GPU_CHECK_BUDGET:-360}
DEADLINE=$(( ${T0%.*} + BUDGET ))
PYTHON=${PYTHON:-python3}
NVIDIA_SMI=${NVIDIA_SMI:-nvidia-smi}
OUT_DIR=${OUT:-./gpu_report}
mkdir -p "$OUT_DIR" || { echo "gpu_check: cannot create $OUT_DIR" >&2; exit 1; }
OUT_DIR=$(cd "$OUT_DIR" && pwd)
REPORT=$OUT_DIR/gpu_report.txt
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS=${GPU_CHECK_WHEELS:-$REPO/.whl}
STEPS=()   # "name|status|seconds|note"
FAILED=()  # steps that fail the check
WARNED=()  # steps that are reported but do not fail it
OPTIONAL=" extras bench-engines "  # these: an index that breaks, a benchmark whose deps differ

elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '%s\n' "$*" >>"$REPORT"; }
section() { printf '\n== %s\n' "$*" >>"$REPORT"; }

{
  echo "fastfill GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host $(hostname 2>/dev/null || echo '?')"
  echo "repository: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "${FASTFILL_REV:-not a git checkout; FASTFILL_REV unset}"))"
  echo "budget: ${BUDGET} s in all"
} >"$REPORT"

# ---------------------------------------------------------------- the GPU, first and fast
no_gpu() {
  local line="gpu_check: no NVIDIA GPU: $1"
  say "$line"
  say "result: NO GPU (nothing built or run)"
  echo "$line" >&2
  exit 2
}
if ! command -v "$NVIDIA_SMI" >/dev/null 2>&1; then
  no_gpu "$NVIDIA_SMI not found (no NVIDIA driver on this machine)"
fi
if ! gpus=$(timeout 30 "$NVIDIA_SMI" -L 2>&1); then
  no_gpu "$NVIDIA_SMI -L failed: $(printf '%s' "$gpus" | head -n 1)"
fi
if ! grep -q '^GPU [0-9]' <<<"$gpus"; then
  no_gpu "$NVIDIA_SMI lists no GPU"
fi
STEPS+=("gpu|ok|$(elapsed "$T0")|$(grep -c '^GPU [0-9]' <<<"$gpus") GPU(s)")
section "nvidia-smi"
timeout 30 "$NVIDIA_SMI" >>"$REPORT" 2>&1 || say "(nvidia-smi failed: exit $?)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastfill-gpu-check.XXXXXX")
SITE=$WORK/site
cd "$REPO" || exit 1
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 4)}

export PYTHON WORK SITE WHEELS

# fail NAME WHY: a step that fails the check, or only a warning for an optional one.
fail() {
  if [[ $OPTIONAL == *" $1 "* ]]; then WARNED+=("$1${2:+ ($2)}"); else FAILED+=("$1${2:+ ($2)}"); fi
}

# run_step NAME BUDGET LOG CMD...: CMD (a program or a function of this script) under `timeout`,
# given at most BUDGET seconds and never past the deadline; records the outcome and its time.
# Returns CMD's status (124: out of time).
run_step() {
  local name=$1 budget=$2 log=$3 start status left note=""
  shift 3
  left=$(( DEADLINE - $(date +%s) - 5 ))
  if (( left < 10 )); then
    STEPS+=("$name|skipped|0.0|no time left in the ${BUDGET} s budget")
    fail "$name" "no time left"
    return 124
  fi
  (( budget > left )) && budget=$left
  if declare -F "$1" >/dev/null; then  # a function runs in a bash of its own, under timeout too
    local fn=$1
    export -f "${fn?}"
    # shellcheck disable=SC2016  # "$0" "$@" are the child bash's own
    set -- bash -c '"$0" "$@"' "$@"
  fi
  start=$(now)
  timeout --kill-after=10 "$budget" "$@" >"$log" 2>&1
  status=$?
  if (( status == 0 )); then
    STEPS+=("$name|ok|$(elapsed "$start")|")
  else
    (( status == 124 || status == 137 )) && note="ran out of its ${budget} s"
    STEPS+=("$name|failed ($status)|$(elapsed "$start")|$note")
    fail "$name" "$note"
  fi
  return "$status"
}

# ---------------------------------------------------------------- versions
VERSIONS_PY='
import importlib, importlib.metadata as md, platform, sys
print(f"python {platform.python_version()} ({sys.executable})")
for dist in ("numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorrt", "cuda-python",
             "cuda-bindings", "torch", "pytest", "pybind11", "scikit-build-core", "cmake", "ninja",
             "pillow", "click", "tqdm"):
    try:
        print(f"{dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"{dist}: not installed")
try:
    import onnxruntime
    print("onnxruntime providers: " + ", ".join(onnxruntime.get_available_providers()))
except Exception as e:  # noqa: BLE001
    print(f"onnxruntime: {e}")
'
section "versions"
{ "$PYTHON" -c "$VERSIONS_PY" 2>&1 || echo "($PYTHON failed: exit $?)"
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -n 2 | tr '\n' ' ' || true)"
  echo "cmake: $(cmake --version 2>/dev/null | head -n 1 || echo 'not found')"
  echo "cores: $(nproc 2>/dev/null || echo '?'); build parallel level: $CMAKE_BUILD_PARALLEL_LEVEL"
} >>"$REPORT"

# ---------------------------------------------------------------- the gpu / trt extras
# What each requirement of the extras is, as an import that proves it is there.
EXTRAS_PY='
import importlib, sys, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
def present(req):
    name = req.split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip().lower()
    try:
        if name == "onnxruntime-gpu":
            import onnxruntime
            return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        if name == "cuda-python":
            try:
                importlib.import_module("cuda.bindings.runtime")
            except ImportError:
                importlib.import_module("cuda.cudart")
            return True
        importlib.import_module({"tensorrt": "tensorrt", "onnx": "onnx"}.get(name, name.replace("-", "_")))
        return True
    except Exception:
        return False
# (ONNX Runtime on CUDA is onnxruntime-gpu, in no extra: the runtime installs the CPU onnxruntime)
for req in dict.fromkeys(["onnxruntime-gpu"] + extras.get("trt", [])):
    if not present(req):
        print(req)
'
install_extras() {
  local reqs=("$@") nodeps=() req failed=0
  shopt -s nullglob
  local wheels=("$WHEELS"/*.whl)
  shopt -u nullglob
  if (( ${#wheels[@]} )); then
    echo "installing ${#wheels[@]} wheel(s) from $WHEELS (no index)"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${wheels[@]}" || return 1
    return 0
  fi
  if ! "$PYTHON" -m pip download -q --no-deps --timeout 5 --retries 0 -d "$WORK/probe" pip >/dev/null 2>&1; then
    echo "no package index answered within seconds: running with what is installed"
    return 0
  fi
  for req in "${reqs[@]}"; do  # one at a time: one that cannot be had does not stop the others
    nodeps=()
    [[ $req == onnxruntime-gpu* ]] && nodeps=(--no-deps)  # beside the installed onnxruntime: its own files
    echo "pip install $req"
    "$PYTHON" -m pip install -q --only-binary=:all: "${nodeps[@]}" --timeout 15 --retries 1 \
      --target "$SITE" "$req" || failed=1
  done
  return "$failed"
}
section "extras (onnxruntime-gpu, trt)"
if ! missing=$("$PYTHON" -c "$EXTRAS_PY" 2>&1); then
  say "cannot tell which are installed: $(tail -n 1 <<<"$missing")"
  STEPS+=("extras|failed|0.0|cannot tell which are installed")
  fail extras
elif [ -z "$missing" ]; then
  say "all installed"
  STEPS+=("extras|ok|0.0|all installed")
else
  mapfile -t MISSING <<<"$missing"
  say "missing: ${MISSING[*]}"
  run_step extras 90 "$WORK/extras.log" install_extras "${MISSING[@]}"
  cat "$WORK/extras.log" >>"$REPORT"
  still=$("$PYTHON" -c "$EXTRAS_PY" 2>&1 | tr '\n' ' ')
  say "still missing after this step: ${still:-none} (the tests needing them skip, saying so)"
fi

# ---------------------------------------------------------------- build
build() {
  rm -rf "$WORK/wheel" && rm -f fastfill/_C*.so || return 1
  FASTFILL_CUDA=ON "$PYTHON" -m pip wheel -v --no-deps --no-build-isolation --no-index \
    -w "$WORK/wheel" . || return 1
  "$PYTHON" - "$WORK/wheel" <<'EOF' || return 1
import pathlib, sys, zipfile
(wheel,) = pathlib.Path(sys.argv[1]).glob("fastfill-*.whl")
with zipfile.ZipFile(wheel) as z:
    (so,) = [n for n in z.namelist() if n.startswith("fastfill/_C") and n.endswith(".so")]
    z.extract(so, ".")  # beside the sources: the tests import fastfill from this tree
print(f"built {wheel.name}; {so} placed in the source tree")
EOF
  "$PYTHON" -c '
from fastfill import ops
info = ops.build_info()
print("build_info:", info)
if "cuda" not in info["backends"]:
    raise SystemExit("fastfill._C was built without its CUDA kernels")
if info["cuda_device_count"] < 1:
    raise SystemExit("the CUDA kernels see no GPU: " + info["cuda_runtime_status"])
'
}
section "build (FASTFILL_CUDA=ON)"
if run_step build 240 "$WORK/build.log" build; then
  grep -E '^(built |build_info:)|CUDA kernels|CMAKE_CUDA_COMPILER|The CUDA compiler' "$WORK/build.log" >>"$REPORT"
  BUILT=1
else
  tail -n 40 "$WORK/build.log" >>"$REPORT"
  BUILT=0
fi

# ---------------------------------------------------------------- the gpu-marked tests
section "tests (pytest -m gpu)"
if (( BUILT )); then
  mapfile -t GPU_FILES < <(grep -lE 'pytest\.mark\.gpu|marks=pytest\.mark\.gpu' tests/test_*.py)
  say "files: ${GPU_FILES[*]}"
  # (-m gpu, and by name the tests whose GPU branch only runs on a GPU machine; a test that hangs
  # is named by pytest-timeout where it is installed)
  TIMEOUT_OPT=()
  "$PYTHON" -c 'import pytest_timeout' 2>/dev/null && TIMEOUT_OPT=(--timeout=60)
  mapfile -t IDS < <("$PYTHON" -m pytest --collect-only -q -m gpu -p no:cacheprovider \
                      "${GPU_FILES[@]}" 2>/dev/null | grep '::')
  IDS+=(tests/test_build.py::test_gpu_info_reports_why
        tests/test_ops.py::test_build_info_matches_what_the_module_has tests/test_cli_info.py)
  say "tests: ${#IDS[@]} (the gpu-marked ones and three whose GPU branch runs only here)"
  run_step tests 150 "$WORK/tests.log" "$PYTHON" -m pytest -q -p no:cacheprovider -rfEs \
    "${TIMEOUT_OPT[@]}" --junitxml="$OUT_DIR/gpu_tests.xml" "${IDS[@]}"
  say "skipped: $(grep -c '^SKIPPED' "$WORK/tests.log" || true) line(s) of reasons (below)"
  last=$(tail -n 1 "$WORK/tests.log")
  if grep -qE ' in [0-9.]+s' <<<"$last"; then  # pytest's closing line: its short summary, then that line
    awk '/short test summary info/ { on = 1 } on' "$WORK/tests.log" >>"$REPORT"
    grep -q "short test summary info" "$WORK/tests.log" || say "$last"
    STEPS[-1]="${STEPS[-1]}$last"
  else  # stopped before the end (out of time, a crash): what it printed last
    tail -n 30 "$WORK/tests.log" >>"$REPORT"
  fi
  grep -qE '[1-9][0-9]* passed' <<<"$last" || fail tests "none passed"
else
  say "not run: the build failed"
  STEPS+=("tests|skipped|0.0|the build failed")
  fail tests "not run"
fi

# ---------------------------------------------------------------- benchmarks
KERNELS_PY='
import sys, time
import numpy as np
from fastfill import ops
sys.path.insert(0, "tests")
from test_ops import _CudaMemory  # device memory through the driver API
n, h, w, mean = 8, 1080, 1920, (0.45, 0.43, 0.40)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
masks = np.zeros((n, h, w), np.uint8)
masks[:, h // 3: h // 3 + h // 4, w // 3: w // 3 + w // 4] = 255
hp, wp = ops.padded_size(h, w, 4)
pred = rng.random((n, 3, hp, wp), dtype=np.float32)

sys.path.insert(0, "benchmarks")
from bench_ops import best_time
def best(fn):
    return best_time(fn, 5)

print(f"{n} frames of {w}x{h}, a hole of 6 %; best of 5; host arrays in and out (copies counted)")
for name, fn in (
        ("prepare float32", lambda d: ops.prepare(images, masks, mean, 4, device=d)),
        ("prepare float16", lambda d: ops.prepare(images, masks, mean, 4, dtype=np.float16, device=d)),
        ("composite float32", lambda d: ops.composite(pred, images, masks, device=d)),
        ("prepare, harmonic fill", lambda d: ops.prepare(images[:1], masks[:1], mean, 4, fill="harmonic",
                                                         device=d))):
    same = np.array_equal(fn("cpu"), fn("cuda"))
    c, g = best(lambda: fn("cpu")), best(lambda: fn("cuda"))
    print(f"{name:<24} cpu {c * 1e3:9.1f} ms   cuda {g * 1e3:9.1f} ms   {c / g:6.1f}x   same bytes: {same}")
    if not same:
        raise SystemExit(f"{name}: the CUDA result differs from the CPU one")
from fastfill import _C
mem = _CudaMemory()
d_img, d_msk = mem.put(images), mem.put(masks)
d_x, d_p, d_o = mem.alloc(n * 4 * hp * wp * 4), mem.put(pred), mem.alloc(images.nbytes)
def kernels(k, reps=20):
    mem.get(d_o, (1,), np.uint8)
    t0 = time.perf_counter()
    for _ in range(reps):
        k()
    mem.get(d_o, (1,), np.uint8)  # synchronises
    return (time.perf_counter() - t0) / reps
tp = kernels(lambda: _C.prepare_cuda(d_img, d_msk, d_x, n, h, w, None, hp, wp, list(mean), True, False, 0))
tc = kernels(lambda: _C.composite_cuda(d_p, False, hp, wp, d_img, d_msk, n, h, w, None, d_o, h * w * 3, w * 3, 0))
for name, t, nbytes in (("prepare_cuda kernel", tp, n * h * w * 4 + n * 4 * hp * wp * 4),
                        ("composite_cuda kernel", tc, n * 3 * hp * wp * 4 + n * h * w * 7)):
    print(f"{name:<24} {t * 1e3:9.3f} ms on device memory (no copies)   {nbytes / t / 1e9:8.1f} GB/s")
mem.close()
'
section "benchmarks"
if (( BUILT )); then
  say "-- the CUDA kernels against the CPU ones"
  run_step bench-kernels 60 "$WORK/kernels.log" "$PYTHON" -c "$KERNELS_PY"
  cat "$WORK/kernels.log" >>"$REPORT"
  say "-- benchmarks/bench_engines.py --gpu, the shipped model (TensorRT FP16, ONNX Runtime CUDA: where installed)"
  run_step bench-engines 120 "$WORK/engines.log" "$PYTHON" benchmarks/bench_engines.py --gpu \
    --model fastfill/models/default.onnx --no-torch --no-openvino --sizes 256,512,1024 --iters 10 \
    --max-seconds 10
  cat "$WORK/engines.log" >>"$REPORT"
else
  say "not run: the build failed"
  STEPS+=("benchmarks|skipped|0.0|the build failed")
fi

# ---------------------------------------------------------------- the steps and the result
section "steps"
for s in "${STEPS[@]}"; do
  IFS='|' read -r name status secs note <<<"$s"
  printf '%-16s %-14s %7s s  %s\n' "$name" "$status" "$secs" "$note" >>"$REPORT"
done
printf '%-16s %-14s %7s s\n' "total" "" "$(elapsed "$T0")" >>"$REPORT"
for log in "$WORK"/*.log; do  # (the whole logs: a failing test's traceback, a build's errors)
  [ -f "$log" ] && cp "$log" "$OUT_DIR/gpu_$(basename "$log")"
done
rm -rf "$WORK"
warned=${WARNED[*]:+; not failing the check: ${WARNED[*]}}
result="PASS$warned"
(( ${#FAILED[@]} )) && result="FAIL (${FAILED[*]})$warned"
say "result: $result"
cat "$REPORT"
if (( ${#FAILED[@]} )); then
  echo "gpu_check: $result; report: $REPORT" >&2
  exit 1
fi
echo "gpu_check: $result; report: $REPORT"

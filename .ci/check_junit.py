"""Fail CI when tests are missing: no tests at all, a test module none of whose tests ran, or a
test that skipped for a reason CI does not accept.

pytest already fails on failures and errors; a skipped test passes silently (a missing
dependency, a broken fixture, a file that is not there, a race the test lost), so:

- each tests/test_*.py must pass at least one test, unless every one of its tests skipped for an
  allowed reason;
- every skip (and xfail) must give a reason that starts with one of ALLOWED_SKIPS below. CI runs
  on a machine without an NVIDIA GPU, so the GPU tests skip there; nothing else may.

Usage: python3 .ci/check_junit.py JUNIT.xml TESTS_DIR
"""

import pathlib
import re
import sys
import xml.etree.ElementTree as ET

# (reason prefix, why CI accepts it). A new entry needs its why; anything else that skips fails CI.
ALLOWED_SKIPS = (
    ("no usable NVIDIA GPU:",
     "tests marked `gpu` (tests/conftest.py) on a machine whose CUDA build finds no GPU: CI's. "
     "They run on a GPU machine through scripts/gpu_check.sh"),
    ("this machine has a GPU and TensorRT",
     "tests/test_build.py: the refusal without a GPU cannot be shown where a build works; the "
     "gpu-marked build test runs there instead"),
    ("onnxruntime-gpu is installed",
     "tests/test_engines.py: the CPU fallback of a CUDA request cannot be shown where CUDA starts"),
    ("this onnxruntime has CUDA",
     "tests/test_cli_run.py: --device cuda cannot be refused where onnxruntime has CUDA"),
    ("this machine has an NVIDIA driver",
     "tests/test_first_contact.py: the words for a machine without any driver cannot be shown "
     "where there is one"),
)


def skip_reason(skipped) -> str:
    """The reason of a <skipped> element: its message, or, for a module skipped while it was
    collected (message "collection skipped"), the reason inside the element's text."""
    message = skipped.get("message", "")
    if message == "collection skipped":
        m = re.search(r"Skipped: (.*?)['\"]?\)?\s*$", skipped.text or "", re.S)
        return m.group(1) if m else (skipped.text or message).strip()
    return message


def allowed(reason: str) -> bool:
    return any(reason.startswith(prefix) for prefix, _ in ALLOWED_SKIPS)


def module_of(case) -> str:
    """test_ops for classname tests.test_ops or tests.test_ops.TestClass; for a module skipped
    while collected (classname "", name tests.test_ops), from the name."""
    for field in (case.get("classname", ""), case.get("name", "")):
        parts = [p for p in field.split(".") if p.startswith("test_")]
        if parts:
            return parts[0]
    return case.get("classname", "")


def main(report, tests_dir):
    root = ET.parse(report).getroot()
    ran, skipped_reasons, total = {}, {}, 0
    bad_skips = []
    for case in root.iter("testcase"):
        total += 1
        module = module_of(case)
        if case.find("failure") is not None or case.find("error") is not None:
            continue
        skip = case.find("skipped")
        if skip is None:
            ran[module] = ran.get(module, 0) + 1
            continue
        reason = skip_reason(skip)
        skipped_reasons.setdefault(module, []).append(reason)
        if not allowed(reason):
            kind = "xfail" if skip.get("type") == "pytest.xfail" else "skipped"
            where = f"{module}::{case.get('name', '')}" if case.get("classname") else module
            bad_skips.append(f"{where}: {kind}: {reason[:300] or '(no reason given)'}")
    problems = []
    if total == 0:
        problems.append("no tests ran")
    for path in sorted(pathlib.Path(tests_dir).glob("test_*.py")):
        mod = path.stem
        if ran.get(mod):
            continue
        reasons = skipped_reasons.get(mod, [])
        if reasons and all(allowed(r) for r in reasons):
            continue
        problems.append(f"{path}: no test ran ({'; '.join(sorted(set(reasons)))[:300] or 'none collected'})")
    if bad_skips:
        problems.append(f"{len(bad_skips)} test(s) skipped for a reason CI does not accept "
                        "(allowed: " + ", ".join(repr(p) for p, _ in ALLOWED_SKIPS) + "):")
        problems += ["  " + s for s in bad_skips]
    if problems:
        print("CI: tests missing or skipped:\n  " + "\n  ".join(problems))
        return 1
    print(f"CI: {total} tests, every test module ran, every skip allowed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(sys.argv[1], sys.argv[2]))

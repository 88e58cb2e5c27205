"""Fail CI when tests are missing: no tests at all, or a test module none of whose tests ran.

pytest already fails on failures and errors; a module whose every test was skipped (a missing
dependency, a broken fixture) would pass silently, so each tests/test_*.py must pass at least one
test unless all of its skips are GPU skips on a machine without a GPU.
"""

import pathlib
import sys
import xml.etree.ElementTree as ET


def main(report, tests_dir):
    root = ET.parse(report).getroot()
    ran, skipped_reasons, total = {}, {}, 0
    for case in root.iter("testcase"):
        total += 1
        # classname looks like tests.test_ops or tests.test_ops.TestClass: take the test_* part
        parts = [p for p in case.get("classname", "").split(".") if p.startswith("test_")]
        module = parts[0] if parts else case.get("classname", "")
        skip = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            continue
        if skip is None:
            ran[module] = ran.get(module, 0) + 1
        else:
            skipped_reasons.setdefault(module, []).append(skip.get("message", ""))
    problems = []
    if total == 0:
        problems.append("no tests ran")
    for path in sorted(pathlib.Path(tests_dir).glob("test_*.py")):
        mod = path.stem
        if ran.get(mod):
            continue
        reasons = skipped_reasons.get(mod, [])
        if reasons and all("GPU" in r or "CUDA" in r for r in reasons):
            continue
        problems.append(f"{path}: no test ran ({'; '.join(sorted(set(reasons)))[:300] or 'none collected'})")
    if problems:
        print("CI: missing tests:\n  " + "\n  ".join(problems))
        return 1
    print(f"CI: {total} tests, every test module ran")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

""".ci/check_junit.py on small JUnit XML files: a module where nothing passed and a skip whose
reason CI does not accept both fail CI; GPU skips on a machine without a GPU do not. Hand-written
reports for each rule, and one that pytest itself writes (the format CI really reads)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "check_junit.py"
_spec = importlib.util.spec_from_file_location("check_junit", SCRIPT)
cj = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cj)

GPU = "no usable NVIDIA GPU: no NVIDIA GPU/driver found"


def _case(module, name, skip=None, *, kind="pytest.skip", failure=False, cls=None):
    classname = f"tests.{module}" + (f".{cls}" if cls else "")
    if failure:
        return f'<testcase classname="{classname}" name="{name}"><failure message="boom"/></testcase>'
    if skip is None:
        return f'<testcase classname="{classname}" name="{name}" time="0.1"/>'
    return (f'<testcase classname="{classname}" name="{name}"><skipped type="{kind}" '
            f'message="{skip}">tests/{module}.py:3: {skip}</skipped></testcase>')


def _collection_skip(module, reason):
    """What pytest writes for a module skipped while collected (a module-level importorskip)."""
    return (f'<testcase classname="" name="tests.{module}" time="0.000"><skipped message="collection '
            f'skipped">(\'/x/tests/{module}.py\', 12, \'Skipped: {reason}\')</skipped></testcase>')


def _check(tmp_path, modules, cases, capsys):
    """check_junit on a report of ``cases`` and a tests folder holding ``modules``: (rc, output)."""
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    for m in modules:
        (tests / f"{m}.py").write_text("")
    report = tmp_path / "junit.xml"
    report.write_text('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
                      + "".join(cases) + "</testsuite></testsuites>")
    rc = cj.main(report, tests)
    return rc, capsys.readouterr().out


def test_every_module_passing_a_test_and_gpu_skips_pass(tmp_path, capsys):
    rc, out = _check(tmp_path, ["test_a", "test_b"],
                     [_case("test_a", "test_one"), _case("test_a", "test_gpu", GPU),
                      _case("test_b", "test_m", cls="TestK")], capsys)
    assert rc == 0, out
    assert out.strip() == "CI: 3 tests, every test module ran, every skip allowed"


def test_no_tests_at_all(tmp_path, capsys):
    rc, out = _check(tmp_path, [], [], capsys)
    assert rc == 1 and "no tests ran" in out


def test_a_module_whose_every_test_skipped_for_the_gpu_is_accepted(tmp_path, capsys):
    rc, out = _check(tmp_path, ["test_a", "test_gpu_only"],
                     [_case("test_a", "test_one"), _case("test_gpu_only", "test_x", GPU),
                      _case("test_gpu_only", "test_y", GPU)], capsys)
    assert rc == 0, out


def test_a_module_where_nothing_passed_is_flagged(tmp_path, capsys):
    rc, out = _check(tmp_path, ["test_a", "test_broken", "test_empty"],
                     [_case("test_a", "test_one"), _case("test_broken", "test_x", failure=True)], capsys)
    assert rc == 1
    assert f"{tmp_path / 'tests' / 'test_broken.py'}: no test ran (none collected)" in out
    assert f"{tmp_path / 'tests' / 'test_empty.py'}: no test ran (none collected)" in out
    assert "test_a.py" not in out


def test_a_skip_for_another_reason_is_flagged_even_where_the_module_ran(tmp_path, capsys):
    """The new rule: one test that skipped because a file or package is missing fails CI, though
    its module passed other tests."""
    rc, out = _check(tmp_path, ["test_a"],
                     [_case("test_a", "test_one"), _case("test_a", "test_gpu", GPU),
                      _case("test_a", "test_page", "Chromium and chromedriver are not installed")], capsys)
    assert rc == 1
    assert "1 test(s) skipped for a reason CI does not accept" in out
    assert "test_a::test_page: skipped: Chromium and chromedriver are not installed" in out
    assert "no test ran" not in out and "test_gpu" not in out


def test_a_module_skipped_while_collected_is_named_with_its_reason(tmp_path, capsys):
    rc, out = _check(tmp_path, ["test_a", "test_ray"],
                     [_case("test_a", "test_one"),
                      _collection_skip("test_ray", "Ray is not installed (pip install 'fastfill[ray]')")],
                     capsys)
    assert rc == 1
    assert "test_ray.py: no test ran (Ray is not installed (pip install 'fastfill[ray]'))" in out
    assert "test_ray: skipped: Ray is not installed (pip install 'fastfill[ray]')" in out


def test_a_reason_that_only_mentions_the_gpu_is_not_a_gpu_skip(tmp_path, capsys):
    """The old rule took any reason holding "GPU" or "CUDA"; only the listed prefixes count now."""
    rc, out = _check(tmp_path, ["test_a"],
                     [_case("test_a", "test_one"), _case("test_a", "test_x", "CUDA kernels crashed"),
                      _case("test_a", "test_y", "fastfill._C was built without CUDA kernels"),
                      _case("test_a", "test_z", f"because {GPU}")], capsys)
    assert rc == 1 and "3 test(s) skipped" in out


def test_xfail_and_an_empty_reason_are_flagged(tmp_path, capsys):
    rc, out = _check(tmp_path, ["test_a"],
                     [_case("test_a", "test_one"), _case("test_a", "test_x", "known bug", kind="pytest.xfail"),
                      _case("test_a", "test_y", "")], capsys)
    assert rc == 1
    assert "test_a::test_x: xfail: known bug" in out and "test_a::test_y: skipped: (no reason given)" in out


@pytest.mark.parametrize("prefix,_why", cj.ALLOWED_SKIPS, ids=[p for p, _ in cj.ALLOWED_SKIPS])
def test_each_allowed_reason_is_accepted_and_says_why(tmp_path, capsys, prefix, _why):
    rc, out = _check(tmp_path, ["test_a"], [_case("test_a", "test_one"),
                                            _case("test_a", "test_x", prefix + " (details)")], capsys)
    assert rc == 0, out
    assert len(_why) > 20  # each entry explains itself


def test_the_allowed_reasons_are_the_ones_the_tests_give():
    """Every allowed prefix is a reason some test or conftest.py really gives (a stale entry
    would allow a skip nobody means)."""
    text = "\n".join(p.read_text() for p in (ROOT / "tests").glob("*.py") if p.name != Path(__file__).name)
    for prefix, _ in cj.ALLOWED_SKIPS:
        assert prefix.split(":")[0] in text, prefix


def test_on_a_report_pytest_writes(tmp_path):
    """The format pytest really writes (skip markers, pytest.skip in a body, a module-level
    importorskip, an xfail), through the script as CI runs it."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_mixed.py").write_text(
        "import pytest\n"
        "def test_ok():\n    assert 1 + 1 == 2\n"
        f"@pytest.mark.skipif(True, reason={GPU!r})\ndef test_gpu():\n    pass\n"
        "def test_body_skip():\n    pytest.skip('the run finished before SIGTERM arrived')\n"
        "@pytest.mark.xfail(reason='known')\ndef test_xf():\n    assert False\n")
    (tests / "test_gone.py").write_text(
        "import pytest\npytest.importorskip('no_such_module_here', reason='no_such is not installed')\n"
        "def test_x():\n    pass\n")
    (tests / "test_fine.py").write_text(f"import pytest\ndef test_a():\n    pass\n"
                                        f"@pytest.mark.skip(reason={GPU!r})\ndef test_b():\n    pass\n")
    report = tmp_path / "junit.xml"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={tmp_path}",
                        "-c", "/dev/null", f"--junitxml={report}", str(tests)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    r = subprocess.run([sys.executable, str(SCRIPT), str(report), str(tests)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stdout
    lines = r.stdout.splitlines()
    assert lines[0] == "CI: tests missing or skipped:"
    assert f"  {tests / 'test_gone.py'}: no test ran (no_such is not installed)" in lines
    assert "  3 test(s) skipped for a reason CI does not accept" in r.stdout
    assert "    test_mixed::test_body_skip: skipped: the run finished before SIGTERM arrived" in lines
    assert "    test_mixed::test_xf: xfail: known" in lines
    assert "    test_gone: skipped: no_such is not installed" in lines
    assert "test_gpu" not in r.stdout and "test_fine" not in r.stdout
    # the same tree less what CI refuses: accepted
    (tests / "test_gone.py").unlink()
    (tests / "test_mixed.py").write_text("def test_ok():\n    pass\n")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={tmp_path}",
                    "-c", "/dev/null", f"--junitxml={report}", str(tests)],
                   capture_output=True, text=True, timeout=120, cwd=tmp_path, check=True)
    r = subprocess.run([sys.executable, str(SCRIPT), str(report), str(tests)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "CI: 3 tests, every test module ran, every skip allowed"


def test_usage():
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Usage: python3 .ci/check_junit.py JUNIT.xml TESTS_DIR" in r.stderr

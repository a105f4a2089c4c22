"""run_all.sh and run_tests.sh, run in a fake checkout (issue 17).

The fake checkout B holds copies of the two scripts under test, scripts/data_env.sh, a
scripts/setup_env.sh that only records that it ran (so nothing is installed), params/smoke.yaml,
a stub `lib` (and a one-cell probe notebook) and shares this checkout's virtual environment, which
`pip install -e` maps `import lib` to *this* checkout (A): the situation of a second checkout that
reuses the first one's .venv.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib.config import REPO_ROOT

VENV = Path(sys.prefix)  # the venv running the tests: installed editable from this checkout

STUB_CONFIG = '''\
from pathlib import Path
REPO_ROOT = Path(__file__).resolve().parent.parent
class _Profile:
    budget_minutes = None
    def readers(self):
        return ["09_reader"]
def load_profile(name):
    assert (REPO_ROOT / "params" / f"{name}.yaml").is_file(), name
    return _Profile()
'''
STUB_REPORT = '''\
import sys
from lib.config import REPO_ROOT
if __name__ == "__main__":
    path = REPO_ROOT / "figures" / sys.argv[1] / "index.html"
    path.write_text("index")
    print(path)
'''
PROBE_CELL = ("import json, os, lib\nfrom lib.config import REPO_ROOT\n"
              "print(json.dumps({'lib': os.path.realpath(lib.__file__), 'repo_root': str(REPO_ROOT), "
              "'metric_repo': os.environ.get('METRIC_REPO'), 'profile': profile}))")


def _notebook(*sources: str, parameters: str = 'profile = "quick"') -> str:
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": parameters, "outputs": [],
              "execution_count": None}]
    cells += [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None} for s in sources]
    return json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5,
                       "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}})


@pytest.fixture
def checkout(tmp_path) -> Path:
    b = tmp_path / "checkout_b"
    (b / "scripts").mkdir(parents=True)
    for script in ("run_all.sh", "run_tests.sh"):
        shutil.copy2(REPO_ROOT / script, b / script)
    shutil.copy2(REPO_ROOT / "scripts" / "data_env.sh", b / "scripts" / "data_env.sh")
    (b / "scripts" / "notebook_shape.py").write_text("")  # the probe notebook is all code; shape is not tested here
    (b / "scripts" / "setup_env.sh").write_text(
        '#!/usr/bin/env bash\necho ran >> "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/setup-ran"\n')
    (b / "params").mkdir()
    (b / "params" / "smoke.yaml").write_text("description: stub\n")
    (b / "lib").mkdir()
    (b / "lib" / "__init__.py").write_text("")
    (b / "lib" / "config.py").write_text(STUB_CONFIG)
    (b / "lib" / "report.py").write_text(STUB_REPORT)
    (b / "notebooks").mkdir()
    (b / "notebooks" / "00_probe.ipynb").write_text(_notebook(PROBE_CELL))
    (b / ".venv").symlink_to(VENV)  # the shared environment, also where the scripts' default looks
    return b.resolve()


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "METRIC_REPO", "METRIC_VENV"}}
    env.update(METRIC_VENV=str(VENV), **extra)
    return env


def _run(checkout: Path, script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(checkout / script), *args], cwd=checkout.parent, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if ".venv" not in p.parts}


def test_chapters_run_in_lanes_and_readers_wait_for_them(checkout) -> None:
    """Two chapters that train share the two lanes (they overlap in time); the chapter that reads
    them (the profile's readers()) starts only when both have ended; the summary lists all three
    in notebook order, and a failed lane makes the script fail."""
    clock = ("import json, time, pathlib\nstart = time.time(); time.sleep(3)\n"
             "pathlib.Path('../times-{name}.json').write_text(json.dumps([start, time.time()]))")
    for name in ("01_a", "02_b", "09_reader"):
        (checkout / "notebooks" / f"{name}.ipynb").write_text(_notebook(clock.format(name=name)))
    (checkout / "notebooks" / "00_probe.ipynb").unlink()
    result = subprocess.run(["bash", str(checkout / "run_all.sh"), "--profile", "smoke"], cwd=checkout.parent,
                            env=_env(METRIC_LANES="2"), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    a, b, reader = (json.loads((checkout / f"times-{n}.json").read_text()) for n in ("01_a", "02_b", "09_reader"))
    assert a[0] < b[1] and b[0] < a[1], "the two training chapters did not overlap"
    assert reader[0] >= max(a[1], b[1]), "the reader started before the chapters it reads had ended"
    summary = result.stdout[result.stdout.index("Summary"):]
    assert [line.split()[-1] for line in summary.splitlines()[1:4]] == ["01_a.ipynb", "02_b.ipynb", "09_reader.ipynb"]
    assert "2 lane(s) of" in result.stdout

    (checkout / "notebooks" / "02_b.ipynb").write_text(_notebook("raise SystemExit('broken chapter')"))
    result = subprocess.run(["bash", str(checkout / "run_all.sh"), "--profile", "smoke"], cwd=checkout.parent,
                            env=_env(METRIC_LANES="2"), capture_output=True, text=True, timeout=180)
    assert result.returncode == 1 and "FAILED" in result.stdout and "02_b.ipynb" in result.stderr
    assert (checkout / "reports" / "smoke" / "FAILED-02_b.ipynb").exists()
    assert not (checkout / "reports" / "smoke" / "02_b.ipynb").exists()


@pytest.mark.parametrize("lanes", ["0", "two", "-1"])
def test_a_lane_count_that_is_not_a_whole_number_stops_before_anything_runs(checkout, lanes) -> None:
    result = subprocess.run(["bash", str(checkout / "run_all.sh"), "--profile", "smoke"], cwd=checkout.parent,
                            env=_env(METRIC_LANES=lanes), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "METRIC_LANES" in result.stderr, result.stderr
    assert not (checkout / "reports").exists()


@pytest.mark.parametrize("profile", ["../params/smoke", "./smoke", "smoke/", "smo ke", "smoke;true"])
def test_a_profile_that_is_not_a_name_stops_before_anything_runs(checkout, profile) -> None:
    """Probe: `./run_all.sh --profile ../params/smoke` passed the existence check
    (params/../params/smoke.yaml exists) and wrote notebooks under params/."""
    before = _files(checkout)
    result = _run(checkout, "run_all.sh", "--profile", profile)
    assert result.returncode == 2, result.stderr
    assert "bad profile name" in result.stderr and profile in result.stderr
    assert not (checkout / "setup-ran").exists()  # checked before the environment is set up
    assert _files(checkout) == before  # nothing written: no reports/, no notebooks under params/


@pytest.mark.parametrize("pattern", ["*", "0[0-9]", "../x", "probe*"])
def test_an_only_pattern_that_is_not_a_name_stops_before_anything_runs(checkout, pattern) -> None:
    result = _run(checkout, "run_all.sh", "--profile", "smoke", "--only", pattern)
    assert result.returncode == 2, result.stderr
    assert "bad --only pattern" in result.stderr
    assert not (checkout / "setup-ran").exists()


def test_an_only_pattern_matching_no_notebook_stops_before_anything_runs(checkout) -> None:
    result = _run(checkout, "run_all.sh", "--profile=smoke", "--only=ledgr")
    assert result.returncode == 2 and "no notebook matches --only 'ledgr'" in result.stderr, result.stderr
    assert "00_probe.ipynb" in result.stderr
    assert not (checkout / "setup-ran").exists()


def test_notebooks_of_a_second_checkout_import_its_own_lib_from_a_shared_venv(checkout) -> None:
    """Probe: from checkout B with A's editable venv, the papermill kernel (cwd notebooks/)
    imported A's lib, so REPO_ROOT, figures and runs were A's."""
    result = _run(checkout, "run_all.sh", "--profile", "smoke", "--only", "probe")
    assert result.returncode == 0, result.stdout + result.stderr
    executed = json.loads((checkout / "reports" / "smoke" / "00_probe.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for o in executed["cells"][-1]["outputs"])
    seen = json.loads(text.strip().splitlines()[-1])
    assert seen == {"lib": str(checkout / "lib" / "__init__.py"), "repo_root": str(checkout),
                    "metric_repo": str(checkout), "profile": "smoke"}
    assert (checkout / "figures" / "smoke" / "index.html").is_file()


def test_run_all_refuses_when_the_kernel_imports_another_checkouts_lib(checkout) -> None:
    """With nothing of B's to import, the editable install's mapping (checkout A) would win:
    run_all.sh must say so and stop before any notebook runs."""
    shutil.rmtree(checkout / "lib")
    result = _run(checkout, "run_all.sh", "--profile", "smoke")
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(checkout / "lib" / "__init__.py") in result.stderr and "Fix:" in result.stderr
    elsewhere = subprocess.run([str(VENV / "bin" / "python"), "-c", "import os, lib; print(os.path.realpath(lib.__file__))"],
                               cwd=checkout / "notebooks", env=_env(), capture_output=True, text=True)
    if elsewhere.returncode == 0:  # the editable install maps lib to this checkout: the message names it
        assert elsewhere.stdout.strip() in result.stderr
    assert not (checkout / "reports").exists()


def test_a_chapter_refuses_a_lib_from_another_checkout(monkeypatch, tmp_path) -> None:
    """Probe: a notebook of checkout B importing A's lib wrote A's figures without a word."""
    from lib.study import Chapter, check_checkout

    monkeypatch.setenv("METRIC_REPO", str(tmp_path))
    with pytest.raises(RuntimeError, match="wrong checkout") as err:
        Chapter("00_quickstart", "smoke")
    assert str(REPO_ROOT) in str(err.value) and str(tmp_path.resolve()) in str(err.value)
    monkeypatch.setenv("METRIC_REPO", str(REPO_ROOT / "lib" / ".."))  # the same checkout, spelled otherwise
    check_checkout()
    monkeypatch.delenv("METRIC_REPO")
    check_checkout()


PROBE_TEST = '''\
import os, subprocess, sys, tempfile
from pathlib import Path

def test_lib_is_this_checkouts():
    here = Path(__file__).resolve().parent.parent
    assert os.environ["METRIC_REPO"] == str(here)
    seen = subprocess.run([sys.executable, "-c", "import os, lib; print(os.path.realpath(lib.__file__))"],
                          cwd=tempfile.gettempdir(), capture_output=True, text=True).stdout.strip()
    assert seen == str(here / "lib" / "__init__.py")
'''


def test_run_tests_uses_this_checkouts_lib_and_keeps_pytests_status(checkout) -> None:
    """Probe: run_tests.sh of checkout B with A's editable venv: the tests' subprocesses (and
    the smoke notebooks after them) imported A's lib."""
    (checkout / "tests").mkdir()
    (checkout / "tests" / "test_probe.py").write_text(PROBE_TEST)
    (checkout / "run_all.sh").write_text('#!/usr/bin/env bash\necho "$@" >> "$(dirname "$0")/run-all-ran"\n')
    result = _run(checkout, "run_tests.sh", "-q", "-p", "no:cacheprovider", "tests/test_probe.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (checkout / "run-all-ran").read_text().split() == ["--profile", "smoke"]
    (checkout / "run-all-ran").unlink()
    nothing = _run(checkout, "run_tests.sh", "-q", "-p", "no:cacheprovider", "tests/test_probe.py", "-k", "no_such_test")
    assert nothing.returncode == 5, nothing.stdout + nothing.stderr  # no test collected is not a success
    assert not (checkout / "run-all-ran").exists()


def test_scripts_parse() -> None:
    for script in ("run_all.sh", "run_tests.sh", "scripts/setup_env.sh", "scripts/data_env.sh"):
        subprocess.run(["bash", "-n", str(REPO_ROOT / script)], check=True)


def test_one_chapter_gets_every_core_and_readers_run_with_every_core(checkout) -> None:
    """Probe: `./run_all.sh --only 04` ran the one chapter in one of two lanes, on one thread of two
    cores, the other core idle. Lanes are never more than the chapters that train."""
    probe = ("import os, pathlib\n"
             "pathlib.Path('../threads-{name}.txt').write_text(os.environ['OMP_NUM_THREADS'])")
    for name in ("01_a", "09_reader"):
        (checkout / "notebooks" / f"{name}.ipynb").write_text(_notebook(probe.format(name=name)))
    (checkout / "notebooks" / "00_probe.ipynb").unlink()
    every = str(len(os.sched_getaffinity(0)))  # what nproc counts
    for only in (["--only", "01_a"], []):
        result = subprocess.run(["bash", str(checkout / "run_all.sh"), "--profile", "smoke", *only], cwd=checkout.parent,
                                env=_env(METRIC_LANES="2"), capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"1 lane(s) of {every} thread(s)" in result.stdout
        assert (checkout / "threads-01_a.txt").read_text() == every
    assert (checkout / "threads-09_reader.txt").read_text() == every

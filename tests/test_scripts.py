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

pytestmark = pytest.mark.slow  # each runs a script in a subprocess

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
# lib.runs as run_all.sh calls it: train the plan, then (after the notebooks) store; the stub
# records each call with its time, and the probe chapters plan runs (PLANS names them).
STUB_RUNS = '''\
import json, sys, time
from lib.config import REPO_ROOT
with open(REPO_ROOT / "runs-calls.jsonl", "a") as f:
    f.write(json.dumps({"args": sys.argv[1:], "time": time.time()}) + "\\n")
'''
STUB_CHAPTERS = "PLANS = {name: None for name in ('00_probe', '01_a', '02_b')}\n"
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
    (b / "lib" / "train.py").write_text("")  # run_all.sh imports it to check the profile's runs
    (b / "lib" / "report.py").write_text(STUB_REPORT)
    for package, stub in (("runs", STUB_RUNS), ("chapters", STUB_CHAPTERS)):
        (b / "lib" / package).mkdir()
        (b / "lib" / package / "__init__.py").write_text(stub if package == "chapters" else "")
    (b / "lib" / "runs" / "__main__.py").write_text(STUB_RUNS)
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
    # The plan is trained before any chapter renders, and kept (lib.runs store) once the chapters
    # that read runs have ended, while the reader (which derives nothing from runs) renders.
    calls = [json.loads(line) for line in (checkout / "runs-calls.jsonl").read_text().splitlines()]
    assert [c["args"][0] for c in calls] == ["train", "store"]
    assert calls[0]["args"][1:] == ["--profile", "smoke", "--workers", "2"]
    assert calls[0]["time"] < min(a[0], b[0]) and calls[1]["time"] > max(a[1], b[1])

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


# --------------------------------------------------------------------------- reliability 2
def _stub_the_plan(checkout: Path) -> None:
    """run_all.sh asks lib.chapters which chapters plan runs, and keeps results with lib.runs:
    stubs that plan nothing and keep nothing (unless the checkout has them already)."""
    for rel, text in {"lib/chapters/__init__.py": "PLANS = {}\n", "lib/runs/__init__.py": "",
                      "lib/runs/__main__.py": "import sys\nsys.exit(0)\n"}.items():
        path = checkout / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


ENV_CELL = ("import json, os\n"
            "print(json.dumps({k: os.environ.get(k) for k in ('METRIC_DATA', 'METRIC_RUNS', 'METRIC_CACHE')}))")


@pytest.mark.slow
def test_relative_metric_paths_are_made_absolute_before_the_notebooks_start(checkout) -> None:
    """Probe: `METRIC_DATA=../shared/data ./run_all.sh` failed, as the kernel runs in notebooks/;
    `METRIC_RUNS=relruns` wrote under notebooks/, which git does not ignore."""
    _stub_the_plan(checkout)
    (checkout / "notebooks" / "00_probe.ipynb").write_text(_notebook(ENV_CELL))
    (checkout.parent / "shared" / "data").mkdir(parents=True)
    env = _env(METRIC_DATA="../shared/data", METRIC_RUNS="relruns", METRIC_CACHE="relcache")
    result = subprocess.run(["./run_all.sh", "--profile", "smoke"], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    executed = json.loads((checkout / "reports" / "smoke" / "00_probe.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for o in executed["cells"][-1]["outputs"])
    seen = {k: Path(v) for k, v in json.loads(text.strip().splitlines()[-1]).items()}
    assert all(p.is_absolute() for p in seen.values()), seen
    assert seen["METRIC_DATA"].resolve() == (checkout.parent / "shared" / "data").resolve()
    assert seen["METRIC_RUNS"].resolve() == checkout / "relruns"
    assert seen["METRIC_CACHE"].resolve() == checkout / "relcache"
    # sourced on its own (run_tests.sh), data_env.sh makes them absolute too
    out = subprocess.run(["bash", "-c", f"source {checkout / 'scripts' / 'data_env.sh'} >/dev/null; "
                                        "echo $METRIC_DATA; echo $METRIC_RUNS"],
                         cwd=checkout, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert [Path(p).resolve() for p in out] == [(checkout.parent / "shared" / "data").resolve(), checkout / "relruns"]


def test_a_venv_with_installed_but_no_python_says_so(tmp_path) -> None:
    """Probe: a METRIC_VENV folder with `.installed` but no python failed with rc 127 and no message."""
    import hashlib

    venv = tmp_path / "venv"
    venv.mkdir()
    blob = (REPO_ROOT / "requirements.lock").read_bytes() + (REPO_ROOT / "pyproject.toml").read_bytes()
    (venv / ".installed").write_text(hashlib.sha256(blob).hexdigest()[:16] + "\n")
    env = {**_env(), "METRIC_VENV": str(venv)}
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "setup_env.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == (f"setup: {venv}/.installed is there but {venv}/bin/python is not: the "
                                     f"environment is broken; delete {venv} (or its .installed) and rerun")


SLOW_CELL = ("import pathlib, time\n"
             "pathlib.Path('../started').write_text('yes')\n"
             "if pathlib.Path('../slow').exists():\n"
             "    time.sleep(120)\n")
STATUS_REPORT = '''\
import sys
from lib.config import REPO_ROOT
if __name__ == "__main__":
    path = REPO_ROOT / "figures" / sys.argv[1] / "index.html"
    reports = REPO_ROOT / "reports" / sys.argv[1]
    path.write_text(" ".join(sorted(p.name for p in reports.glob("*.ipynb"))))
    print(path)
'''


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_all_rewrites_the_index_with_the_true_status(checkout, signal_name) -> None:
    """Probe: SIGINT to run_all.sh renamed the report FAILED-... (good), but index.html still
    showed the chapter as OK."""
    import signal
    import time

    _stub_the_plan(checkout)
    (checkout / "lib" / "report.py").write_text(STATUS_REPORT)  # the index lists the reports it finds
    (checkout / "notebooks" / "00_probe.ipynb").unlink()
    (checkout / "notebooks" / "01_a.ipynb").write_text(_notebook(SLOW_CELL))
    first = subprocess.run(["bash", str(checkout / "run_all.sh"), "--profile", "smoke"], cwd=checkout.parent,
                           env=_env(), capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stdout + first.stderr
    index = checkout / "figures" / "smoke" / "index.html"
    assert index.read_text() == "01_a.ipynb"  # a success the index shows

    (checkout / "slow").write_text("")
    (checkout / "started").unlink()
    run = subprocess.Popen(["bash", str(checkout / "run_all.sh"), "--profile", "smoke"], cwd=checkout.parent,
                           env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (checkout / "started").exists():
            assert time.time() < deadline and run.poll() is None, "the chapter never started"
            time.sleep(0.2)
        run.send_signal(getattr(signal, signal_name))
        out, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 128 + getattr(signal, signal_name), out + err
    assert "interrupted" in err
    reports = checkout / "reports" / "smoke"
    assert (reports / "FAILED-01_a.ipynb").exists() and not (reports / "01_a.ipynb").exists()
    assert index.read_text() == "FAILED-01_a.ipynb", "the index does not show the interrupted chapter as failed"

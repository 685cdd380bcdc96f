"""bench/ holds tools, each of which answers ``--help``, and a few of them run here on tiny inputs.

Every file in bench/ but RESULTS.md is a script: a new one is picked up by the ``--help`` test without
being listed here, so it fails until its ``--help`` works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SCRIPTS = sorted(p.name for p in BENCH.iterdir() if p.is_file() and p.name != "RESULTS.md")
MAX_SCRIPTS = 22  # issue 41: bench/ folded to its tools


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    script = BENCH / args[0]
    command = ["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(command + list(args[1:]), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


#: runs scripts' ``--help`` in one interpreter (torch is imported once, not once per script): argv lists in on
#: stdin as JSON, ``{" ".join(argv): [exit code, stdout]}`` out
_HELP_RUNNER = """
import contextlib, io, json, runpy, sys
sys.path.insert(0, sys.argv[1])
out = {}
for argv in json.loads(sys.stdin.read()):
    buffer, code = io.StringIO(), 0
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(buffer):
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out[" ".join(argv)] = [code, buffer.getvalue()]
print(json.dumps(out))
"""


def _helps(calls: list[list[str]]) -> dict[str, tuple[int, str]]:
    """``--help`` of every Python ``calls`` entry (``[script, *args]``, args ending in ``--help``) in one process."""
    argv = [[str(BENCH / c[0]), *c[1:]] for c in calls]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", _HELP_RUNNER, str(BENCH)], input=json.dumps(argv), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    found = json.loads(res.stdout.strip().splitlines()[-1])
    return {" ".join(c): tuple(found[" ".join(a)]) for c, a in zip(calls, argv)}


def _studies() -> list[str]:
    return [line.split('"')[1] for line in (BENCH / "study.py").read_text().splitlines() if 'sub.add_parser("' in line]


def _gpu_all_calls() -> list[list[str]]:
    """Each ``$PY bench/X.py [SUBCOMMAND] OPTIONS`` step of gpu_all.sh, as ``[path, *args]``."""
    return [line.split("$PY ", 1)[1].split() for line in (BENCH / "gpu_all.sh").read_text().splitlines()
            if line.lstrip().startswith("step ") and "$PY bench/" in line]


def _gpu_all_help(call: list[str]) -> list[str]:
    script, *args = call
    return [Path(script).name, *(args[:1] if args and not args[0].startswith("-") else []), "--help"]


#: the tiny runs, beside every --help: all in one interpreter (each separate process would import torch again)
TINY_RUNS = [["call_path.py"], ["longest_functions.py", "--limit", "60"],
             ["bench_fig4.py", "--slice-size", "16", "--kernels", "2,4", "--directions", "20", "--slices", "8",
              "--device", "cpu"],
             ["bench_cancel_points.py", "--shape", "24", "24", "24", "--directions", "16", "--slices", "4",
              "--slice-size", "16", "--repeats", "2"]]


@pytest.fixture(scope="module")
def script_helps() -> dict[str, tuple[int, str]]:
    """Exit code and output of every script's ``--help``, every study's, gpu_all.sh's steps' and the tiny runs."""
    calls = [[s, "--help"] for s in SCRIPTS if s.endswith(".py")] + [["study.py", study, "--help"]
                                                                      for study in _studies()]
    calls += [_gpu_all_help(c) for c in _gpu_all_calls()] + TINY_RUNS
    return _helps([list(c) for c in dict.fromkeys(tuple(c) for c in calls)])


def test_bench_holds_at_most_22_scripts():
    assert len(SCRIPTS) <= MAX_SCRIPTS, SCRIPTS
    assert all(p.suffix in {".py", ".sh"} for p in map(Path, SCRIPTS)), SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_help(script, script_helps):
    if script.endswith(".sh"):
        res = _run(script, "--help", timeout=60)
        code, out = res.returncode, res.stdout
    else:
        code, out = script_helps[f"{script} --help"]
    assert code == 0, out[-2000:]
    assert "usage" in out.lower(), out[:500]


def test_every_study_answers_help(script_helps):
    studies = _studies()
    assert len(studies) >= 5
    for study in studies:
        code, out = script_helps[f"study.py {study} --help"]
        assert code == 0 and "usage" in out, (study, out[-2000:])


def test_gpu_all_calls_only_scripts_that_exist_with_their_options(script_helps):
    """Each ``$PY bench/X.py [SUBCOMMAND] OPTIONS`` step of gpu_all.sh names a kept script and options it knows."""
    calls = _gpu_all_calls()
    assert len(calls) >= 5
    assert all(Path(script).name in SCRIPTS for script, *_ in calls), calls
    for script, *args in calls:
        code, out = script_helps[" ".join(_gpu_all_help([script, *args]))]
        assert code == 0, (script, out[-2000:])
        for option in (a for a in args if a.startswith("--")):
            assert option in out, (script, option)


def _tiny(script_helps, call: list[str]) -> str:
    code, out = script_helps[" ".join(call)]
    assert code == 0, out[-2000:]
    return out


def test_call_path_runs(script_helps):
    out = _tiny(script_helps, TINY_RUNS[0])
    assert "tonno reconstruct:" in out and "backproject_passes" in out


def test_longest_functions_limit(script_helps):
    assert "| lines | function |" in _tiny(script_helps, TINY_RUNS[1])


def test_fig4_and_cancel_points_on_tiny_settings(script_helps):
    assert "| 4 |" in _tiny(script_helps, TINY_RUNS[2])
    assert "longest gap" in _tiny(script_helps, TINY_RUNS[3])


@pytest.mark.slow
def test_study_harness_on_a_tiny_synthetic_study(tmp_path):
    """``study.py train`` on 8 phantoms of 24³ (4 steps), then ``intensity-baseline`` and ``foreign-input`` on the
    data it made."""
    out = tmp_path / "train"
    res = _run("study.py", "train", "--n", "8", "--size", "24", "--steps", "4", "--val-every", "2", "--slice-size",
               "24", "--device", "cpu", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "training time" in res.stdout and "best (step" in res.stdout
    res = _run("study.py", "intensity-baseline", str(out / "data"), "--intensity", "none")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| 8 | none |" in res.stdout
    res = _run("study.py", "foreign-input", str(out / "data"), "--recipes", "small-lesions", "--bags", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| small-lesions | physical | robust-brain | 64 |" in res.stdout
    assert "brain voxels at the volume's maximum" in res.stdout


def test_every_command_in_results_names_a_kept_script_and_its_options():
    """bench/RESULTS.md's commands (``bench/X.py [STUDY] --option ...`` inside backticks) exist with those options."""
    import re

    text = (BENCH / "RESULTS.md").read_text()
    commands = [m.group(1).split() for m in re.finditer(r"`[^`]*?(bench/[\w.]+\.(?:py|sh)[^`]*)`", text)
                if "git show" not in m.group(0)]
    assert len(commands) >= 10
    for script, *args in commands:
        name = Path(script).name
        assert name in SCRIPTS, script
        source = (BENCH / name).read_text()
        for option in (a.strip("[],") for a in args if a.lstrip("[").startswith("--")):
            assert f'"{option}"' in source or option in source, (name, option)

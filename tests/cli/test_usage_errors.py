"""Every invalid numeric option of every command is a usage error (exit 2) that writes nothing;
an output that cannot be written is one clear line and exit 1, never a traceback."""

import errno

import pytest
from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()

# command -> (arguments before the bad option, with {data}, {ckpt} and {out} filled in)
BASE = {
    "reconstruct": ["reconstruct", "-i", "{data}", "-o", "{out}", "-c", "{ckpt}", "--device", "cpu", "-q"],
    "train": ["train", "{data}", "-o", "{out}", "--device", "cpu", "-q"],
    "benchmark": ["benchmark", "{data}", "-o", "{out}", "-c", "{ckpt}", "--device", "cpu", "-q"],
    "demo": ["demo", "-o", "{out}", "--device", "cpu", "-q"],
    "synth": ["synth", "{out}", "-q"],
    "evaluate": ["evaluate", "{data}/masks", "{data}/masks", "-o", "{out}/metrics.csv", "-q"],
    "selfcheck": ["selfcheck", "--device", "cpu", "-q"],
}
BAD = [
    ("reconstruct", "--directions", "0"), ("reconstruct", "--directions", "-5"), ("reconstruct", "--slices", "2"),
    ("reconstruct", "--slice-size", "1"), ("reconstruct", "--batch-size", "0"), ("reconstruct", "--layer", "5"),
    ("reconstruct", "--axes", "2"), ("reconstruct", "--quality", "draft"), ("reconstruct", "--method", "nope"),
    ("train", "--steps", "0"), ("train", "--slice-size", "8"), ("train", "--batch-volumes", "0"),
    ("train", "--slices-per-volume", "0"), ("train", "--lr", "0"), ("train", "--lr", "-1"),
    ("train", "--val-every", "0"), ("train", "--checkpoint-every", "0"), ("train", "--seed", "-1"),
    ("train", "--intensity", "xray"),
    ("benchmark", "--directions", "0"), ("benchmark", "--slices", "2"), ("benchmark", "--steps", "0"),
    ("benchmark", "--slice-size", "8"), ("benchmark", "--layer", "0"), ("benchmark", "--test-fraction", "0"),
    ("benchmark", "--test-fraction", "1.5"), ("benchmark", "--seed", "-1"),
    ("demo", "--cases", "3"), ("demo", "--steps", "0"),
    ("reconstruct", "--geometry", "mm"), ("reconstruct", "--field-of-view", "all"), ("train", "--geometry", "x"),
    ("benchmark", "--field-of-view", "cube"), ("synth", "--spacing", "1,1,0"), ("synth", "--spacing", "1,-1,1"),
    ("synth", "--spacing", "1,nan,1"), ("synth", "--spacing", "1,1"), ("synth", "--oblique", "95"),
    ("selfcheck", "--geometry", "mm"),
    ("synth", "--n", "1"), ("synth", "--max-lesions", "0"), ("synth", "--shape", "8,8,8"), ("synth", "--seed", "-2"),
    ("evaluate", "--connectivity", "7"), ("evaluate", "--connectivity", "0"),
    ("selfcheck", "--size", "huge"),
]


@pytest.mark.parametrize(("command", "option", "value"), BAD)
def test_invalid_option_is_a_usage_error_and_writes_nothing(command, option, value, tiny_cases, tiny_checkpoint,
                                                            tmp_path):
    out = tmp_path / "out"
    args = [a.format(data=tiny_cases, ckpt=tiny_checkpoint, out=out) for a in BASE[command]]
    res = runner.invoke(app, [*args, option, value])
    assert res.exit_code == 2, res.output
    assert "Invalid value" in res.output or "nope" in res.output
    assert not out.exists()


def test_old_preset_spellings_still_work_with_a_deprecation_message(tiny_cases, tiny_checkpoint, tmp_path):
    res = runner.invoke(app, ["selfcheck", "--preset", "huge", "--device", "cpu"])
    assert res.exit_code == 2 and "--preset is deprecated" in res.output and "unknown size 'huge'" in res.output
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(tmp_path / "o"), "-c",
                              str(tiny_checkpoint), "--preset", "draft"])
    assert res.exit_code == 2 and "use --quality" in res.output


@pytest.mark.parametrize("command", ["reconstruct", "synth", "evaluate"])
def test_an_output_under_a_file_is_a_one_line_error(command, tiny_cases, tiny_checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    args = [a.format(data=tiny_cases, ckpt=tiny_checkpoint, out=out) for a in BASE[command]]
    if command == "reconstruct":
        args += ["--slices", "3", "--directions", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    assert "error:" in res.output and str(blocker) in res.output


def test_a_full_disk_is_a_one_line_error(tiny_cases, tiny_checkpoint, tmp_path, monkeypatch):
    """Writing summary.csv fails with ENOSPC: the batch ends with one line naming the file and the cause."""
    from tonno_engine.apps import batch

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(batch, "write_text_atomic", full)
    res = runner.invoke(app, ["reconstruct", "-i", str(tiny_cases), "-o", str(tmp_path / "out"), "-c",
                              str(tiny_checkpoint), "--slices", "3", "--directions", "2", "--device", "cpu", "-q"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert "No space left on device" in res.output and "run.json" in res.output

"""Every invalid numeric option of every command is a usage error (exit 2) that writes nothing;
an output that cannot be written is one clear line and exit 1, never a traceback."""

import errno

import pytest
from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()

#: a base command line (``{data}``, ``{ckpt}`` and ``{out}`` filled in) for each command, and for some a variant
#: the option needs (an iterative method for --strength, --stage2 for its options, a level for export's rule);
#: each also holds small values of the options that cost time, so a row that stopped failing would still end fast.
#: A missing input path is fine: option values are checked before any input is read.
BASE = {
    "reconstruct": ["reconstruct", "-i", "{data}", "-o", "{out}", "-c", "{ckpt}", "--device", "cpu", "-q",
                    "--slices", "3", "--directions", "2"],
    "reconstruct-tv": ["reconstruct", "-i", "{data}", "-o", "{out}", "-c", "{ckpt}", "--device", "cpu", "-q",
                       "--slices", "3", "--directions", "2", "-m", "tonno-iterative", "--regulariser", "tv"],
    "train": ["train", "{data}", "-o", "{out}", "--device", "cpu", "-q", "--steps", "1"],
    "pretrain": ["pretrain", "{data}", "-o", "{out}", "--device", "cpu", "-q", "--steps", "1"],
    "benchmark": ["benchmark", "{data}", "-o", "{out}", "-c", "{ckpt}", "--device", "cpu", "-q",
                  "--slices", "3", "--directions", "2"],
    "benchmark-tv": ["benchmark", "{data}", "-o", "{out}", "-c", "{ckpt}", "--device", "cpu", "-q",
                     "--slices", "3", "--directions", "2", "-m", "tonno-iterative", "--regulariser", "tv"],
    "benchmark-stage2": ["benchmark", "{data}", "-o", "{out}", "-c", "{ckpt}", "--device", "cpu", "-q",
                         "--slices", "3", "--directions", "2", "--stage2", "--stage2-steps", "1"],
    "demo": ["demo", "-o", "{out}", "--device", "cpu", "-q", "--steps", "1"],
    "synth": ["synth", "{out}", "-q"],
    "synth-petct": ["synth", "{out}", "-q", "--kind", "petct", "--n", "2", "--shape", "16,16,16"],
    "evaluate": ["evaluate", "{data}/masks", "{data}/masks", "-o", "{out}/metrics.csv", "-q"],
    "selfcheck": ["selfcheck", "--device", "cpu", "-q"],
    "export": ["export", "nnunet", "{data}", "--heatmaps", "{data}/heatmaps", "-o", "{out}", "-q"],
    "export-level": ["export", "nnunet", "{data}", "--heatmaps", "{data}/heatmaps", "-o", "{out}", "-q",
                     "--percentile", "99"],
    "segment-train": ["segment", "train", "{data}/export", "-o", "{out}", "--device", "cpu", "-q", "--steps", "1"],
    "segment-predict": ["segment", "predict", "{data}/segmenter.pt", "{data}", "-o", "{out}", "--device", "cpu", "-q"],
    "convert-duke": ["convert", "duke", "{data}", "{out}", "--boxes", "{data}/labels.csv", "-q"],
}
#: (base, option, invalid value): every numeric option of every command (test_every_numeric_option_has_a_row),
#: with zero, negative, out-of-range, nan and inf where each is wrong, and the named choices
BAD = [
    ("reconstruct", "--directions", "0"), ("reconstruct", "--directions", "-5"), ("reconstruct", "--slices", "2"),
    ("reconstruct", "--slice-size", "1"), ("reconstruct", "--batch-size", "0"), ("reconstruct", "--layer", "5"),
    ("reconstruct", "--axes", "2"), ("reconstruct", "--quality", "draft"), ("reconstruct", "--method", "nope"),
    ("reconstruct", "--axes", "0"), ("reconstruct", "--cam", "nope"), ("reconstruct", "--iterations", "-1"),
    ("reconstruct", "--regulariser", "l1"), ("reconstruct", "--num-parts", "0"), ("reconstruct", "--part-id", "-1"),
    ("reconstruct", "--part-id", "1"), ("reconstruct", "--findings", "a,a"), ("reconstruct", "--device", "tpu"),
    ("reconstruct-tv", "--strength", "inf"), ("reconstruct-tv", "--strength", "nan"),
    ("reconstruct-tv", "--strength", "-1"), ("reconstruct-tv", "--strength", "0"),
    ("train", "--steps", "0"), ("train", "--slice-size", "8"), ("train", "--batch-volumes", "0"),
    ("train", "--slices-per-volume", "0"), ("train", "--lr", "0"), ("train", "--lr", "-1"),
    ("train", "--val-every", "0"), ("train", "--checkpoint-every", "0"), ("train", "--seed", "-1"),
    ("train", "--intensity", "xray"), ("train", "--lr", "nan"), ("train", "--lr", "inf"),
    ("train", "--context", "-1"), ("train", "--context", "nan"), ("train", "--context", "inf"),
    ("train", "--cache-gb", "0"), ("train", "--cache-gb", "nan"), ("train", "--cache-gb", "inf"),
    ("train", "--ema", "1"), ("train", "--ema", "nan"), ("train", "--val-slices", "0"), ("train", "--anchors", "-1"),
    ("train", "--candidates", "-1"), ("train", "--candidates", "2"), ("train", "--pool-volumes", "0"),
    ("train", "--loader-workers", "-1"), ("train", "--recipe", "fast"), ("train", "--norm", "ln"),
    ("train", "--model", "nope"), ("train", "--objective", "max"), ("train", "--findings", "a,a"),
    ("train", "--device", "tpu"),
    ("pretrain", "--steps", "0"), ("pretrain", "--slice-size", "8"), ("pretrain", "--batch-volumes", "0"),
    ("pretrain", "--slices-per-volume", "0"), ("pretrain", "--lr", "0"), ("pretrain", "--lr", "nan"),
    ("pretrain", "--lr", "inf"), ("pretrain", "--temperature", "0"), ("pretrain", "--temperature", "nan"),
    ("pretrain", "--temperature", "inf"), ("pretrain", "--view-tilt", "91"), ("pretrain", "--view-tilt", "nan"),
    ("pretrain", "--view-shift", "2"), ("pretrain", "--view-shift", "nan"), ("pretrain", "--checkpoint-every", "0"),
    ("pretrain", "--seed", "-1"), ("pretrain", "--cache-gb", "0"), ("pretrain", "--cache-gb", "inf"),
    ("pretrain", "--pool-volumes", "0"), ("pretrain", "--loader-workers", "-1"), ("pretrain", "--norm", "ln"),
    ("pretrain", "--model", "nope"), ("pretrain", "--intensity", "xray"), ("pretrain", "--geometry", "mm"),
    ("pretrain", "--device", "tpu"),
    ("benchmark", "--directions", "0"), ("benchmark", "--slices", "2"), ("benchmark", "--steps", "0"),
    ("benchmark", "--slice-size", "8"), ("benchmark", "--layer", "0"), ("benchmark", "--test-fraction", "0"),
    ("benchmark", "--test-fraction", "1.5"), ("benchmark", "--test-fraction", "nan"), ("benchmark", "--seed", "-1"),
    ("benchmark", "--resamples", "10"), ("benchmark", "--layers", "5"), ("benchmark", "--iterations", "-1"),
    ("benchmark", "--cam", "nope"), ("benchmark", "--norm", "ln"), ("benchmark", "--model", "nope"),
    ("benchmark", "--recipe", "fast"), ("benchmark", "--quality", "draft"), ("benchmark", "--regulariser", "l1"),
    ("benchmark", "--device", "tpu"), ("benchmark", "--stage2-patch", "12"), ("benchmark", "--margin-mm", "inf"),
    ("benchmark-tv", "--strength", "inf"), ("benchmark-tv", "--strength", "nan"),
    ("benchmark-stage2", "--stage2-patch", "12"), ("benchmark-stage2", "--stage2-patch", "4"),
    ("benchmark-stage2", "--stage2-steps", "0"), ("benchmark-stage2", "--stage2-rounds", "0"),
    ("benchmark-stage2", "--stage2-from", "nope"), ("benchmark-stage2", "--band", "2"),
    ("benchmark-stage2", "--band", "nan"), ("benchmark-stage2", "--margin-mm", "-1"),
    ("benchmark-stage2", "--margin-mm", "nan"), ("benchmark-stage2", "--margin-mm", "inf"),
    ("demo", "--cases", "3"), ("demo", "--steps", "0"), ("demo", "--device", "tpu"),
    ("reconstruct", "--geometry", "mm"), ("reconstruct", "--field-of-view", "all"), ("train", "--geometry", "x"),
    ("benchmark", "--field-of-view", "cube"), ("synth", "--spacing", "1,1,0"), ("synth", "--spacing", "1,-1,1"),
    ("synth", "--spacing", "1,nan,1"), ("synth", "--spacing", "1,1"), ("synth", "--oblique", "95"),
    ("selfcheck", "--geometry", "mm"),
    ("synth", "--n", "1"), ("synth", "--max-lesions", "0"), ("synth", "--shape", "8,8,8"), ("synth", "--seed", "-2"),
    ("synth", "--oblique", "nan"), ("synth", "--contrast-scale", "0"), ("synth", "--contrast-scale", "nan"),
    ("synth", "--contrast-scale", "inf"), ("synth", "--bias-field", "3"), ("synth", "--bias-field", "nan"),
    ("synth", "--unknown", "1"), ("synth", "--unknown", "nan"), ("synth", "--prevalence", "0"),
    ("synth", "--prevalence", "nan"), ("synth", "--lesion-radius", "3,1"), ("synth", "--lesion-radius", "1,inf"),
    ("synth", "--kind", "cube"), ("synth", "--difficulty", "easy"), ("synth", "--format", "png"),
    ("synth", "--findings", "spots"), ("synth-petct", "--format", "dicom"), ("synth-petct", "--findings", "bright"),
    ("evaluate", "--connectivity", "7"), ("evaluate", "--connectivity", "0"), ("evaluate", "--iou-threshold", "0"),
    ("evaluate", "--iou-threshold", "2"), ("evaluate", "--iou-threshold", "nan"), ("evaluate", "--tolerance-mm", "-1"),
    ("evaluate", "--tolerance-mm", "nan"), ("evaluate", "--tolerance-mm", "inf"), ("evaluate", "--min-mm3", "-1"),
    ("evaluate", "--min-mm3", "inf"), ("evaluate", "--threshold", "percentile:150"), ("evaluate", "--threshold", "nan"),
    ("evaluate", "--threshold", "fixed:inf"), ("evaluate", "--threshold", "magic"), ("evaluate", "--metrics", "most"),
    ("evaluate", "--findings", "a,a"),
    ("selfcheck", "--size", "huge"), ("selfcheck", "--field-of-view", "cube"), ("selfcheck", "--device", "tpu"),
    ("export", "--level", "nan"), ("export", "--level", "inf"), ("export", "--percentile", "150"),
    ("export", "--percentile", "0"), ("export", "--percentile", "nan"),
    ("export-level", "--name", "../evil"), ("export-level", "--name", ""), ("export-level", "--id", "0"),
    ("export-level", "--id", "1000"), ("export-level", "--band", "2"), ("export-level", "--band", "nan"),
    ("export-level", "--margin-mm", "-1"), ("export-level", "--margin-mm", "inf"), ("export-level", "--min-mm3", "-1"),
    ("export-level", "--min-mm3", "inf"), ("export-level", "--intensity", "xray"), ("export-level", "--method", "../x"),
    ("export-level", "--finding", "a,b"),
    ("convert-duke", "--sequence", " "),
    ("segment-train", "--patch", "12"), ("segment-train", "--patch", "4"), ("segment-train", "--steps", "0"),
    ("segment-train", "--batch-size", "0"), ("segment-train", "--lr", "0"), ("segment-train", "--lr", "nan"),
    ("segment-train", "--lr", "inf"), ("segment-train", "--lesion-fraction", "2"),
    ("segment-train", "--lesion-fraction", "nan"), ("segment-train", "--cache-cases", "0"),
    ("segment-train", "--seed", "-1"), ("segment-train", "--intensity", "xray"), ("segment-train", "--device", "tpu"),
    ("segment-predict", "--overlap", "0.95"), ("segment-predict", "--overlap", "-0.1"),
    ("segment-predict", "--overlap", "nan"), ("segment-predict", "--device", "tpu"),
    ("segment-predict", "--format", "png"), ("reconstruct", "--format", "png"),
]


def _command(base: str) -> str:
    """The command a base runs: its leading words (``export nnunet``)."""
    words = []
    for arg in BASE[base]:
        if arg.startswith(("-", "{")):
            break
        words.append(arg)
    return " ".join(words)


@pytest.mark.parametrize(("base", "option", "value"), BAD)
def test_invalid_option_is_a_usage_error_and_writes_nothing(base, option, value, tiny_cases, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = [a.format(data=tiny_cases, ckpt=tiny_checkpoint, out=out) for a in BASE[base]]
    res = runner.invoke(app, [*args, option, value])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Invalid value" in res.output and option in res.output, res.output
    assert not out.exists()


def _value_options(function) -> dict[str, type]:
    """A command function's visible options that take a value: ``--name`` -> its type."""
    import typer.models
    from typer.utils import get_params_from_function

    found = {}
    for name, meta in get_params_from_function(function).items():
        info = meta.default
        if isinstance(info, typer.models.OptionInfo) and not info.hidden and meta.annotation is not bool:
            long = [d for d in info.param_decls if d.startswith("--") and "/" not in d]
            found[long[0] if long else "--" + name.replace("_", "-")] = meta.annotation
    return found


def _commands() -> dict[str, object]:
    """Every command of the app, by its words (``segment train``), and its function."""
    found = {info.name or info.callback.__name__: info.callback for info in app.registered_commands}
    for group in app.registered_groups:
        found.update({f"{group.name} {info.name or info.callback.__name__}": info.callback
                      for info in group.typer_instance.registered_commands})
    return found


def test_every_numeric_option_of_every_command_has_a_row():
    """The table reaches every command that takes an option value, and every int or float option of each: a new
    one without a row fails here."""
    commands = _commands()
    assert len(commands) == 16  # tests/cli/test_app_assembly.py: ten commands, export nnunet, segment train|predict,
    # convert mosmed|autopet|duke
    rows = {(_command(base), option) for base, option, _ in BAD}
    taking_values = {name for name, function in commands.items() if _value_options(function)}
    assert taking_values == {_command(base) for base in BASE}, "a command without a base, or a base of no command"
    missing = sorted(f"{name} {option}" for name, function in commands.items()
                     for option, kind in _value_options(function).items()
                     if kind in (int, float) and (name, option) not in rows)
    assert missing == []


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

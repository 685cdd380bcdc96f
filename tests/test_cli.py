import json
import subprocess
import sys

from typer.testing import CliRunner

from tonno_cli.app import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("info", "selfcheck"):
        assert command in result.output


def test_info_reports_devices_and_auto_choice():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "auto picks" in result.output and "torch" in result.output and "cpu" in result.output


def test_selfcheck_bad_device_is_a_usage_error():
    result = runner.invoke(app, ["selfcheck", "--device", "quantum"])
    assert result.exit_code == 2
    assert "quantum" in result.output


def test_selfcheck_console_script_passes_and_prints_numbers():
    exe = [sys.executable, "-c", "from tonno_cli.app import main; main()"]
    proc = subprocess.run([*exe, "selfcheck", "--device", "cpu", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] and result["correlation"] >= 0.97 and result["relative_error"] <= 0.2
    assert result["seconds"] > 0

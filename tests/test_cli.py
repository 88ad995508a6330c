import subprocess
import sys

import pytest

from stdgen import __version__
from stdgen.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "render-demo" in capsys.readouterr().out


def test_no_command_is_an_error(capsys):
    assert main([]) == 2


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "stdgen", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_user_error_gives_one_line_and_status_2(tmp_path, capsys):
    assert main(["render-demo", "-o", str(tmp_path), "--resolution", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stdgen: error:") and "Traceback" not in err

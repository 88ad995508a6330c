"""The README's commands and .ci/run stay in step."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_opens_with_run_and_test_commands():
    cmds = _readme_commands()
    assert len(cmds) >= 2
    assert "stdgen " in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = _readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()

"""``stdgen app``: its flags, its one-line errors, and a start / serve / stop with the stand-in pipeline."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import stdgen.pipeline
from stdgen.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_help_imports_neither_gradio_nor_torch():
    code = ("import sys\nfrom stdgen.cli import main\nfor argv in (['--help'], ['app', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('gradio' in sys.modules, 'torch' in sys.modules, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC}, timeout=120)
    assert out.stderr.strip() == "False False", out.stderr
    assert "the web app" in out.stdout and "--max-upload-mb" in out.stdout and "--share" not in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--port", "0"], "--port must be between 1 and 65535, got 0"),
    (["--max-upload-mb", "0"], "--max-upload-mb must be between 0.01 and 1000, got 0"),
    (["--concurrency", "0"], "--concurrency must be between 1 and 16, got 0"),
    (["--device", "tpu"], "--device 'tpu': not a device; use cpu, cuda, cuda:N or auto"),
    (["--examples", "/nonexistent/examples"], "--examples /nonexistent/examples: not a folder"),
])
def test_bad_flags_are_one_line_errors(capsys, args, message):
    assert main(["app", *args]) == 2
    assert capsys.readouterr().err == f"stdgen: error: {message}\n"


@pytest.fixture
def fake_weights(monkeypatch, make_pipeline, save_output):
    """``StdGENPipeline.from_pretrained`` gives the stand-in; ``save_output`` is the stand-in's."""
    loaded = []

    class Loader:
        @staticmethod
        def from_pretrained(weights_dir=None, device="cpu"):
            loaded.append((weights_dir, str(device)))
            return make_pipeline()

    monkeypatch.setattr(stdgen.pipeline, "StdGENPipeline", Loader, raising=False)
    monkeypatch.setattr(stdgen.pipeline, "save_output", save_output, raising=False)
    return loaded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serves_then_stops_on_ctrl_c_and_removes_its_results(monkeypatch, capsys, fake_weights, tmp_path):
    import stdgen.app.cli as app_cli
    import stdgen.app.ui as ui

    results = tmp_path / "results"
    monkeypatch.setattr(ui, "default_results_root", lambda: results.mkdir() or results)
    seen = {}

    def visit_then_interrupt(url):
        with urllib.request.urlopen(url + "config", timeout=30) as page:
            seen["status"], seen["config"] = page.status, json.loads(page.read())
        seen["results_while_serving"] = results.is_dir()
        raise KeyboardInterrupt

    monkeypatch.setattr(app_cli, "_wait", visit_then_interrupt)
    port = _free_port()
    status = main(["app", "--port", str(port), "--device", "cpu", "--weights", str(tmp_path / "w")])
    out, err = capsys.readouterr()
    assert status == 130 and err.endswith("stdgen: interrupted\n")
    assert f"stdgen app: open http://127.0.0.1:{port}/" in out
    assert fake_weights == [(str(tmp_path / "w"), "cpu")]  # loaded once, before serving
    assert seen["status"] == 200 and seen["config"]["title"] == "stdgen"
    assert seen["config"]["analytics_enabled"] is False
    assert seen["results_while_serving"] and not results.exists()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):  # the server is gone
        s.connect(("127.0.0.1", port))


def test_a_port_in_use_is_a_one_line_error(capsys, fake_weights):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        handlers = list(logging.getLogger("stdgen").handlers)
        assert main(["app", "--port", str(port), "--device", "cpu"]) == 2
    # Its log handler is gone too: one left bound to this test's (closed) stderr broke later commands' logging.
    assert logging.getLogger("stdgen").handlers == handlers
    err = capsys.readouterr().err
    assert err.endswith(f"stdgen: error: --port {port}: cannot serve on 127.0.0.1:{port} (the port is in use, or "
                        "the address is not this machine's); choose another --port or --host\n"), err

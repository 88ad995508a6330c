"""The weights finder: --weights DIR, then $STDGEN_WEIGHTS, then the package's bundled folder; never a download."""

from __future__ import annotations

from pathlib import Path

import pytest

import stdgen.weights as weights
from stdgen.errors import StdgenError
from stdgen.weights import ENV_VAR, available, bundled_dir, find_weights


def make_folder(root: Path, name: str, files=("config.json", "model.safetensors")) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for f in files:
        (d / f).write_text("{}")
    return d


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Three separate roots: the --weights folder, $STDGEN_WEIGHTS and a stand-in bundled folder."""
    roots = {k: tmp_path / k for k in ("user", "env", "bundled")}
    for r in roots.values():
        r.mkdir()
    monkeypatch.setenv(ENV_VAR, str(roots["env"]))
    monkeypatch.setattr(weights, "bundled_dir", lambda: roots["bundled"])
    return roots


def test_search_order(places):
    b = make_folder(places["bundled"], "slrm")
    assert find_weights("slrm") == b
    assert find_weights("slrm", places["user"]) == b  # an explicit folder without the name falls through
    e = make_folder(places["env"], "slrm")
    assert find_weights("slrm") == e
    u = make_folder(places["user"], "slrm")
    assert find_weights("slrm", places["user"]) == u
    assert find_weights("slrm", str(places["user"])) == u
    assert available(places["user"]) == {"slrm": u}


def test_missing_lists_every_place(places):
    with pytest.raises(StdgenError) as info:
        find_weights("mvdiff", places["user"])
    msg = str(info.value)
    assert "\n" not in msg
    for where, root in (("--weights", "user"), (f"${ENV_VAR}", "env"), ("bundled", "bundled")):
        assert f"{places[root] / 'mvdiff'} ({where})" in msg


def test_incomplete_folder_is_an_error_not_skipped(places):
    make_folder(places["bundled"], "canon")
    make_folder(places["env"], "canon", files=("config.json",))
    with pytest.raises(StdgenError, match=r"canon \(\$STDGEN_WEIGHTS\): incomplete weights folder, missing model"):
        find_weights("canon")


def test_names_are_plain(places):
    for bad in ("", "../slrm", "a/b", ".."):
        with pytest.raises(StdgenError, match="plain folder name"):
            find_weights(bad)


def test_bundled_folder_is_the_package_and_shipped():
    d = bundled_dir()
    assert d.is_dir() and d == Path(weights.__file__).parent
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    line = next(x for x in pyproject.read_text().splitlines() if x.startswith("stdgen = ["))
    assert '"**/*.json"' in line and '"weights/*/*.safetensors"' in line  # config.json + model.safetensors


def test_never_touches_the_network(places, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the weights finder opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(StdgenError, match="no weights for 'slrm'"):
        find_weights("slrm")
    u = make_folder(places["user"], "slrm")
    assert find_weights("slrm", places["user"]) == u

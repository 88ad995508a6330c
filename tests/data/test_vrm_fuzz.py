"""Fuzzing the VRM importer with hypothesis: mutated copies of real files must either import or
raise InputError / SkipImport; never another exception, never a hang.

Three kinds of mutation: raw bytes (flips, truncation, deletion, insertion, anywhere), and JSON
edits that keep the container valid (a value anywhere in the glTF JSON replaced by a random
one), which reach the deep structural checks. The default run tries ``FUZZ_CASES`` cases per
source file; ``-m slow`` runs ``SLOW_FUZZ_CASES``.
"""

import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stdgen.data.vrm import SkipImport, VrmImportConfig, import_vrm
from stdgen.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vrm_malformed import join_glb, split_glb  # noqa: E402
from vrm_fixtures import capsule_character  # noqa: E402

FUZZ_CASES = 50
SLOW_FUZZ_CASES = 3000
HANG_SECONDS = 20  # one import of these small files takes well under a second
CONFIG = VrmImportConfig(pose="a")


def _sources() -> dict[str, bytes]:
    from stdgen.export.vrm import vrm_bytes

    return {
        "debug_robot (VRM 1.0 sample)": (FIXTURES / "debug_robot.vrm").read_bytes(),
        # Skinned and textured, written by our exporter as VRM 0.x.
        "capsule (VRM 0.x, skinned)": vrm_bytes(capsule_character(), version="0.x"),
    }


SOURCES = _sources()


@contextmanager
def _no_hang(seconds: int):
    def alarm(signum, frame):
        raise TimeoutError(f"import took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _check(data: bytes) -> None:
    with _no_hang(HANG_SECONDS):
        try:
            import_vrm("fuzz.vrm", CONFIG, data=data)
        except (InputError, SkipImport) as exc:
            assert str(exc).startswith("fuzz.vrm"), str(exc)


# -- mutations ---------------------------------------------------------------------------------------
@st.composite
def byte_mutation(draw, data: bytes) -> bytes:
    b = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "delete", "insert", "header"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
    elif kind == "truncate":
        b = b[: draw(st.integers(0, len(b) - 1))]
    elif kind == "delete":
        i = draw(st.integers(0, len(b) - 1))
        del b[i:i + draw(st.integers(1, 64))]
    elif kind == "insert":
        i = draw(st.integers(0, len(b)))
        b[i:i] = draw(st.binary(min_size=1, max_size=64))
    else:  # the 20 bytes of GLB and JSON-chunk headers
        i = draw(st.integers(0, 19))
        b[i] = draw(st.integers(0, 255))
    return bytes(b)


def _paths(node, prefix=()):
    """Every (path, value) in a JSON document."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


_VALUES = st.one_of(
    st.integers(-3, 3), st.integers(-(2**31), 2**32), st.sampled_from([0, 1, 2, 4, 5, 6, 5121, 5123, 5125, 5126]),
    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(),
    st.sampled_from(["", "VEC3", "MAT4", "SCALAR", "hips", "MASK", "BLEND", "image/png", "data:,x"]),
    st.just([]), st.just({}), st.lists(st.integers(-2, 40), max_size=5),
)


@st.composite
def json_mutation(draw, data: bytes) -> bytes:
    doc, blob = split_glb(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p, _ in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete"]))
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_VALUES)
    try:
        return join_glb(doc, blob)
    except ValueError:  # json.dumps refuses nothing here, but keep the case valid bytes anyway
        return join_glb(json.loads(json.dumps(doc, default=str)), blob)


def _run(name: str, strategy, cases: int):
    data = SOURCES[name]

    @settings(max_examples=cases, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy(data))
    def run(mutated):
        _check(mutated)

    run()


@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.parametrize("strategy", [byte_mutation, json_mutation], ids=["bytes", "json"])
def test_fuzz_mutated_files_never_crash(name, strategy):
    _run(name, strategy, FUZZ_CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.parametrize("strategy", [byte_mutation, json_mutation], ids=["bytes", "json"])
def test_fuzz_many_cases(name, strategy):
    _run(name, strategy, SLOW_FUZZ_CASES)

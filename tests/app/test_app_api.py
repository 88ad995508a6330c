"""The app through its API (gradio_client, no browser): the queue's concurrency limit, seen from
clients at once; a pipeline error as the one line a client gets."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_runs_at_once_never_exceed_the_limit(tmp_path, pictures, make_pipeline, save_output, concurrency):
    from gradio_client import Client, handle_file

    from stdgen.app import build_app, serve

    pipe = make_pipeline(delay=0.15)  # about 1 s a run
    demo = build_app(pipe, save_output=save_output, concurrency=concurrency, results_dir=tmp_path / "runs")
    url = serve(demo, host="127.0.0.1", port=_free_port(), block=False, quiet=True)
    try:
        client = Client(url, verbose=False)

        def one(seed):
            return client.predict(handle_file(str(pictures["good"])), "auto", seed, 0, True, api_name="/generate")

        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(one, range(3)))
    finally:
        demo.close(verbose=False)
    assert len(results) == 3 and sorted(c["seed"] for c in pipe.calls) == [0, 1, 2]
    # The most runs in progress at any moment (from the stand-in's own start / end times).
    events = sorted([(a, 1) for a, _ in pipe.spans] + [(b, -1) for _, b in pipe.spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == concurrency


def test_a_pipeline_error_reaches_the_client_as_its_one_line(tmp_path, pictures, make_pipeline, save_output):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from stdgen.app import build_app, serve

    pipe = make_pipeline(delay=0.01, fail="no figure found in the picture: is it a character on a plain background?")
    demo = build_app(pipe, save_output=save_output, results_dir=tmp_path / "runs")
    url = serve(demo, host="127.0.0.1", port=_free_port(), block=False, quiet=True)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(AppError) as exc:
            client.predict(handle_file(str(pictures["good"])), "auto", 0, 0, True, api_name="/generate")
        with pytest.raises(AppError) as bad:
            client.predict(handle_file(str(pictures["flat"])), "auto", 0, 0, True, api_name="/generate")
    finally:
        demo.close(verbose=False)
    assert str(exc.value) == "no figure found in the picture: is it a character on a plain background?"
    assert str(bad.value) == "flat.jpg: the picture is one flat colour; there is no figure in it"
    assert len(pipe.calls) == 1 and list((tmp_path / "runs").iterdir()) == []

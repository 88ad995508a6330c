"""The web app's handlers, called directly (no server, no browser) with the stand-in pipeline."""

from __future__ import annotations

import threading
import time

import numpy as np
import pygltflib
import pytest

from stdgen.app.core import (
    STAGES,
    AppConfig,
    Options,
    RunStore,
    generate_events,
    read_upload,
    seconds_table,
    views_sheet,
)
from stdgen.errors import StdgenError


@pytest.fixture
def handlers(tmp_path, fake_pipeline, save_output):
    from stdgen.app import build_app

    demo = build_app(fake_pipeline, save_output=save_output, max_upload_mb=20, results_dir=tmp_path / "runs")
    return demo.stdgen_handlers


def _node_names(path) -> list[str]:
    g = pygltflib.GLTF2().load(str(path))
    return sorted(n.name for n in g.nodes if n.mesh is not None)


def test_a_run_reports_every_stage_then_the_files(handlers, pictures, fake_pipeline):
    events = list(handlers.generate(str(pictures["good"]), "auto", 7.0, None, True))
    stages = [e.stage for e in events if e.kind == "stage"]
    assert stages == list(STAGES)
    # Progress comes before its stage ends, in pipeline order.
    progress = [e.stage for e in events if e.kind == "progress"]
    assert progress == [s for s in STAGES for _ in range(3)]
    canonical = next(e.images["canonical"] for e in events if e.stage == "canonicalize" and e.kind == "stage")
    assert canonical.shape == (128, 128, 4) and canonical.dtype == np.uint8
    sheet = views_sheet(next(e.images for e in events if e.stage == "multiview" and e.kind == "stage"))
    assert sheet.shape == (256, 768, 3) and sheet.dtype == np.uint8
    done = events[-1]
    assert done.kind == "done" and set(done.run.seconds) == set(STAGES)
    assert fake_pipeline.calls == [dict(pose="auto", seed=7, steps=None, refine=True, shape=(96, 96, 4))]
    assert _node_names(done.run.part_file("whole")) == ["body", "clothes", "hair"]
    for part in ("body", "clothes", "hair"):
        assert _node_names(handlers.show_part(str(done.run.folder), part)) == [part]
    # Only finished folders are left: no .tmp-* of the atomic write.
    assert [p.name for p in handlers.store.root.iterdir()] == [done.run.folder.name]


def test_options_reach_the_pipeline(handlers, pictures, fake_pipeline):
    events = list(handlers.generate(str(pictures["good"]), "apose", 3, 12.0, False))
    assert fake_pipeline.calls[-1] == dict(pose="apose", seed=3, steps=12, refine=False, shape=(96, 96, 4))
    assert [e.stage for e in events if e.kind == "stage"] == ["preprocess", "multiview", "reconstruct", "export"]


@pytest.mark.parametrize("kind, message", [
    ("text", "notes.png: not a picture Pillow can read"),
    ("large", "large.png: 24.1 MB is larger than this app's upload limit of 20 MB"),
    ("transparent", "transparent.png: the picture is fully transparent; there is no figure in it"),
    ("flat", "flat.jpg: the picture is one flat colour; there is no figure in it"),
    ("bomb", "bomb.png: 9000x8000 pixels is more than this app's limit of 16.8 megapixels (4096x4096)"),
])
def test_bad_uploads_are_one_line_errors_before_any_work(handlers, pictures, fake_pipeline, kind, message):
    for call in (lambda: handlers.check_upload(str(pictures[kind])),
                 lambda: list(handlers.generate(str(pictures[kind]), "auto", 0, None, True))):
        with pytest.raises(StdgenError) as exc:
            call()
        assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    assert fake_pipeline.calls == []
    # ... and the app still works.
    assert list(handlers.generate(str(pictures["good"]), "auto", 0, None, True))[-1].kind == "done"


def test_no_picture_and_bad_options(handlers, pictures):
    with pytest.raises(StdgenError, match="no picture yet"):
        list(handlers.generate(None, "auto", 0, None, True))
    with pytest.raises(StdgenError, match=r"seed must be a whole number, got 1.5"):
        list(handlers.generate(str(pictures["good"]), "auto", 1.5, None, True))
    with pytest.raises(StdgenError, match=r"steps must be a whole number from 1 to 200.*got 500"):
        list(handlers.generate(str(pictures["good"]), "auto", 0, 500, True))
    with pytest.raises(StdgenError, match="pose must be 'auto' or 'apose', got 'tpose'"):
        Options(pose="tpose")
    assert handlers.check_upload(None) is None and handlers.show_part(None, "body") is None
    with pytest.raises(StdgenError, match="part must be one of whole, body, clothes, hair"):
        handlers.show_part("/x", "shoes")


def test_a_pipeline_error_is_raised_and_leaves_no_run(tmp_path, pictures, make_pipeline, save_output):
    store = RunStore(tmp_path / "runs")
    image = read_upload(pictures["good"], AppConfig())
    with pytest.raises(StdgenError, match="^no figure found$"):
        list(generate_events(make_pipeline(fail="no figure found"), image, Options(), store, save_output))
    assert list(store.root.iterdir()) == []


def test_a_failed_save_leaves_no_folder(tmp_path, make_pipeline, figure):
    store = RunStore(tmp_path / "runs")

    def broken_save(out, folder):
        (folder / "character.glb").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        list(generate_events(make_pipeline(), figure, Options(), store, broken_save))
    assert list(store.root.iterdir()) == []


def test_leaving_mid_run_stops_the_pipeline_at_its_next_report(tmp_path, make_pipeline, save_output, figure):
    pipe = make_pipeline(delay=0.3)
    gen = generate_events(pipe, figure, Options(), RunStore(tmp_path / "runs"), save_output)
    assert next(gen).kind == "progress"
    t = time.perf_counter()
    gen.close()  # what gradio does when the visitor closes the page
    # The worker ended at its next progress report (every 0.1 s), not after the remaining ~1.7 s of
    # stages (1 s: room for a loaded machine).
    assert time.perf_counter() - t < 1.0
    assert not any(t.name == "stdgen-app-run" for t in threading.enumerate())
    assert list((tmp_path / "runs").iterdir()) == []


def test_old_runs_are_pruned(tmp_path):
    store = RunStore(tmp_path / "runs", keep=2)
    made = [store.save(lambda f, i=i: (f / "x.txt").write_text(str(i))) for i in range(4)]
    assert store.runs() == made[2:]


def test_seconds_table_lists_stages_in_order_with_total():
    from stdgen.app.core import Run

    run = Run(folder=None, seconds={"multiview": 2.0, "preprocess": 0.5}, peak_memory={"cuda": 3 * 2**30},
              settings={})
    assert seconds_table(run) == ("| stage | seconds |\n|---|---:|\n| preprocess | 0.50 |\n| multiview | 2.00 |\n"
                                  "| **total** | **2.50** |\n\nPeak memory: cuda 3072 MiB")
    # Per-stage peaks (the pipeline's GenerateOutput.peak_memory) get a column; the total row has the largest.
    run = Run(folder=None, seconds={"multiview": 2.0, "preprocess": 0.5},
              peak_memory={"multiview": 3 * 2**30, "preprocess": 2**20}, settings={})
    assert seconds_table(run) == ("| stage | seconds | peak memory |\n|---|---:|---:|\n| preprocess | 0.50 | 1 MiB |\n"
                                  "| multiview | 2.00 | 3072 MiB |\n| **total** | **2.50** | **3072 MiB** |")


@pytest.mark.parametrize("field, value", [("max_upload_mb", 0), ("concurrency", 0), ("concurrency", 2.5),
                                          ("queue_size", 0), ("keep_runs", 10**6)])
def test_config_checks_name_the_field(field, value):
    with pytest.raises(StdgenError, match=f"{field} must be .* got {value}"):
        AppConfig(**{field: value})


def test_the_page_has_its_endpoints(tmp_path, fake_pipeline, save_output):
    from stdgen.app import build_app

    demo = build_app(fake_pipeline, save_output=save_output, concurrency=2, results_dir=tmp_path / "runs")
    names = {fn.api_name: fn for fn in demo.fns.values()}
    assert {"check_upload", "generate", "show_part"} <= set(names)
    assert names["generate"].concurrency_limit == 2
    assert demo.stdgen_config.max_upload_bytes == 20 * 2**20


def test_views_sheet_places_colour_over_white_above_normals():
    rgb = np.zeros((6, 4, 4, 4), np.uint8)
    rgb[2, ..., 0] = 200  # view 2: red, half transparent
    rgb[2, ..., 3] = 128
    normal = np.zeros((6, 2, 2, 3), np.uint8)
    normal[5] = (10, 20, 30)
    sheet = views_sheet({"views_rgb": rgb, "views_normal": normal})
    assert sheet.shape == (8, 24, 3)
    np.testing.assert_array_equal(sheet[:4, :8], 255)  # transparent views 0, 1: white
    np.testing.assert_array_equal(sheet[0, 8], [round(200 * 128 / 255 + 255 * 127 / 255), 127, 127])
    np.testing.assert_array_equal(sheet[4:, 20:], np.broadcast_to([10, 20, 30], (4, 4, 3)))  # normals upsized
    only_normals = views_sheet({"views_normal": normal})
    assert only_normals.shape == (4, 12, 3) and (only_normals[:2] == 255).all()

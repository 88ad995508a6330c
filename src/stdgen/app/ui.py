"""The page: gradio components wired to :mod:`stdgen.app.core`.

    demo = build_app(pipe, save_output=save_output, max_upload_mb=20, concurrency=1)
    serve(demo, host="127.0.0.1", port=7860)          # blocks; block=False returns the URL

``pipe`` is anything called like :class:`stdgen.pipeline.StdGENPipeline` (tests pass a stand-in).
Every user error reaches the page as a one-line ``gr.Error``; the server log keeps tracebacks of
bugs only. This module imports gradio (``stdgen.app`` imports it only on first use of
:func:`build_app`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from stdgen.app.core import (
    PART_FILES,
    STAGES,
    AppConfig,
    Event,
    Options,
    Run,
    RunStore,
    default_results_root,
    generate_events,
    read_upload,
    seconds_table,
    views_sheet,
)
from stdgen.errors import StdgenError

log = logging.getLogger(__name__)

TITLE = "stdgen: one picture in, a layered 3D character out"
_INTRO = (
    "Upload a picture of one character, full body, on a plain or transparent background (or pick an "
    "example), then **Generate**. The A-pose picture and the six views appear as their stages finish; "
    "then the character in 3D, whole or part by part, with its GLB files to download."
)


class Handlers:
    """The page's event handlers, callable without a browser (``tests/app``).

    ``pipeline(image, *, pose, seed, steps, refine, progress, on_stage)``: the generator;
    ``save_output(out, folder)``: writes its files; ``store``: where finished runs are kept.
    """

    def __init__(self, pipeline: Callable[..., Any], save_output: Callable[[Any, Path], Any], config: AppConfig,
                 store: RunStore):
        self.pipeline = pipeline
        self.save_output = save_output
        self.config = config
        self.store = store

    def check_upload(self, path: str | None):
        """The uploaded picture, for the preview (``(H, W, 3|4)`` uint8), or ``None`` when cleared."""
        if not path:
            return None
        return read_upload(path, self.config)

    def generate(self, path: str | None, pose: str, seed: Any, steps: Any, refine: bool) -> Iterator[Event]:
        """The run's :class:`~stdgen.app.core.Event` s; a one-line ``StdgenError`` for bad input."""
        if not path:
            raise StdgenError("no picture yet: upload one (or pick an example) first")
        options = Options.from_form(pose, seed, steps, refine)
        image = read_upload(path, self.config)
        log.info("generating from %s (%dx%d) with %s", Path(path).name, image.shape[1], image.shape[0], options)
        yield from generate_events(self.pipeline, image, options, self.store, self.save_output)

    def show_part(self, folder: str | None, part: str) -> str | None:
        """The GLB the viewer shows for ``part`` of the run in ``folder`` (``None`` before a run)."""
        if not folder:
            return None
        return str(Run(Path(folder), {}, None, {}).part_file(part))


def _as_gr_error(exc: BaseException):
    if isinstance(exc, StdgenError):
        return gr.Error(str(exc).splitlines()[0] if str(exc) else "invalid input", print_exception=False)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's, without importing it
        return gr.Error("out of memory: try fewer diffusion steps or turn refinement off", print_exception=False)
    log.exception("the run failed")
    return gr.Error(f"internal error ({type(exc).__name__}); the server log has the details", print_exception=False)


def build_app(pipeline: Callable[..., Any], *, save_output: Callable[[Any, Path], Any] | None = None,
              max_upload_mb: float = 20.0, concurrency: int = 1, queue_size: int = 16,
              examples: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
              results_dir: str | os.PathLike | None = None, keep_runs: int = 32):
    """The web app as a ``gradio.Blocks`` (not started: see :func:`serve`).

    ``pipeline``: called as ``pipeline(image, pose=, seed=, steps=, refine=, progress=, on_stage=)``
    (``stdgen.pipeline.StdGENPipeline``'s contract); ``save_output(out, folder)`` writes a run's
    files (default ``stdgen.pipeline.save_output``). ``max_upload_mb``: the largest upload;
    ``concurrency``: runs at once, the rest queue (at most ``queue_size`` waiting). ``examples``:
    pictures (or a folder of PNGs) offered as examples. ``results_dir``: where runs are kept, the
    newest ``keep_runs`` of them (default: a new temporary folder, removed by ``demo.stdgen_cleanup()``,
    which :func:`serve` calls when it stops).
    """
    config = AppConfig(max_upload_mb=max_upload_mb, concurrency=concurrency, queue_size=queue_size,
                       keep_runs=keep_runs)
    if save_output is None:
        from stdgen.pipeline import save_output
    owned = results_dir is None
    store = RunStore(default_results_root() if owned else results_dir, keep=config.keep_runs)
    handlers = Handlers(pipeline, save_output, config, store)
    example_files = _example_files(examples)

    with gr.Blocks(title="stdgen", analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n{_INTRO}")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label=f"Picture (PNG, JPEG or WebP, at most {config.max_upload_mb:g} MB)",
                                 file_types=["image"], elem_id="stdgen-upload")
                preview = gr.Image(label="Your picture", interactive=False, height=200, elem_id="stdgen-preview")
                examples_gallery = gr.Gallery([str(p) for p in example_files], label="Examples: click one to use it",
                                              columns=4, height=130, allow_preview=False, interactive=False,
                                              object_fit="contain",
                                              visible=bool(example_files), elem_id="stdgen-examples")
                pose = gr.Radio([("auto (the A-pose check decides)", "auto"), ("already in A-pose", "apose")],
                                value="auto", label="Pose of the picture")
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=2**31 - 1)
                steps = gr.Slider(0, 100, value=0, step=1, label="Diffusion steps (0: the model's default)")
                refine = gr.Checkbox(True, label="Refine and texture the parts")
                button = gr.Button("Generate", variant="primary", elem_id="stdgen-generate")
                status = gr.Markdown("", elem_id="stdgen-status")
            with gr.Column(scale=2):
                with gr.Row():
                    canonical = gr.Image(label="A-pose picture", interactive=False, height=240, scale=1,
                                         elem_id="stdgen-canonical")
                    views = gr.Image(label="Six views (-90, -45, 0, 45, 90, 180 degrees): colour, then normals",
                                     interactive=False, height=240, scale=3, elem_id="stdgen-views")
                model = gr.Model3D(label="3D character", height=420, elem_id="stdgen-model")
                part = gr.Radio(list(PART_FILES), value="whole", label="Show", elem_id="stdgen-part")
                with gr.Row():
                    downloads = {name: gr.DownloadButton(f"{name}.glb" if name != "whole" else "character.glb",
                                                         visible=False, elem_id=f"stdgen-download-{name}")
                                 for name in PART_FILES}
                seconds = gr.Markdown("", elem_id="stdgen-seconds")
        run_folder = gr.State(None)

        def on_upload(path):
            try:
                return handlers.check_upload(path)
            except Exception as exc:
                raise _as_gr_error(exc) from None

        def on_reset():
            # The 3D viewer is cleared here and set after the run by a step of its own: gradio 6's viewer
            # draws nothing when a generator that has already yielded sets it.
            return {status: "Waiting for a free slot...", canonical: None, views: None, model: None, seconds: "",
                    run_folder: None, **{b: gr.update(visible=False, value=None) for b in downloads.values()}}

        # gradio finds its progress tracker as a parameter default, so the call must stay there.
        def on_generate(path, pose_, seed_, steps_, refine_, progress=gr.Progress()):  # noqa: B008
            done: set[str] = set()
            yield {status: "Starting..."}
            try:
                for ev in handlers.generate(path, pose_, seed_, steps_, refine_):
                    if ev.kind == "progress":
                        i = STAGES.index(ev.stage) if ev.stage in STAGES else 0
                        progress((i + min(max(ev.fraction, 0.0), 1.0)) / len(STAGES),
                                 desc=f"{ev.stage} (stage {i + 1} of {len(STAGES)})")
                    elif ev.kind == "stage":
                        done.add(ev.stage)
                        update: dict = {status: "Done: " + ", ".join(s for s in STAGES if s in done)}
                        if "canonical" in ev.images:
                            update[canonical] = ev.images["canonical"]
                        if "views_rgb" in ev.images or "views_normal" in ev.images:
                            update[views] = views_sheet(ev.images)
                        yield update
                    elif ev.kind == "done":
                        run = ev.run
                        yield {status: f"Finished in {sum(run.seconds.values()):.1f} s.",
                               part: "whole", seconds: seconds_table(run),
                               run_folder: str(run.folder),
                               **{b: gr.update(visible=True, value=str(run.part_file(n)))
                                  for n, b in downloads.items()}}
            except Exception as exc:
                error = _as_gr_error(exc)
                yield {status: f"Stopped: {error.message}"}  # the error's toast fades; this line stays
                raise error from None

        def on_example(evt: gr.SelectData):
            return str(example_files[evt.index])

        def on_part(folder, part_):
            try:
                return handlers.show_part(folder, part_)
            except Exception as exc:
                raise _as_gr_error(exc) from None

        examples_gallery.select(on_example, None, [upload], queue=False, show_progress="hidden",
                                api_visibility="private")
        # The preview is cleared first, so a refused upload does not leave the last picture in view.
        upload.change(lambda: None, None, [preview], queue=False, show_progress="hidden", api_visibility="private"
                      ).then(on_upload, [upload], [preview], api_name="check_upload", show_progress="minimal")
        outputs = [status, canonical, views, model, part, seconds, run_folder, *downloads.values()]
        button.click(on_reset, None, outputs, queue=False, show_progress="hidden", api_visibility="private").then(
            # The progress bar over the (still empty) 3D viewer only: the pictures stay in view as they come.
            on_generate, [upload, pose, seed, steps, refine], outputs, api_name="generate",
            concurrency_limit=config.concurrency, show_progress_on=[model]).success(
            on_part, [run_folder, part], [model], show_progress="hidden", api_visibility="private")
        part.change(on_part, [run_folder, part], [model], api_name="show_part", show_progress="hidden")

    demo.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    demo.stdgen_handlers = handlers  # the handlers without the web, for tests and scripts
    demo.stdgen_config = config
    demo.stdgen_allowed = [str(store.root), *{str(Path(p).resolve().parent) for p in example_files}]
    # A results folder the app made for itself goes when the app stops (the visitors have downloaded).
    demo.stdgen_cleanup = (lambda: shutil.rmtree(store.root, ignore_errors=True)) if owned else (lambda: None)
    return demo


def _example_files(examples) -> list[Path]:
    if examples is None:
        return []
    if isinstance(examples, (str, os.PathLike)):
        folder = Path(examples)
        if not folder.is_dir():
            raise StdgenError(f"examples: {folder} is not a folder")
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    files = [Path(p) for p in examples]
    for p in files:
        if not p.is_file():
            raise StdgenError(f"examples: {p} is not a file")
    return files


def serve(demo, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False) -> str:
    """Start ``demo`` (from :func:`build_app`) on ``host:port`` with its upload limit; returns the
    local URL once serving (``block=True``: after the server stops, e.g. on Ctrl-C)."""
    config: AppConfig = demo.stdgen_config
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                            max_file_size=config.max_upload_bytes, allowed_paths=demo.stdgen_allowed,
                            ssr_mode=False, quiet=quiet, footer_links=[], inbrowser=False, show_error=False)
    if block:
        import time

        try:
            while True:  # Ctrl-C reaches the command line (exit 130) instead of gradio's own message
                time.sleep(0.5)
        finally:
            demo.close(verbose=False)
            demo.stdgen_cleanup()
    return url

"""The web app: ``stdgen app`` (issue 16).

    from stdgen.app import build_app, serve
    demo = build_app(pipe, max_upload_mb=20, concurrency=1)   # a gradio.Blocks, not started
    serve(demo, host="127.0.0.1", port=7860)

- :mod:`stdgen.app.core`: the work without the web (no gradio import): :func:`read_upload`
  checks an upload (size, picture, pixels, transparent or blank), :func:`generate_events` runs the
  pipeline in a worker thread and yields its stages as :class:`Event` s, :class:`RunStore` keeps
  each run's files in a folder of its own (written atomically, the oldest pruned).
- :mod:`stdgen.app.ui`: the gradio page (:func:`build_app`, :func:`serve`), its handlers
  (:class:`~stdgen.app.ui.Handlers`) callable without a browser.
- :mod:`stdgen.app.cli`: ``stdgen app [--host] [--port] [--weights] [--device] [--max-upload-mb]
  [--concurrency]``.

gradio is an optional dependency (``pip install stdgen[app]``), imported only when the page is
built. This package imports ``pipeline``, ``io``, ``utils`` and ``errors`` only, and draws no
progress bars (import-linter holds it).
"""

from stdgen.app.core import AppConfig, Event, Options, Run, RunStore, generate_events, read_upload

__all__ = ["AppConfig", "Event", "Options", "Run", "RunStore", "build_app", "generate_events", "read_upload",
           "serve"]


def __getattr__(name):
    # gradio is imported only by the page (an optional dependency, and a slow import).
    if name in ("build_app", "serve"):
        from stdgen.app import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'stdgen.app' has no attribute {name!r}")

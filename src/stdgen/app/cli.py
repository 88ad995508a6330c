"""``stdgen app``: the web app on this machine (gradio; ``pip install stdgen[app]``)."""

from __future__ import annotations

import argparse
from pathlib import Path

#: The examples shipped beside the package in a source checkout (``examples/*.png``).
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app",
        help="the web app: upload a picture, watch the stages, view and download the 3D character",
        description="Serve the web app (gradio) on HOST:PORT, 127.0.0.1 by default (this machine only). Upload a "
        "picture or pick an example; the A-pose picture and six views appear as their stages finish, then the 3D "
        "character whole or part by part with its GLB files to download. Requests wait in a queue; "
        "--concurrency of them run at once. The weights are loaded before the server starts, so a missing or "
        "broken weights folder is reported here, and the first visitor does not wait for it. Ctrl-C stops.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1; 0.0.0.0 opens it to your network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--weights", metavar="DIR", default=None, help="weights folder (default: bundled)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                   help="largest picture accepted, in megabytes (default 20)")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="pictures generated at once; the others wait in the queue (default 1)")
    p.add_argument("--examples", metavar="DIR", default=None,
                   help="folder of example pictures to offer (default: the project's examples/, if present)")
    p.set_defaults(func=_app)


def _app(args: argparse.Namespace) -> int:
    import logging

    from stdgen.errors import StdgenError
    from stdgen.utils.device import check_device

    check_device(args.device)
    if not 1 <= args.port <= 65535:
        raise StdgenError(f"--port must be between 1 and 65535, got {args.port}")
    if not 0.01 <= args.max_upload_mb <= 1000:
        raise StdgenError(f"--max-upload-mb must be between 0.01 and 1000, got {args.max_upload_mb:g}")
    if not 1 <= args.concurrency <= 16:
        raise StdgenError(f"--concurrency must be between 1 and 16, got {args.concurrency}")
    examples = Path(args.examples) if args.examples else (EXAMPLES_DIR if EXAMPLES_DIR.is_dir() else None)
    if examples is not None and not examples.is_dir():
        raise StdgenError(f"--examples {args.examples}: not a folder")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise StdgenError("the web app needs gradio: pip install 'stdgen[app]'") from None

    # stdgen's own log lines (weights found, each run); gradio's and httpx's stay at warnings. Removed on the
    # way out: an in-process caller (a test) must not keep a handler bound to its closed stream.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    lib_logger = logging.getLogger("stdgen")
    level = lib_logger.level
    lib_logger.addHandler(handler)
    lib_logger.setLevel(logging.INFO)
    try:
        return _serve(args, examples)
    finally:
        lib_logger.removeHandler(handler)
        lib_logger.setLevel(level)


def _serve(args: argparse.Namespace, examples: Path | None) -> int:
    from stdgen.app.ui import build_app, serve
    from stdgen.errors import StdgenError
    from stdgen.pipeline import StdGENPipeline, save_output
    from stdgen.utils.device import resolve_device

    device = resolve_device(args.device)
    print(f"loading the weights on {device}...", flush=True)
    pipe = StdGENPipeline.from_pretrained(weights_dir=args.weights, device=device)
    demo = build_app(pipe, save_output=save_output, max_upload_mb=args.max_upload_mb,
                     concurrency=args.concurrency, examples=examples)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: serving on {args.host}: anyone who can reach this machine can use the app", flush=True)
    try:
        url = serve(demo, host=args.host, port=args.port, block=False, quiet=True)
    except OSError:
        raise StdgenError(f"--port {args.port}: cannot serve on {args.host}:{args.port} (the port is in use, or "
                          "the address is not this machine's); choose another --port or --host") from None
    print(f"stdgen app: open {url} (Ctrl-C stops)", flush=True)
    import signal
    import sys

    # A plain `kill` (SIGTERM) stops the app as Ctrl-C does, through the clean-up below.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        _wait(url)  # Ctrl-C reaches stdgen's handler: "stdgen: interrupted", exit 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        demo.close(verbose=False)
        demo.stdgen_cleanup()
    return 0


def _wait(url: str) -> None:
    """Serve until interrupted (the server runs in gradio's threads)."""
    import time

    while True:
        time.sleep(0.5)

"""``stdgen train TASK --preset P -o RUN_DIR ...`` and ``stdgen train export RUN_DIR -o WEIGHTS_DIR``.

Registration imports only the registry of names (no torch), so ``stdgen --help`` stays fast.
"""

from __future__ import annotations

import argparse

from stdgen.train.tasks import PRESETS, TASKS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (slrm, mvdiff, mvreg, canon, segment, toy) or export a run's weights",
        description="Train one of the project's networks with the shared trainer (bf16 + fused AdamW on CUDA, "
        "warm-up + cosine, EMA, time box, exact resume, DDP under torchrun), or export a run's EMA weights.",
    )
    p.set_defaults(func=None, _group_parser=p)
    tsub = p.add_subparsers(dest="train_command", metavar="TASK")
    for task in TASKS:
        t = tsub.add_parser(task, help=f"train the {task} model",
                            description=f"Train the {task} model into RUN_DIR (run.json, log.jsonl, checkpoint.pt, "
                            "export/, tb/). Under torchrun every rank trains its share of the global batch.")
        t.add_argument("--preset", required=True, choices=list(PRESETS[task]), help="preset (tiny: tests)")
        t.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="the run folder")
        t.add_argument("--minutes", type=float, default=None,
                       help="time box of this command: stop in time to write the checkpoint and the export")
        t.add_argument("--steps", type=int, default=None,
                       help="stop at this step, counted from the start of the run (default: train.max_steps)")
        t.add_argument("--resume", action="store_true", help="continue RUN_DIR from its checkpoint.pt")
        t.add_argument("--init", metavar="WEIGHTS_DIR", default=None,
                       help="start a new run from these weights (config.json + model.safetensors), fresh optimiser")
        t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a preset field: train.lr=1e-4, batch_size=8, model.FIELD=... (repeatable)")
        t.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
        t.add_argument("--quiet", action="store_true", help="no progress bar")
        t.set_defaults(func=_train, task=task)
    e = tsub.add_parser("export", help="write a run's EMA weights as a weights folder",
                        description="Write the EMA weights of RUN_DIR's checkpoint (the model's own when EMA is "
                        "off) to WEIGHTS_DIR (config.json + model.safetensors), through the task's export.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("-o", "--output", required=True, metavar="WEIGHTS_DIR", help="output folder (replaced whole)")
    e.add_argument("--dtype", default="fp16", choices=("fp32", "fp16", "int8"), help="storage dtype (default fp16)")
    e.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    import json
    import logging
    from pathlib import Path

    from tqdm import tqdm

    from stdgen.errors import StdgenError
    from stdgen.train.config import parse_overrides
    from stdgen.train.tasks import make_task
    from stdgen.train.trainer import RUN_JSON, dist_env, train

    run_dir = Path(args.output)
    overrides = parse_overrides(args.overrides)
    if args.resume:
        # The run's own task, preset and overrides; new --set values go on top of the stored ones.
        try:
            info = json.loads((run_dir / RUN_JSON).read_text())
        except (OSError, json.JSONDecodeError):
            raise StdgenError(f"--resume: no readable {RUN_JSON} in {run_dir}") from None
        if info.get("task") != args.task:
            raise StdgenError(f"--resume: {run_dir} is a {info.get('task')!r} run, not {args.task!r}")
        if info.get("preset") != args.preset:
            raise StdgenError(f"--resume: {run_dir} used preset {info.get('preset')!r}, not {args.preset!r}")
        overrides = {**info.get("overrides", {}), **overrides}
    if args.steps is not None and args.steps < 0:
        raise StdgenError(f"--steps must be >= 0, got {args.steps}")
    if args.minutes is not None and not args.minutes > 0:
        raise StdgenError(f"--minutes must be > 0, got {args.minutes}")
    if args.init is not None and not Path(args.init).is_dir():
        raise StdgenError(f"--init: {args.init}: no such weights folder")
    task = make_task(args.task, args.preset, overrides)
    rank, world, _ = dist_env()
    total = args.steps if args.steps is not None else task.preset.train.max_steps
    bar = None if args.quiet or rank != 0 else tqdm(total=total, desc=f"train {args.task}", unit="step")

    class _Handler(logging.Handler):  # log lines above the progress bar, not through it
        def emit(self, record: logging.LogRecord) -> None:
            (tqdm.write if bar is not None else print)(self.format(record))

    handler = _Handler()
    handler.setFormatter(logging.Formatter(f"[rank {rank}] %(message)s" if world > 1 else "%(message)s"))
    lib_logger = logging.getLogger("stdgen")
    lib_logger.addHandler(handler)
    lib_logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)

    def on_log(record: dict) -> None:
        if bar is not None:
            bar.n = record["step"]
            bar.set_postfix(loss=f"{record['loss']:.4g}", refresh=False)
            bar.refresh()

    try:
        summary = train(task, run_dir, minutes=args.minutes, steps=args.steps, resume=args.resume, init=args.init,
                        device=args.device, overrides=overrides, preset_name=args.preset, callback=on_log)
    finally:
        if bar is not None:
            bar.close()
        lib_logger.removeHandler(handler)
    if rank == 0:
        last = summary["last"] or {}
        loss = f", loss {last['loss']:.4g}" if last else ""
        print(f"{run_dir}: steps {summary['start_step']} -> {summary['step']} ({summary['stopped']}) in "
              f"{summary['seconds']:.1f} s{loss}; export in {summary['export']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from stdgen.train.trainer import export_run

    out = export_run(args.run_dir, args.output, dtype=args.dtype)
    print(f"wrote {out} ({args.dtype})")
    return 0

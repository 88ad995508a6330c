"""The registry of training tasks and their presets, as import strings (importing this module imports no
torch, so ``stdgen --help`` stays light).

A task module ``stdgen.train.tasks.<name>`` defines one :class:`~stdgen.train.Task` subclass whose ``name``
is the task's name (or names it ``TASK = MyTask``) and one factory function per preset returning the
preset dataclass: ``tiny()`` (tests: a few CPU steps), ``small()`` (what we train on one GPU), ``paper()``
(the paper's sizes).
"""

from __future__ import annotations

import importlib
from typing import Any

from stdgen.errors import StdgenError

#: task name -> module.
TASKS: dict[str, str] = {
    "slrm": "stdgen.train.tasks.slrm",
    "mvdiff": "stdgen.train.tasks.mvdiff",
    "mvreg": "stdgen.train.tasks.mvreg",
    "canon": "stdgen.train.tasks.canon",
    "segment": "stdgen.train.tasks.segment",
    "toy": "stdgen.train.tasks.toy",
}

#: task name -> {preset name: "module:factory"}.
PRESETS: dict[str, dict[str, str]] = {
    task: {p: f"{module}:{p}" for p in ("tiny", "small", "paper")} for task, module in TASKS.items()
}


def _import(task: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
            raise StdgenError(f"task {task!r} is registered but its module {module} is not in this tree yet") from None
        raise


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise StdgenError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")


def get_preset(task: str, preset: str) -> Any:
    """The preset dataclass ``preset`` of ``task`` (a fresh object from its factory)."""
    _check_task(task)
    if preset not in PRESETS[task]:
        raise StdgenError(f"unknown preset {preset!r} for task {task!r}; known presets: "
                          f"{', '.join(PRESETS[task])}")
    module, _, factory = PRESETS[task][preset].partition(":")
    mod = _import(task, module)
    fn = getattr(mod, factory, None)
    if fn is None:
        raise StdgenError(f"task {task!r}: module {module} has no preset factory {factory}()")
    return fn()


def get_task_class(task: str) -> type:
    """The Task subclass of ``task``: ``module.TASK`` if set, else the one Task subclass defined in the module
    whose ``name`` is ``task``."""
    from stdgen.train.task import Task

    _check_task(task)
    mod = _import(task, TASKS[task])
    cls = getattr(mod, "TASK", None)
    if cls is None:
        found = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, Task) and v is not Task
                 and v.__module__ == mod.__name__ and v.name == task]
        if len(found) != 1:
            raise StdgenError(f"task {task!r}: module {mod.__name__} must define one Task subclass with "
                              f"name = {task!r} (or TASK = ...), found {len(found)}")
        cls = found[0]
    return cls


def make_task(task: str, preset: str, overrides: list[str] | dict[str, str] | None = None) -> Any:
    """``Task(preset)`` for ``task`` with ``--set`` overrides applied to the preset."""
    from stdgen.train.config import apply_overrides

    p = apply_overrides(get_preset(task, preset), overrides)
    return get_task_class(task)(p)

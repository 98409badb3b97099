"""The paper's downstream tasks as plug-ins: data loaders, the official prompt formats, output
parsers and metrics equal to the official evaluators (see docs/TASK_FORMATS.md).

One registry: `get_task(name)` returns a fresh `Task` (bc5cdr, kd-dti / kd_dti, ddi, pubmedqa,
hoc, ner); `TASKS` lists the canonical names.
"""

from __future__ import annotations

from .base import Decoding, Example, Prediction, Recipe, Task, TaskDataError
from .bc5cdr import BC5CDRTask
from .custom import CustomRelationTask
from .ddi import DDITask
from .hoc import HoCTask
from .kd_dti import KDDTITask
from .ner import NERTask
from .pubmedqa import PubMedQATask

_PAPER_TASKS: tuple[type[Task], ...] = (BC5CDRTask, KDDTITask, DDITask, PubMedQATask, HoCTask, NERTask)
TASKS: tuple[str, ...] = tuple(cls.name for cls in _PAPER_TASKS)
# custom (a user's relation schema) is looked up like the others but is not one of the paper's TASKS
_REGISTRY: dict[str, type[Task]] = {cls.name: cls for cls in (*_PAPER_TASKS, CustomRelationTask)}
_ALIASES: dict[str, str] = {alias: cls.name for cls in _REGISTRY.values() for alias in (cls.name, *cls.aliases)}


def get_task(name: str) -> Task:
    """A new task object by name or alias (case, '-' and '_' do not matter)."""
    wanted = name.strip().lower()
    canonical = _ALIASES.get(wanted) or _ALIASES.get(wanted.replace("_", "-"))
    if canonical is None:
        raise TaskDataError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return _REGISTRY[canonical]()


__all__ = ["TASKS", "Decoding", "Example", "Prediction", "Recipe", "Task", "TaskDataError", "get_task"]

"""The task kinds a model, a dataset and a predictions file can have: one list, one check."""

from __future__ import annotations

from medaudit.errors import MedauditError

# binary/multiclass/ordinal: one label per sample (softmax); multilabel: K independent 0/1 labels (sigmoid).
TASKS = ("binary", "multiclass", "multilabel", "ordinal")


def check_task(task: str, where: str, *, param: str | None = None) -> str:
    """Return ``task`` if it is one of :data:`TASKS`, else raise naming ``where`` (a file or a value).

    ``param``: the parameter that gave the task, for the CLI to name its option.
    """
    if task not in TASKS:
        raise MedauditError(f"{where}: unknown task {task!r} (expected one of {', '.join(TASKS)})", param=param)
    return task

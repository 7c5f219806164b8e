"""Helpers shared by the CLI commands: error translation and progress settings."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import click

from medaudit.errors import MedauditError, MedauditWarning


class UserError(click.ClickException):
    """A MedauditError shown as one line on stderr, exit code 2 (bad input)."""

    exit_code = 2


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn MedauditError into a one-line ``Error: ...`` and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            # Our own warnings are for users: one plain line, no source location.
            if issubclass(category, MedauditWarning):
                click.echo(f"Warning: {message}", err=True)
            else:
                original(message, category, filename, lineno, file, line)

        try:
            with warnings.catch_warnings(), sigterm_as_interrupt():
                warnings.showwarning = show
                warnings.simplefilter("always", MedauditWarning)
                return fn(*args, **kwargs)
        except MedauditError as exc:
            raise UserError(cli_message(exc)) from None

    return wrapper


def cli_message(exc: MedauditError) -> str:
    """The error's message, prefixed by the option that sets ``exc.param`` in the running command."""
    message = str(exc)
    if not exc.param:
        return message
    ctx = click.get_current_context(silent=True)
    params = ctx.command.params if ctx is not None else []
    flags = [p.opts[0] for p in params if p.name == exc.param and isinstance(p, click.Option)]
    label = flags[0] if flags else exc.param
    return message if message.startswith(label) else f"{label}: {message}"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Stop on SIGTERM the way Ctrl-C stops, while a command runs.

    Job schedulers (SLURM, Kubernetes, ``docker stop``) and cancelled CI jobs send SIGTERM. Turned
    into KeyboardInterrupt, it runs the same clean-up: training says where its resumable state is,
    and atomic writes and report folders remove their temporary files. The previous handler is
    restored afterwards; outside the main thread (where handlers cannot be set) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def progress_disabled() -> bool:
    """Progress bars are quiet in CI (``CI=true``) and when MEDAUDIT_QUIET is set."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or bool(os.environ.get("MEDAUDIT_QUIET"))

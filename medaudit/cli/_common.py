"""Helpers shared by the CLI commands: how errors and warnings reach the user, signals, progress settings."""

from __future__ import annotations

import contextlib
import functools
import os
import re
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
    """Run a command with medaudit's two channels to the user, both on stderr.

    ``MedauditError`` becomes a one-line ``Error: ...`` and exit code 2 (no traceback);
    every ``MedauditWarning`` raised while the command runs, by the library or the command,
    becomes a ``Warning: ...`` line, shown each time and also under ``--quiet``.
    """

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
    """The error's message with the option that sets ``exc.param`` in the running command.

    A library message that opens with the parameter's name (``"batch_size 500 is larger ..."``)
    gets the option in its place (``"--batch-size 500 is larger ..."``); any other is prefixed
    (``"--names: ..."``); without such an option, by the parameter's name.

    Parameters
    ----------
    exc : MedauditError

    Returns
    -------
    str
    """
    message = str(exc)
    if not exc.param:
        return message
    ctx = click.get_current_context(silent=True)
    params = ctx.command.params if ctx is not None else []
    options = [p for p in params if isinstance(p, click.Option)]
    # An exact name first; else a prefixed one (explain's `layer` is report's `cam_layer`).
    flags = [p.opts[0] for p in options if p.name == exc.param] or [
        p.opts[0] for p in options if (p.name or "").endswith(f"_{exc.param}")]
    label = flags[0] if flags else exc.param
    if message.startswith(label):
        return message
    if re.match(rf"{re.escape(exc.param)}\b", message):
        return label + message[len(exc.param):]
    return f"{label}: {message}"


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

"""Helpers shared by the CLI commands: error translation and progress settings."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
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
            with warnings.catch_warnings():
                warnings.showwarning = show
                warnings.simplefilter("always", MedauditWarning)
                return fn(*args, **kwargs)
        except MedauditError as exc:
            raise UserError(str(exc)) from None

    return wrapper


def progress_disabled() -> bool:
    """Progress bars are quiet in CI (``CI=true``) and when MEDAUDIT_QUIET is set."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or bool(os.environ.get("MEDAUDIT_QUIET"))

"""The CLI's two channels to the user: errors name the option at fault, MedauditWarnings are ``Warning:`` lines."""

from __future__ import annotations

import warnings

import click
import pytest
from click.testing import CliRunner

from medaudit.cli._common import handle_errors
from medaudit.errors import MedauditError, MedauditWarning


def _command(message: str, param: str | None, warn: str | None = None) -> click.Command:
    @click.command()
    @click.option("--batch-size", "batch_size", type=int)
    @click.option("-o", "--out", "out")
    @click.option("--names")
    @click.option("--cam-layer", "cam_layer")
    @handle_errors
    def cmd(batch_size, out, names, cam_layer):
        if warn:
            warnings.warn(warn, MedauditWarning, stacklevel=1)
        raise MedauditError(message, param=param)

    return cmd


@pytest.mark.parametrize(
    ("message", "param", "shown"),
    [
        # A message that opens with the parameter's name shows the option in its place ...
        ("batch_size 500 is larger than the split", "batch_size", "Error: --batch-size 500 is larger than the split"),
        ("out /x/m.pt: is a folder", "out", "Error: -o /x/m.pt: is a folder"),
        # ... any other message gets the option as a prefix ...
        ("2 names given for 3 models", "names", "Error: --names: 2 names given for 3 models"),
        ("batch_sizes differ", "batch_size", "Error: --batch-size: batch_sizes differ"),  # a whole word only
        ("--names: already spelled", "names", "Error: --names: already spelled"),
        # A library parameter the command prefixes (explain's `layer` is report's `cam_layer`).
        ("layer 'x' is not a layer", "layer", "Error: --cam-layer 'x' is not a layer"),
        # ... and a parameter without an option in this command keeps the library's wording.
        ("lr must be a positive number (got 0)", "lr", "Error: lr must be a positive number (got 0)"),
        ("plain message", None, "Error: plain message"),
    ],
)
def test_error_names_the_option(message, param, shown):
    r = CliRunner().invoke(_command(message, param))
    assert r.exit_code == 2 and r.stderr.strip() == shown and "Traceback" not in r.output


def test_warnings_are_one_line_on_stderr():
    r = CliRunner().invoke(_command("stop", None, warn="no 'val' split in the data"))
    assert r.stderr.splitlines() == ["Warning: no 'val' split in the data", "Error: stop"]
    assert r.stdout == ""

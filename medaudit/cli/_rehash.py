"""The ``--rehash`` option of the commands that scan image content (``report``, ``data inspect``)."""

from __future__ import annotations

import click


def _apply(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:  # imported only when asked: ``--help`` must not load numpy
        from medaudit.data.hashcache import rehash

        ctx.with_resource(rehash())


rehash_option = click.option(
    "--rehash", is_flag=True, expose_value=False, callback=_apply,
    help="Distrust the image hash cache: decode every image again and rewrite it (see docs/data-cache.md).")

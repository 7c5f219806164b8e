"""`medaudit bench`: parameters, FLOPs, latency, throughput and memory of models."""

from __future__ import annotations

import json
from pathlib import Path

import click

from medaudit.cli._common import handle_errors, progress_disabled
from medaudit.errors import MedauditError
from medaudit.fileio import atomic_path, check_output_file


def _parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise MedauditError(f"--batch-sizes must be comma-separated integers like 1,32 (got '{text}')") from None
    if not sizes or min(sizes) < 1:
        raise MedauditError(f"--batch-sizes must be positive integers like 1,32 (got '{text}')")
    return sizes


@click.command()
@click.argument("checkpoints", nargs=-1, type=click.Path(path_type=Path))
@click.option("--models", "model_paths", multiple=True, type=click.Path(path_type=Path),
              help="medaudit checkpoint(s); `--models A.pt B.pt` works (the extra ones are read as arguments).")
@click.option("--arch", "archs", multiple=True,
              help="Also bench a randomly initialised architecture (timm name or tv:NAME); repeatable.")
@click.option("--img-size", default=224, show_default=True, type=click.IntRange(8, 4096), help="Input size for --arch models.")
@click.option("--in-chans", default=3, show_default=True, type=click.Choice(["1", "3"]), help="Input channels for --arch models.")
@click.option("--num-classes", default=2, show_default=True, type=click.IntRange(1, 100000), help="Head width for --arch models.")
@click.option("--batch-sizes", default="1,32", show_default=True, help="Comma-separated batch sizes; batch 1 is always timed.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.")
@click.option("--repeats", default=30, show_default=True, type=click.IntRange(1, 100000), help="Timed runs per model and batch size.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0, 100000), help="Untimed runs first.")
@click.option("--threads", default=None, type=click.IntRange(1, 1024), help="torch.set_num_threads for the run (default: as is).")
@click.option("--channels-last/--contiguous", default=True, show_default=True, help="Memory layout of CNNs (transformers are unaffected). channels-last is how predict and report run CNNs on CPU and CUDA.")
@click.option("--amp", type=click.Choice(["none", "fp16", "bf16"]), default="none", show_default=True, help="Autocast dtype.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write the full result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def bench(checkpoints, model_paths, archs, img_size, in_chans, num_classes, batch_sizes, device, repeats, warmup,
          threads, channels_last, amp, json_path, quiet):
    """Measure parameters, FLOPs, latency, throughput and peak memory of models.

    \b
    Example:
      medaudit bench --models checkpoints/r18.pt checkpoints/vit.pt --batch-sizes 1,32 --json bench.json
      medaudit bench --arch resnet18 --arch vit_tiny_patch16_224 --img-size 224 --device cpu
    Models are timed interleaved in rotating order (A B, B A, ...) after a warm-up; the table shows the
    batch-1 median latency with its IQR and the paired time ratios between models.
    """
    from medaudit.bench import benchmark_models, format_table
    from medaudit.models.checkpoint import load_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.naming import model_names, unique_names

    sizes = _parse_batch_sizes(batch_sizes)
    paths = [*model_paths, *checkpoints]
    if not paths and not archs:
        raise MedauditError("give checkpoints with --models A.pt B.pt, or architectures with --arch NAME")
    if json_path is not None:  # before the timing, which is most of the time
        check_output_file(json_path, inputs=tuple(paths), param="json_path")
    models, shapes = [], []
    for path in paths:
        loaded = load_checkpoint(path)
        models.append(loaded.model)
        shapes.append((loaded.recipe.in_chans, loaded.recipe.img_size, loaded.recipe.img_size))
    for arch in archs:
        models.append(create_model(arch, num_classes, in_chans=int(in_chans), img_size=img_size))
        shapes.append((int(in_chans), img_size, img_size))
    # Checkpoints are named as in every command; an architecture by its name, #2... when repeated.
    names = unique_names([*model_names(paths), *archs])
    result = benchmark_models(
        list(zip(names, models, shapes, strict=True)), device=device, batch_sizes=sizes, repeats=repeats,
        warmup=warmup, checkpoint_paths=[*paths, *[None] * len(archs)], channels_last=channels_last, amp=None if amp == "none" else amp, threads=threads,
        progress=not (quiet or progress_disabled()),
    )
    click.echo(format_table(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        click.echo(f"json → {json_path}")

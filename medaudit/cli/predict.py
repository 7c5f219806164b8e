"""`medaudit predict`: one forward pass per (checkpoint, data, split), cached."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors, progress_disabled


@click.command()
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path), help="medaudit checkpoint (.pt or .safetensors + .json).")
@click.option("--data", "data_spec", required=True, help="Data spec: image folder, .npz, medmnist:NAME[@SIZE] or CSV manifest.")
@click.option("--split", default="test", show_default=True, help="Which split to run.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Predictions file (.npz). Default: <checkpoint stem>.<split>.npz beside the checkpoint.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Also export one row per sample as CSV.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 65536))
@click.option("--no-cache", is_flag=True, help="Run inference even if cached predictions exist.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision (bf16, else fp16) on CUDA; CPU always runs fp32. Cached separately.")
@click.option("--classes", default=None, help="Comma-separated class names for data whose labels are integers.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def predict(model_path, data_spec, split, output, csv_path, device, batch_size, no_cache, amp, classes, quiet):
    """Run a checkpoint over a data split and save its predictions.

    \b
    Example:
      medaudit predict --model checkpoints/r18.pt --data data/brain_mri --split test --csv r18.csv
    The .npz holds sample_ids, y_true, probs and a JSON header (see docs/predictions-format.md).
    Under torchrun every rank runs a shard of the split and rank 0 writes the file (README: Scaling out).
    """
    from medaudit.distributed import lead

    lead(_predict, model_path, data_spec, split, output, csv_path, device, batch_size, no_cache, amp, classes, quiet,
         device=device)


def _predict(model_path, data_spec, split, output, csv_path, device, batch_size, no_cache, amp, classes, quiet):
    """The command on rank 0 (the only process that reads the data and writes)."""
    from medaudit.data import load_dataset
    from medaudit.errors import MedauditError
    from medaudit.fileio import check_output_file
    from medaudit.models.checkpoint import load_checkpoint
    from medaudit.predict import check_classes_match, predict_cached

    # Destinations first: a path that cannot be written fails before the forward pass, and no
    # output may overwrite the checkpoint or the data it came from.
    out = output or model_path.with_name(f"{model_path.stem}.{split}.npz")
    inputs = (model_path, Path(data_spec))
    check_output_file(out, inputs=inputs, param="output")
    if csv_path:
        check_output_file(csv_path, inputs=inputs, param="csv_path")
        if Path(csv_path).absolute() == Path(out).absolute():
            raise MedauditError(f"{csv_path}: is also the predictions file; give --csv another name", param="csv_path")
    loaded = load_checkpoint(model_path, lazy=True)  # a cached pass needs no model
    ds = load_dataset(data_spec, classes=classes.split(",") if classes else None)
    check_classes_match(loaded, ds.class_names)
    preds, cached = predict_cached(
        loaded, ds.split(split), split_name=split, dataset_spec=data_spec, use_cache=not no_cache,
        device=device, batch_size=batch_size, amp=amp, progress=not (quiet or progress_disabled()),
        patient_column=ds.patient_column,
    )
    preds.save(out)
    click.echo(f"{'cached' if cached else 'ran'}: {preds.n_samples} samples of split '{split}' → {out}")
    if csv_path:
        preds.to_csv(csv_path)
        click.echo(f"csv → {csv_path}")

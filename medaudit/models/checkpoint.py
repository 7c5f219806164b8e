"""The medaudit checkpoint: a plain dict of tensors and primitives.

It loads with ``torch.load(weights_only=True)`` only, so a checkpoint can never run code.
Keys (format_version 1):

``format``             "medaudit.models.checkpoint"
``format_version``     1
``arch``               factory name (timm name or ``tv:`` torchvision name)
``num_classes``        head width; equals ``len(class_names)``
``class_names``        list of str
``task``               "binary" | "multiclass" | "multilabel" | "ordinal"
``recipe``             preprocessing (:class:`medaudit.models.preprocess.Recipe` as a dict)
``small_stem``         bool, ResNet "(28)" stem
``training``           dict of the training configuration, or None (converted weights)
``history``            list of per-epoch dicts, or None
``selected_on``        "val" | "test" | "unknown": which split chose this checkpoint
``dataset_fingerprint`` str or None
``medaudit_version``   str
``state_dict``         the model's tensors

A ``.safetensors`` file is accepted with a JSON sidecar (same keys minus state_dict) at
``<name>.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medaudit.errors import MedauditError
from medaudit.fileio import atomic_path
from medaudit.models.preprocess import Recipe
from medaudit.tasks import TASKS

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

FORMAT = "medaudit.models.checkpoint"
FORMAT_VERSION = 1


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_torch_load(path: str | Path, map_location: str = "cpu") -> Any:
    """``torch.load(weights_only=True)``; a file that needs arbitrary globals is refused."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise MedauditError(
            f"{path}: refused to load: the file needs arbitrary Python objects to unpickle, which could run code "
            f"({str(exc).splitlines()[0][:160]}). Re-save only the state_dict (torch.save(model.state_dict(), ...)) "
            "and wrap it with `medaudit convert`"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise MedauditError(f"{path}: not a readable PyTorch file ({str(exc).splitlines()[0][:160]})") from None


def read_safetensors(path: str | Path) -> dict:
    """Tensors of a ``.safetensors`` file; a corrupt file is a one-line error, not a traceback."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MedauditError(f"{path}: not a readable .safetensors file ({exc})") from None


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """Write with a temp file + ``os.replace`` so a crash never leaves a half checkpoint."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise MedauditError(f"output folder is not writable: {path.parent}")
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def build_checkpoint(
    model: nn.Module,
    *,
    arch: str,
    class_names: list[str],
    task: str,
    recipe: Recipe,
    small_stem: bool,
    training: dict | None = None,
    history: list[dict] | None = None,
    selected_on: str = "unknown",
    dataset_fingerprint: str | None = None,
    extra: dict | None = None,
) -> dict:
    """The checkpoint dict (see module docstring). ``extra`` adds resumable state (tensors/primitives)."""
    from medaudit import __version__

    if task not in TASKS:
        raise MedauditError(f"unknown task '{task}' (expected one of {', '.join(TASKS)})")
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "task": task,
        "recipe": recipe.to_dict(),
        "small_stem": bool(small_stem),
        "training": training,
        "history": history,
        "selected_on": selected_on,
        "dataset_fingerprint": dataset_fingerprint,
        "medaudit_version": __version__,
        # contiguous: the file (and its sha256, which keys the predictions cache) does not depend
        # on the memory layout the model was trained in
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    if extra:
        ckpt.update(extra)
    return ckpt


def save_checkpoint(path: str | Path, model: nn.Module, **meta: Any) -> Path:
    """Build (see :func:`build_checkpoint`) and write atomically."""
    return atomic_torch_save(build_checkpoint(model, **meta), path)


@dataclass
class Loaded:
    """A model rebuilt from a checkpoint, in eval mode, with its config."""

    model: nn.Module
    arch: str
    class_names: list[str]
    task: str
    recipe: Recipe
    meta: dict
    sha256: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


def _read_meta_and_state(path: Path) -> tuple[dict, dict]:
    if path.suffix == ".safetensors":
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise MedauditError(f"{path}: a .safetensors checkpoint needs its JSON sidecar {sidecar.name}")
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise MedauditError(f"{sidecar}: invalid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise MedauditError(f"{sidecar}: expected a JSON object with arch, class_names, task and recipe")
        return meta, read_safetensors(path)
    obj = safe_torch_load(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise MedauditError(
            f"{path}: not a medaudit checkpoint (a bare state_dict?). Wrap it with "
            "`medaudit convert WEIGHTS --arch ARCH --classes a,b,c -o model.pt`"
        )
    if obj.get("format_version") != FORMAT_VERSION:
        raise MedauditError(f"{path}: checkpoint format_version {obj.get('format_version')} is not supported")
    state = obj.pop("state_dict")
    return obj, state


def load_checkpoint(path: str | Path, *, map_location: str = "cpu") -> Loaded:
    """Load a medaudit checkpoint and rebuild its model (eval mode).

    Refuses pickles needing arbitrary globals, a head whose width differs from the class
    names, unknown architectures and state_dicts that do not match the architecture.
    """
    from medaudit.models.factory import create_model

    path = Path(path)
    if not path.is_file():
        raise MedauditError(f"checkpoint not found: {path}")
    meta, state = _read_meta_and_state(path)
    try:
        arch, class_names, task = str(meta["arch"]), [str(c) for c in meta["class_names"]], meta["task"]
        recipe = Recipe.from_dict(meta["recipe"])
    except KeyError as exc:
        raise MedauditError(f"{path}: checkpoint lacks the key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MedauditError(f"{path}: malformed checkpoint metadata ({exc})") from None
    if meta.get("num_classes", len(class_names)) != len(class_names):
        raise MedauditError(f"{path}: num_classes {meta['num_classes']} ≠ {len(class_names)} class names")
    model = create_model(
        arch,
        len(class_names),
        in_chans=recipe.in_chans,
        img_size=recipe.img_size,
        small_stem=meta.get("small_stem"),
    )
    load_state_strict(model, state, source=path, n_classes=len(class_names))
    model.eval()
    return Loaded(model, arch, class_names, task, recipe, meta, file_sha256(path), path)


def load_state_strict(model: nn.Module, state: dict, *, source: Path | str, n_classes: int) -> None:
    """Load with a strict key and shape check, with messages that say what is off."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise MedauditError(
            f"{source}: weights do not match the architecture: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}); check --arch (timm vs tv: layout)"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            if v.ndim >= 1 and own[k].ndim >= 1 and own[k].shape[1:] == v.shape[1:] and own[k].shape[0] == n_classes:
                raise MedauditError(
                    f"{source}: the classifier head has {v.shape[0]} outputs but {n_classes} class names were given"
                )
            raise MedauditError(f"{source}: tensor '{k}' has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=True)


def convert_weights(
    weights: str | Path,
    out: str | Path,
    *,
    arch: str,
    class_names: list[str],
    task: str | None = None,
    recipe: Recipe,
    small_stem: bool | None = None,
) -> Path:
    """Wrap a bare state_dict (torchvision/timm layout, ``module.`` stripped) into a checkpoint."""
    from medaudit.models.factory import SMALL_INPUT_MAX, create_model, read_state_dict

    if len(class_names) < 2 and task != "multilabel":
        raise MedauditError("--classes needs at least two class names")
    if len(set(class_names)) != len(class_names):
        raise MedauditError("--classes has duplicate names")
    task = task or ("binary" if len(class_names) == 2 else "multiclass")
    if small_stem is None:
        small_stem = recipe.img_size <= SMALL_INPUT_MAX
    state = read_state_dict(weights)
    model = create_model(arch, len(class_names), in_chans=recipe.in_chans, img_size=recipe.img_size,
                         small_stem=small_stem)
    load_state_strict(model, state, source=weights, n_classes=len(class_names))
    return save_checkpoint(
        out,
        model,
        arch=arch,
        class_names=class_names,
        task=task,
        recipe=recipe,
        small_stem=small_stem,
        training={"source": "converted", "weights_file": Path(weights).name, "weights_sha256": file_sha256(weights)},
        selected_on="unknown",
    )

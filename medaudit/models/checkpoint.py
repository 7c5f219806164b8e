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

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medaudit import __version__
from medaudit.errors import MedauditError
from medaudit.fileio import atomic_path, check_destination
from medaudit.models.factory import SMALL_INPUT_MAX, create_model
from medaudit.models.preprocess import Recipe
from medaudit.models.weights import file_sha256, load_state_strict, read_safetensors, read_state_dict, safe_torch_load
from medaudit.tasks import check_task

FORMAT = "medaudit.models.checkpoint"
FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """Write with a temp file + ``os.replace`` so a crash never leaves a half checkpoint."""
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
    """The checkpoint dict of ``model`` and its config (keys in the module docstring).

    Parameters
    ----------
    model : nn.Module
        Its ``state_dict`` is copied to the CPU in contiguous layout; the model is not changed.
    arch : str
        Factory name (timm name or ``tv:`` torchvision name) that rebuilds the model.
    class_names : list of str, length C
        In the order of the model's outputs; ``num_classes`` is ``len(class_names)``.
    task : {"binary", "multiclass", "multilabel", "ordinal"}
    recipe : Recipe
        The preprocessing every later pass uses.
    small_stem : bool
        Whether the model was built with the ResNet "(28)" stem.
    training : dict, optional
        JSON-like training configuration (None for converted weights).
    history : list of dict, optional
        Per-epoch training records.
    selected_on : {"val", "test", "unknown"}
        Which split chose this checkpoint.
    dataset_fingerprint : str, optional
    extra : dict, optional
        Further top-level entries (tensors/primitives), e.g. resumable training state.

    Returns
    -------
    dict
        Tensors and primitives only, so it loads with ``torch.load(weights_only=True)``.
    """
    check_task(task, f"checkpoint of '{arch}'")
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
    """Build the checkpoint of ``model`` and write it atomically (a crash never leaves half a file).

    Parameters
    ----------
    path : path
        Output ``.pt`` file; its folder is created.
    model : nn.Module
    **meta
        The keyword arguments of :func:`build_checkpoint` (``arch``, ``class_names``, ``task``,
        ``recipe``, ``small_stem``, ...).

    Returns
    -------
    Path
        ``path``.
    """
    return atomic_torch_save(build_checkpoint(model, **meta), path)


@dataclass
class Loaded:
    """A checkpoint's config and its model, rebuilt in eval mode (on first use of :attr:`model`
    when loaded with ``lazy=True``)."""

    arch: str
    class_names: list[str]
    task: str
    recipe: Recipe
    meta: dict
    sha256: str
    path: Path
    _model: nn.Module | None = field(default=None, repr=False)
    _build: Callable[[], nn.Module] | None = field(default=None, repr=False)

    @property
    def model(self) -> nn.Module:
        """The model; built now if it was not yet (a mismatched state_dict raises MedauditError here)."""
        if self._model is None:
            self._model, self._build = self._build(), None  # the closure held the state_dict: let it go
        return self._model

    @property
    def name(self) -> str:
        return self.path.stem


def _read_meta_and_state(path: Path, map_location: str) -> tuple[dict, dict]:
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
    obj = safe_torch_load(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise MedauditError(
            f"{path}: not a medaudit checkpoint (a bare state_dict?). Wrap it into one with `medaudit convert` "
            "(medaudit.models.checkpoint.convert_weights), giving its architecture and class names"
        )
    if obj.get("format_version") != FORMAT_VERSION:
        raise MedauditError(f"{path}: checkpoint format_version {obj.get('format_version')} is not supported")
    state = obj.pop("state_dict")
    return obj, state


def load_checkpoint(path: str | Path, *, map_location: str = "cpu", lazy: bool = False) -> Loaded:
    """Load a medaudit checkpoint and rebuild its model (eval mode).

    Refuses pickles needing arbitrary globals, a head whose width differs from the class
    names, unknown architectures and state_dicts that do not match the architecture.

    Parameters
    ----------
    path : path
        A ``.pt`` checkpoint, or a ``.safetensors`` file with its ``.json`` sidecar.
    map_location : str
        Device the tensors are read onto; the model itself is built on the CPU.
    lazy : bool
        Read and check the file and its metadata now, build the model (importing timm, ~2 s) on
        the first use of ``Loaded.model``, so the last three refusals above come from there. For
        commands whose predictions may all be cached (``report``, ``predict``): a cached pass
        was made by a model built from these very bytes.

    Returns
    -------
    Loaded
        The model (eval mode), its arch, class names, task, recipe, the remaining metadata,
        and the file's sha256 (which keys the predictions cache).
    """
    path = Path(path)
    if not path.is_file():
        raise MedauditError(f"checkpoint not found: {path}")
    meta, state = _read_meta_and_state(path, map_location)
    # The recipe is the file's, not the caller's: a bad value names the file (the sidecar for
    # .safetensors) and the field, never a command-line option.
    meta_file = path.with_suffix(".json") if path.suffix == ".safetensors" else path
    try:
        arch, class_names, task = str(meta["arch"]), [str(c) for c in meta["class_names"]], meta["task"]
        recipe_dict = meta["recipe"]
    except KeyError as exc:
        raise MedauditError(f"{path}: checkpoint lacks the key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MedauditError(f"{path}: malformed checkpoint metadata ({exc})") from None
    recipe = Recipe.from_dict(recipe_dict, source=meta_file)
    check_task(task, str(path))
    if meta.get("num_classes", len(class_names)) != len(class_names):
        raise MedauditError(f"{path}: num_classes {meta['num_classes']} ≠ {len(class_names)} class names")

    def build() -> nn.Module:
        model = create_model(arch, len(class_names), in_chans=recipe.in_chans, img_size=recipe.img_size,
                             small_stem=meta.get("small_stem"))
        load_state_strict(model, state, source=path, n_classes=len(class_names))
        return model.eval()

    loaded = Loaded(arch, class_names, task, recipe, meta, file_sha256(path), path, _build=build)
    if not lazy:
        loaded.model  # noqa: B018  (built now: every refusal comes from load_checkpoint)
    return loaded


def _check_convert_output(weights: str | Path, out: str | Path) -> Path:
    """``out`` as a new checkpoint path for :func:`convert_weights`, or a one-line error before any work."""
    if Path(out).suffix == ".safetensors":
        raise MedauditError(f"out {out}: a converted checkpoint is a PyTorch file; give it a .pt name", param="out")
    dest = check_destination(out, kind="file", param="out")
    try:
        same = dest.exists() and Path(weights).exists() and os.path.samefile(dest, weights)
    except OSError:
        same = False
    if same:
        raise MedauditError(f"out {out}: is the weights file {weights} itself (or a link to it); writing the checkpoint "
                            "there would destroy the weights, choose another output path", param="out")
    return Path(out)


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
    """Wrap a bare state_dict (torchvision/timm layout, ``module.`` stripped) into a checkpoint.

    Parameters
    ----------
    weights : path
        The state_dict file (``.pt``/``.pth``/``.safetensors``); its keys must match ``arch`` strictly.
    out : path
        The checkpoint to write.
    arch : str
        Factory name of the architecture the weights belong to.
    class_names : list of str, length C
        In the order of the model's outputs (at least two, except for multilabel).
    task : {"binary", "multiclass", "multilabel", "ordinal"}, optional
        Default: binary for two classes, else multiclass.
    recipe : Recipe
        How the weights were trained to see images (recorded, used by every later pass). For
        weights trained with torchvision transforms on PIL images, give ``resize_backend="pil"``
        (``medaudit convert`` does by default) so the audit sees the notebook's exact input.
    small_stem : bool, optional
        ResNet "(28)" stem; default: on when ``recipe.img_size <= 64``.

    Returns
    -------
    Path
        ``out``; ``training`` records the source file's name and sha256.

    Raises
    ------
    MedauditError
        Before any work when ``out`` cannot be written (a file in the way, a read-only or virtual
        folder), is ``weights`` itself (the same path, a symlink or a hard link to it) or ends in
        ``.safetensors`` (``param="out"``); when the class names or the weights do not fit.
    """
    out = _check_convert_output(weights, out)
    if len(class_names) < 2 and task != "multilabel":
        raise MedauditError(f"at least two class names are needed (got {len(class_names)})", param="class_names")
    if len(set(class_names)) != len(class_names):
        dup = sorted({c for c in class_names if class_names.count(c) > 1})
        raise MedauditError(f"class names must be distinct ({', '.join(dup)} repeated)", param="class_names")
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

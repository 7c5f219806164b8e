"""Weights on disk and into a model: safe reading, digests, strict and backbone-only loading.

Below both :mod:`medaudit.models.factory` (``create_model(weights=...)``) and
:mod:`medaudit.models.checkpoint` (loading and converting checkpoints), so neither needs the
other to read a file. Nothing here unpickles arbitrary objects: PyTorch files load with
``torch.load(weights_only=True)``, ``.safetensors`` through safetensors.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from medaudit.errors import MedauditError

# Keys under which training scripts commonly nest the state_dict of a saved dict.
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    # Some loaders raise with an empty message (EOFError on an empty file): name the type then.
    lines = str(exc).splitlines()
    return (lines[0] if lines else type(exc).__name__)[:160]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# torch names the refused global as "Unsupported global: GLOBAL argparse.Namespace was not ..." or
# "unsupported GLOBAL os.system whose module os is blocked".
_GLOBAL = re.compile(r"\bGLOBAL ([A-Za-z_][\w.]*)")
_REASON = re.compile(r"WeightsUnpickler error:(.*?)(?:Check the documentation|$)", re.S)


def _refusal_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused, as one complete clause.

    torch's message is a paragraph (ANSI bold, two numbered options, a link); the part that
    matters is the global it would have had to call, or else the unpickler's own reason.
    """
    text = _ANSI.sub("", str(exc))
    found = _GLOBAL.search(text)
    if found:
        return (f"unpickling it needs the Python global {found.group(1)}, and loading arbitrary globals "
                "from a file could run code")
    generic = "the file holds more than tensors and plain containers, and unpickling arbitrary objects could run code"
    reason = _REASON.search(text)
    detail = " ".join(reason.group(1).split()).rstrip(".") if reason else ""
    if detail and len(detail) > 160:
        detail = detail.split(". ")[0]
    return f"{generic} (torch's safe unpickler stopped at: {detail})" if detail and len(detail) <= 160 else generic


def safe_torch_load(path: str | Path, map_location: str = "cpu") -> Any:
    """``torch.load(weights_only=True)``; a file that needs arbitrary globals is refused.

    Parameters
    ----------
    path : path
    map_location : str
        Device the tensors are loaded onto.

    Returns
    -------
    object
        Tensors, containers and primitives only.

    Raises
    ------
    MedauditError
        Naming ``path`` when the file would need arbitrary Python objects, or is not a PyTorch file.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise MedauditError(f"{path}: refused to load: {_refusal_reason(exc)}. Re-save only the state_dict "
                            "(torch.save(model.state_dict(), ...)) and wrap it with `medaudit convert`") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise MedauditError(f"{path}: not a readable PyTorch file ({_first_line(exc)})") from None


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file; a corrupt file is a one-line error, not a traceback."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MedauditError(f"{path}: not a readable .safetensors file ({exc})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a bare state_dict safely (``weights_only=True`` or safetensors); strip ``module.`` prefixes.

    Parameters
    ----------
    path : path
        ``.safetensors``, or a PyTorch file holding a state_dict (possibly nested under
        ``state_dict``, ``model_state_dict`` or ``model``, as training scripts save it).

    Returns
    -------
    dict of str to Tensor
        Keys without the ``module.`` prefix that DataParallel/DDP add.
    """
    path = Path(path)
    if not path.is_file():
        raise MedauditError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        state = read_safetensors(path)
    else:
        state = safe_torch_load(path)
        for key in _NESTED_STATE_KEYS:
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedauditError(f"{path}: not a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classification head (timm ``get_classifier``, else the last Linear)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Module) or not list(head.parameters()):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        return set()
    prefix = next(name for name, m in model.named_modules() if m is head)
    return {f"{prefix}.{k}" if prefix else k for k in head.state_dict()}


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load pretrained weights into ``model`` in place; only the classifier head may differ (a new class count).

    Any other mismatch (a stem of another shape, position embeddings for another image
    size) is an error: silently keeping a random layer would look like a pretrained model.

    Parameters
    ----------
    model : nn.Module
        Built for the target task; its head keeps its own (random) weights where shapes differ.
    path : path
        A state_dict file (see :func:`read_state_dict`).
    """
    state = read_state_dict(path)
    own = model.state_dict()
    head = classifier_keys(model)
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    bad = [k for k in mismatched if k not in head]
    if bad:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:3])
        raise MedauditError(
            f"{path}: weights do not fit this model outside the classifier head ({shapes}); check the image size, "
            "input channels and ResNet stem (small or standard) the weights were trained with"
        )
    for k in mismatched:
        del state[k]
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if k not in head]
    if unexpected or bad_missing:
        raise MedauditError(
            f"{path}: weights do not fit the architecture (missing {bad_missing[:5]}, unexpected {unexpected[:5]})"
        )


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], *, source: Path | str, n_classes: int) -> None:
    """Load ``state`` into ``model`` with a strict key and shape check, with messages that say what is off.

    Parameters
    ----------
    model : nn.Module
    state : dict of str to Tensor
    source : path or str
        The file the state came from, named in messages.
    n_classes : int
        The number of class names, to tell a head of the wrong width from other mismatches.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise MedauditError(
            f"{source}: weights do not match the architecture: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}); check the architecture name "
            "(timm and tv: models lay their keys out differently)"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            if v.ndim >= 1 and own[k].ndim >= 1 and own[k].shape[1:] == v.shape[1:] and own[k].shape[0] == n_classes:
                raise MedauditError(
                    f"{source}: the classifier head has {v.shape[0]} outputs but {n_classes} class names were given"
                )
            raise MedauditError(f"{source}: tensor '{k}' has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=True)

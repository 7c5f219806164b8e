"""How a model runs: its family, the channels-last rule and the one guard of a caller's model state.

Every module that runs a model it was handed (prediction, benchmarks, CAMs) enters
:func:`inference_state` (or :func:`model_state_preserved` when it sets the mode itself), so an
audit never leaves a caller's model changed: each submodule's train/eval flag, each tensor's
device and memory layout, each parameter's ``requires_grad`` and ``.grad`` come back as they were,
also when the body raises.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


def model_family(model: nn.Module) -> str:
    """``"transformer"`` for token models (ViT, DeiT, Swin...), ``"cnn"`` otherwise."""
    if hasattr(model, "patch_embed") or hasattr(model, "conv_proj") or hasattr(model, "encoder"):
        return "transformer"
    return "cnn"


def use_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether to run ``model`` in channels-last (NHWC) layout on ``device``: the rule of every pass.

    CNNs only (it does not apply to token models), on CUDA and on the CPU: oneDNN's NHWC
    kernels measured 1.08-1.64x faster inference (ResNet-18/50, EfficientNet-B0, ConvNeXt-T)
    and 1.07-1.19x faster training steps on this project's 2-core CPU, with the same outputs
    to 1e-7. Not on MPS, where NHWC support is uneven.

    Parameters
    ----------
    model : nn.Module
    device : torch.device
        The device the pass runs on.

    Returns
    -------
    bool
    """
    return model_family(model) == "cnn" and device.type in ("cuda", "cpu")


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer; the CPU for a module without tensors."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    # Only 4-D tensors have an NHWC form; a tensor that is both (e.g. 1x1 spatial) counts as contiguous.
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@dataclass
class _Placement:
    """Where one parameter or buffer of ``owner`` lived on entry."""

    owner: nn.Module
    name: str
    is_parameter: bool
    device: torch.device
    memory_format: torch.memory_format


def _placements(model: nn.Module) -> list[_Placement]:
    found = []
    for owner in model.modules():
        for name, t in owner.named_parameters(recurse=False):
            found.append(_Placement(owner, name, True, t.device, _memory_format(t)))
        for name, t in owner.named_buffers(recurse=False):
            found.append(_Placement(owner, name, False, t.device, _memory_format(t)))
    return found


def _restore_placement(place: _Placement) -> None:
    t = getattr(place.owner, place.name)
    if t is None or (t.device == place.device and _memory_format(t) == place.memory_format):
        return
    moved = t.data.to(device=place.device, memory_format=place.memory_format)
    if place.is_parameter:
        # As Module.to does: the Parameter object stays (optimizers hold it), its data moves back.
        t.data = moved
    else:
        # Module.to replaces buffer tensors; put one of the entry placement back in the same way.
        setattr(place.owner, place.name, moved)


@contextmanager
def model_state_preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Give ``model`` back as it came, whatever the block does to it (and also when it raises).

    Restored on exit: every submodule's own ``training`` flag (a fine-tuned head in train mode
    under a frozen backbone stays so), every parameter's and buffer's device and memory layout
    (contiguous or channels-last), every parameter's ``requires_grad`` and ``.grad`` (the tensor
    object itself, so a caller's accumulated gradients survive a library that zeroes them).
    Values the block wrote into parameters or buffers are kept, moved back to where they lived.

    Parameters
    ----------
    model : nn.Module

    Yields
    ------
    nn.Module
        ``model`` itself.
    """
    flags = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    placements = _placements(model)
    try:
        yield model
    finally:
        # Outside inference mode even when the caller is in it: tensors moved back are then
        # ordinary tensors the caller can still train.
        with torch.inference_mode(False):
            for m, training in flags:
                m.training = training
            for place in placements:
                _restore_placement(place)
            for p, requires_grad, grad in grads:
                p.requires_grad_(requires_grad)
                if grad is not None and grad.device != p.device:
                    grad.data = grad.data.to(p.device)  # Module.to moved it with its parameter
                p.grad = grad


@contextmanager
def inference_state(model: nn.Module, device: torch.device | None = None, *,
                    channels_last: bool = False) -> Iterator[nn.Module]:
    """``model`` in eval mode (on ``device``, channels-last if asked) inside the block; as it was after.

    The one way medaudit runs a caller's model: the changes are made in place (no copy of the
    weights) and undone by :func:`model_state_preserved`.

    Parameters
    ----------
    model : nn.Module
    device : torch.device, optional
        Where to run; default: where the model is.
    channels_last : bool
        Lay 4-D weights out as NHWC (see :func:`use_channels_last` for when it pays); inputs
        must then be converted by the caller.

    Yields
    ------
    nn.Module
        ``model`` itself, ready for the pass.
    """
    with model_state_preserved(model):
        model.eval()
        if device is not None:
            model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        yield model

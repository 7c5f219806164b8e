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


#: Fold only passes at least this large (images x input pixels): the copy and trace cost 0.05-0.5 s,
#: under 2 % of such a pass for the models measured (ResNet-18 at 16 px: 4,096 images).
FOLD_MIN_PIXELS = 1 << 20
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _count_batchnorms(model: nn.Module) -> int:
    # Exact types: a subclass (timm's BatchNormAct2d, SyncBatchNorm...) may do more than normalise.
    return sum(type(m) in _BATCHNORMS for m in model.modules())


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """An inference copy of ``model`` with every BatchNorm that directly follows a convolution
    (or linear layer) folded into its weights, or ``model`` itself when none can be.

    An eval-mode BatchNorm is a per-channel affine map, so ``bn(conv(x))`` equals one convolution
    with rescaled weights and a bias (``torch.fx.experimental.optimization.fuse``). Measured on
    this project's 2-core CPU: ResNet-18 1.07-1.10x and ResNet-50 1.14x faster inference, logits
    moved by at most 5e-8; models whose normalisation precedes the convolution (DenseNet) or is
    fused with its activation (timm's ``BatchNormAct2d``: EfficientNet) gain nothing and are
    returned as they are. ``model`` is not changed (the copy is deep).

    Parameters
    ----------
    model : nn.Module
        In eval mode, on the device and in the memory layout of the pass.
    example : Tensor, shape (B, C, H, W)
        An input of the pass's shape and device: the copy must give the model's outputs on it
        (to 1e-4 of their scale) or the model itself is returned.

    Returns
    -------
    module : nn.Module
        The folded copy, or ``model``.
    n_folded : int
        BatchNorms folded away (0 when ``model`` is returned).
    """
    before = _count_batchnorms(model)
    if before == 0 or any(m.training for m in model.modules()):
        return model, 0
    from torch.fx.experimental.optimization import fuse

    try:
        with torch.no_grad():
            folded = fuse(model)
    except Exception:  # noqa: BLE001 - not traceable by torch.fx (data-dependent control flow): run it unfolded
        return model, 0
    n_folded = before - _count_batchnorms(folded)
    if n_folded <= 0:
        return model, 0
    if example.ndim == 4 and example.is_contiguous(memory_format=torch.channels_last):
        folded = folded.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        want, got = model(example), folded(example)
    if not (isinstance(want, torch.Tensor) and isinstance(got, torch.Tensor) and want.shape == got.shape
            and bool(((want - got).abs().max() <= 1e-4 * want.abs().max().clamp(min=1.0)).item())):
        return model, 0
    return folded, n_folded

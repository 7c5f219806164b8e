"""Class activation maps through pytorch_grad_cam, batched, leaving the model as it was.

pytorch_grad_cam puts the model in eval mode, zeroes parameter gradients and registers
hooks; :func:`compute_cams` runs it under :func:`medaudit.models.runtime.inference_state`
and releases the hooks, so auditing a model never changes it (train/eval flags,
``requires_grad``, ``.grad`` and hooks are restored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytorch_grad_cam
import torch
import torch.nn.functional as F
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from medaudit.errors import MedauditError
from medaudit.explain.targets import RequireMap, candidate_layers, choose_target_layer, resolve_target_layer
from medaudit.models.runtime import inference_state, model_device, model_family

# --cam-method name -> pytorch_grad_cam class name; "scorecam" costs one forward pass per
# channel of the target layer per image (512 for ResNet-18), so it is far slower.
CAM_METHODS = {
    "auto": None,  # the family's default (DEFAULT_METHODS), resolved by resolve_method
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "eigencam": "EigenCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}
_GRADIENT_FREE = {"eigencam", "scorecam"}
# ``method="auto"``: the default per family (medaudit.models.runtime.model_family), chosen by the
# pointing game on planted lesions (docs/cam-defaults.md, benchmarks/cam_defaults.py).
DEFAULT_METHODS = {"cnn": "gradcam", "transformer": "layercam"}


def resolve_method(model: nn.Module, method: str) -> str:
    """The concrete CAM method: ``method`` itself, or the family default for ``"auto"``."""
    if method == "auto":
        return DEFAULT_METHODS[model_family(model)]
    _cam_class(method)  # one-line error for an unknown name
    return method


@dataclass
class CamResult:
    """CAMs for a batch of images.

    Attributes
    ----------
    cams : ndarray of float32, shape (B, H, W)
        Maps at input resolution, min-max scaled to [0, 1] per image; rows of invalid
        CAMs are all NaN (never zeros that could be drawn as "looked nowhere").
    valid : ndarray of bool, shape (B,)
    reasons : list of (str or None)
        Why a CAM is invalid; None for valid ones.
    method, layer : str
        The method key and the concrete dotted name of the target layer.
    targets : list of int
        The class explained for each image.
    layer_reason : str or None
        Why this layer (map size at this input; a too-coarse default walked back); None for a
        layer the caller named.
    grid : (int, int) or None
        The target layer's map size (h, w) before upsampling.
    """

    cams: np.ndarray
    valid: np.ndarray
    reasons: list[str | None]
    method: str
    layer: str
    targets: list[int] = field(default_factory=list)
    layer_reason: str | None = None
    grid: tuple[int, int] | None = None


class _QuietScoreCAM(ScoreCAM):
    """ScoreCAM with the library's weights but without its per-image tqdm bars."""

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        bs = getattr(self, "batch_size", 16)
        with torch.no_grad():
            act = torch.from_numpy(activations).to(self.device)
            up = F.interpolate(act, size=input_tensor.shape[-2:], mode="bilinear", align_corners=True)
            flat = up.flatten(2)
            lo, hi = flat.min(-1)[0][..., None, None], flat.max(-1)[0][..., None, None]
            up = (up - lo) / (hi - lo + 1e-8)
            scores = []
            for target, x, masks in zip(targets, input_tensor, up, strict=True):
                s = [
                    torch.stack([target(o) for o in self.model(x[None] * masks[i : i + bs, None])]).cpu()
                    for i in range(0, masks.shape[0], bs)
                ]
                scores.append(torch.cat(s))
            # A softmax over the layer's channels (B, channels) of one class's masked scores: ScoreCAM's
            # weighting of activation maps, as pytorch_grad_cam computes it, not class probabilities, so
            # not medaudit.predictions.probabilities_from_logits (whose float64 matters for ranking samples).
            return torch.softmax(torch.stack(scores).float(), dim=-1).numpy()


def _cam_class(method: str):
    if method not in CAM_METHODS or CAM_METHODS[method] is None:
        raise MedauditError(f"method '{method}' is not one of {', '.join(CAM_METHODS)}", param="method")
    if method == "scorecam":
        return _QuietScoreCAM
    return getattr(pytorch_grad_cam, CAM_METHODS[method])


def _spatial_check(activations: list, layer: str) -> str | None:
    # A 1x1 map min-max scales to all zeros; say why instead of "zero everywhere".
    if activations and tuple(activations[0].shape[-2:]) == (1, 1):
        return f"layer '{layer}' has a 1x1 output at this input size (no spatial detail); choose an earlier --cam-layer"
    return None


def _check(cam: np.ndarray) -> str | None:
    if not np.isfinite(cam).all():
        return "CAM has NaN/inf values (non-finite activations or gradients)"
    if float(cam.max()) <= 0.0:
        return "CAM is zero everywhere (no positive evidence for the class at this layer)"
    return None


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    targets: Sequence[int],
    *,
    method: str = "gradcam",
    layer: str | None = None,
    arch: str | None = None,
    batch_size: int = 16,
) -> CamResult:
    """Compute one CAM per image for the given target class.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits ``(B, C)``; left exactly as it was (see module docstring).
    images : Tensor, shape (B, C, H, W)
        Normalised model input, on the model's device or CPU.
    targets : sequence of int, length B
        Class index explained for each image (usually the predicted class).
    method : str
        A key of :data:`CAM_METHODS`, or ``"auto"`` (:data:`DEFAULT_METHODS` of the model's family).
    layer : str, optional
        Dotted target-layer path; default: :func:`~medaudit.explain.targets.choose_target_layer`
        (the family default, walked back to an earlier stage when its map is coarser than 7x7).
    arch : str, optional
        Architecture name for messages.
    batch_size : int
        Images per pytorch_grad_cam call (bounds memory).

    Returns
    -------
    CamResult
        ``cams`` (B, H, W) float32 in [0, 1], NaN rows where ``valid`` is False.
    """
    if images.ndim != 4:
        raise MedauditError(f"images must be a (B, C, H, W) tensor (got shape {tuple(images.shape)})",
                            param="images")
    if len(targets) != images.shape[0]:
        raise MedauditError(f"got {len(targets)} targets for {images.shape[0]} images", param="targets")
    if batch_size < 1:
        raise MedauditError(f"batch_size must be >= 1 (got {batch_size})", param="batch_size")
    method = resolve_method(model, method)
    cam_cls = _cam_class(method)
    b, _, h, w = images.shape
    layer_reason = None
    if not layer:
        layer, layer_reason = choose_target_layer(model, (h, w), int(images.shape[1]))
    module, name, reshape = resolve_target_layer(model, arch=arch, layer=layer)
    if reshape is not None:
        reshape.set_input_size(h, w)
    else:
        reshape = RequireMap(name, candidate_layers(model))
    device = model_device(model)
    out = np.full((b, h, w), np.nan, dtype=np.float32)
    reasons: list[str | None] = []
    grid = None
    # inference_mode(False): a caller inside torch.inference_mode() still gets gradients.
    with inference_state(model), torch.inference_mode(False), torch.enable_grad():
        # Gradients w.r.t. activations only: frozen weights skip weight-gradient work and
        # never touch .grad; the input needs grad so frozen models still build a graph.
        for p in model.parameters():
            p.requires_grad_(False)
        cam = cam_cls(model=model, target_layers=[module], reshape_transform=reshape)
        cam.batch_size = batch_size
        try:
            for start in range(0, b, batch_size):
                x = images[start : start + batch_size].detach().to(device).clone()
                if method not in _GRADIENT_FREE:
                    x.requires_grad_(True)
                chunk = [ClassifierOutputTarget(int(t)) for t in targets[start : start + batch_size]]
                maps = cam(input_tensor=x, targets=chunk)
                acts = cam.activations_and_grads.activations
                if acts:
                    grid = (int(acts[0].shape[-2]), int(acts[0].shape[-1]))
                flat_reason = _spatial_check(acts, name)
                for j, m in enumerate(maps):
                    reason = flat_reason or _check(m)
                    reasons.append(reason)
                    if reason is None:
                        out[start + j] = np.clip(m, 0.0, 1.0)
        finally:
            cam.activations_and_grads.release()
    valid = np.array([r is None for r in reasons], dtype=bool)
    return CamResult(out, valid, reasons, method, name, [int(t) for t in targets], layer_reason, grid)

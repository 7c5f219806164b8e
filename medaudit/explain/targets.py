"""Which layer Grad-CAM looks at, per architecture family, and how token outputs become maps.

CAM methods need a spatial activation ``(B, C, h, w)``. CNNs give one directly; Vision
Transformers give tokens ``(B, prefix + h*w, C)`` (class/distillation/register tokens first)
and Swin gives channels-last ``(B, h, w, C)``. :class:`TokenReshape` turns both into maps
with the grid taken from the model's patch embedding *and the actual input size* — never a
hard-coded 14x14 — so 224, 384 and non-square inputs work.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medaudit.errors import MedauditError

GridFn = Callable[[int, int], tuple[int, int]]


class TokenReshape:
    """Reshape transform for pytorch_grad_cam: token or channels-last outputs → ``(B, C, h, w)``.

    Parameters
    ----------
    num_prefix_tokens : int
        Tokens before the patch tokens (class token, distillation token, register tokens).
    grid_fn : callable (H, W) -> (gh, gw)
        Patch grid for an input of H x W pixels.
    channels_last : bool
        The layer outputs ``(B, h, w, C)`` (Swin) instead of tokens.

    Call :meth:`set_input_size` before a forward pass; 4-D NCHW outputs (e.g. a user-chosen
    ``patch_embed.proj``) pass through unchanged unless ``channels_last``.
    """

    def __init__(self, num_prefix_tokens: int, grid_fn: GridFn | None, *, channels_last: bool = False) -> None:
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.grid_fn = grid_fn
        self.channels_last = channels_last
        self.grid: tuple[int, int] | None = None

    def set_input_size(self, height: int, width: int) -> None:
        """Fix the patch grid for inputs of ``height`` x ``width`` pixels."""
        self.grid = None if self.grid_fn is None else tuple(int(g) for g in self.grid_fn(height, width))

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 4:
            return t.permute(0, 3, 1, 2) if self.channels_last else t
        if t.ndim != 3:
            raise MedauditError(f"the target layer's output has shape {tuple(t.shape)}; choose a layer with tokens "
                                "or a map", param="layer")
        b, n_tokens, c = t.shape
        n_patch = n_tokens - self.num_prefix_tokens
        if self.grid is None:
            raise MedauditError("internal: TokenReshape.set_input_size was not called before the forward pass")
        gh, gw = self.grid
        if gh * gw != n_patch:
            raise MedauditError(
                f"the target layer's output has {n_patch} patch tokens (after {self.num_prefix_tokens} prefix "
                f"tokens) but the input gives a {gh}x{gw} patch grid; choose a block of the main token sequence",
                param="layer",
            )
        return t[:, self.num_prefix_tokens :, :].reshape(b, gh, gw, c).permute(0, 3, 1, 2)


class RequireMap:
    """Reshape transform for CNN layers: passes ``(B, C, h, w)`` through, refuses anything else.

    Without it a user-chosen layer ``fc`` or ``global_pool`` reaches pytorch_grad_cam as
    a (B, C) tensor and fails there with an opaque shape error.
    """

    def __init__(self, layer: str, candidates: list[str]) -> None:
        self.layer = layer
        self.candidates = candidates

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 4:
            raise MedauditError(
                f"layer '{self.layer}' outputs shape {tuple(t.shape)}, not a spatial map (B, C, h, w); "
                f"choose a convolutional stage, e.g. {', '.join(self.candidates[:8])}",
                param="layer",
            )
        return t


def _dotted_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise MedauditError("internal: target layer is not a sub-module of the model")


def _timm_grid_fn(patch_embed) -> GridFn:
    if hasattr(patch_embed, "dynamic_feat_size"):
        return lambda h, w: patch_embed.dynamic_feat_size((h, w))
    ph, pw = _pair(patch_embed.patch_size)
    return lambda h, w: (h // ph, w // pw)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _last(seq) -> nn.Module:
    return list(seq.children())[-1] if not isinstance(seq, (list, tuple)) else seq[-1]


def _auto_layer(model: nn.Module) -> tuple[nn.Module, TokenReshape | None]:
    """The default target per family (see module docstring); raises when nothing fits."""
    kind = type(model).__name__
    pe = getattr(model, "patch_embed", None)
    # timm ViT / DeiT / EVA / BEiT: the last block's norm1 (its output still mixes into
    # the class token through that block's attention, unlike the block output itself).
    if pe is not None and hasattr(model, "blocks") and hasattr(_last(model.blocks), "norm1"):
        prefix = getattr(model, "num_prefix_tokens", 1 if getattr(model, "cls_token", None) is not None else 0)
        return _last(model.blocks).norm1, TokenReshape(prefix, _timm_grid_fn(pe))
    # timm Swin: channels-last stages.
    if pe is not None and hasattr(model, "layers") and hasattr(_last(model.layers), "blocks"):
        return _last(_last(model.layers).blocks).norm1, TokenReshape(0, None, channels_last=True)
    # torchvision ViT: class token + conv_proj patchify.
    if hasattr(model, "conv_proj") and hasattr(model, "encoder"):
        p = int(model.patch_size)
        return _last(model.encoder.layers).ln_1, TokenReshape(1, lambda h, w: (h // p, w // p))
    if kind == "SwinTransformer" and hasattr(model, "features"):  # torchvision Swin (NHWC)
        return _last(_last(model.features)).norm1, TokenReshape(0, None, channels_last=True)
    if hasattr(model, "layer4"):  # ResNet / ResNeXt / SE-ResNet (timm and torchvision)
        return _last(model.layer4), None
    if kind == "EfficientNet" and hasattr(model, "bn2"):  # timm: conv_head + BN+act
        return model.bn2, None
    if kind == "MobileNetV3" and hasattr(model, "blocks"):  # timm pools before conv_head
        return _last(model.blocks), None
    if hasattr(model, "stages"):  # timm ConvNeXt, RegNet-like, EfficientFormer...
        return _last(model.stages), None
    if hasattr(model, "features") and isinstance(model.features, nn.Sequential):  # torchvision CNNs
        return _last(model.features), None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return convs[-1], None
    raise MedauditError(
        f"cannot choose a Grad-CAM layer for {kind} automatically; name one "
        f"(candidates: {', '.join(candidate_layers(model))})",
        param="layer",
    )


# Modules after the last spatial map (pooling, classifier head): never a CAM target.
_HEAD_NAMES = frozenset({"fc", "head", "heads", "classifier", "global_pool", "avgpool", "pre_logits", "head_drop",
                         "fc_norm", "flatten", "dropout", "drop", "conv_head", "act2", "norm_pre"})


def candidate_layers(model: nn.Module, limit: int = 12) -> list[str]:
    """Module names a user is likely to want as the CAM layer: the family's default first,
    then the last shallow modules before the pooling/classifier head (latest first)."""
    try:
        default = [_dotted_name(model, _auto_layer(model)[0])]
    except MedauditError:
        default = []
    shallow = [n for n, m in model.named_modules()
               if n and n.count(".") <= 2 and not set(n.split(".")) & _HEAD_NAMES and any(True for _ in m.children())]
    ordered = default + [n for n in reversed(shallow) if n not in default]
    return ordered[:limit]


def _token_reshape_for(model: nn.Module) -> TokenReshape | None:
    """The reshape a user-chosen layer of this model needs (token models only)."""
    _, reshape = _auto_layer(model)
    return reshape


def resolve_target_layer(
    model: nn.Module, arch: str | None = None, layer: str | None = None
) -> tuple[nn.Module, str, TokenReshape | None]:
    """Pick the CAM target layer.

    Parameters
    ----------
    model : nn.Module
        A timm or torchvision classifier (or any module; the last Conv2d is the fallback).
    arch : str, optional
        Architecture name; used only in messages (the family is read from the module tree,
        so renamed or converted checkpoints resolve the same).
    layer : str, optional
        Dotted path overriding the default (``layer4.1``, ``blocks.-2.norm1``).

    Returns
    -------
    module : nn.Module
    name : str
        Concrete dotted name (negative indices resolved), e.g. ``blocks.11.norm1``.
    reshape : TokenReshape or None
        Needed for token models; call ``reshape.set_input_size(H, W)`` before use.

    Raises
    ------
    MedauditError
        Unknown ``layer`` path (the message lists candidate layers) or no default found.
    """
    if layer:
        module = _resolve_path(model, layer, arch)
        try:
            reshape = _token_reshape_for(model)
        except MedauditError:
            reshape = None
        return module, _dotted_name(model, module), reshape
    module, reshape = _auto_layer(model)
    return module, _dotted_name(model, module), reshape


def _resolve_path(model: nn.Module, dotted: str, arch: str | None) -> nn.Module:
    current = model
    for part in dotted.split("."):
        try:
            current = current[int(part)] if part.lstrip("-").isdigit() else getattr(current, part)
        except (AttributeError, IndexError, TypeError, KeyError):
            current = None
        if current is None or not hasattr(current, "register_forward_hook"):
            what = arch or type(model).__name__
            raise MedauditError(
                f"layer '{dotted}' is not a layer of {what}; candidates: {', '.join(candidate_layers(model))}",
                param="layer",
            )
    return current

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
from medaudit.models.runtime import inference_state, model_device

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


# A CAM coarser than this (per side) cannot point at a lesion: a 2x2 map is four blurred
# quadrants. 7 is what ResNets give at their design size (224 px / 32).
MIN_CAM_GRID = 7


def _stage_candidates(model: nn.Module, default: nn.Module) -> list[nn.Module]:
    """The family default, then the earlier stages a CAM can fall back to (latest first)."""
    stages: list[nn.Module] = []
    if hasattr(model, "layer4"):  # ResNet family: last block of layer4, layer3, ...
        stages = [_last(getattr(model, f"layer{k}")) for k in (4, 3, 2, 1) if hasattr(model, f"layer{k}")]
    elif hasattr(model, "stages"):
        stages = list(reversed(list(model.stages.children())))
    elif type(model).__name__ in ("EfficientNet", "MobileNetV3") and hasattr(model, "blocks"):
        stages = list(reversed(list(model.blocks.children())))
    elif hasattr(model, "features") and isinstance(model.features, nn.Sequential):
        stages = list(reversed(list(model.features.children())))
    return [default] + [s for s in stages if s is not default]


def _map_sizes(model: nn.Module, modules: list[nn.Module], in_chans: int, hw: tuple[int, int]) -> list:
    """Spatial output size ``(h, w)`` (or None: not a map) of each module for one zero input."""
    sizes: list = [None] * len(modules)

    def hook(i):
        def fn(_m, _inp, out):
            t = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(t, torch.Tensor) and t.ndim == 4:
                sizes[i] = (int(t.shape[-2]), int(t.shape[-1]))
        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        with inference_state(model), torch.no_grad():
            model(torch.zeros((1, in_chans, *hw), device=model_device(model)))
    finally:
        for h in handles:
            h.remove()
    return sizes


def choose_target_layer(model: nn.Module, input_hw: tuple[int, int], in_chans: int = 3) -> tuple[str, str]:
    """The CAM layer for inputs of ``input_hw`` pixels, walking back from a too-coarse default.

    Parameters
    ----------
    model : nn.Module
    input_hw : (int, int)
        Input height and width the CAMs are computed at.
    in_chans : int
        Input channels (one zero image is run through the model to read the map sizes).

    Returns
    -------
    name : str
        Dotted layer name: the family default when its map is at least
        :data:`MIN_CAM_GRID` per side, else the latest earlier stage that is, else the finest stage.
    reason : str
        Why this layer, with the map size, for the report.
    """
    default, reshape = _auto_layer(model)
    h, w = int(input_hw[0]), int(input_hw[1])
    default_name = _dotted_name(model, default)
    if reshape is not None:  # token models: every block has the patch grid
        reshape.set_input_size(h, w)
        gh, gw = reshape.grid if reshape.grid is not None else (None, None)
        if gh is None:
            return default_name, f"family default; its map size is set by the stage at {h}x{w} input"
        coarse = "" if min(gh, gw) >= MIN_CAM_GRID else (
            f"; coarser than {MIN_CAM_GRID}x{MIN_CAM_GRID}, and every block has this grid (a larger input or "
            "a smaller patch gives finer maps)")
        return default_name, f"family default; token grid {gh}x{gw} at {h}x{w} input{coarse}"
    cands = _stage_candidates(model, default)
    sizes = _map_sizes(model, cands, in_chans, (h, w))
    d = sizes[0]
    if d is not None and min(d) >= MIN_CAM_GRID:
        return default_name, f"family default; {d[0]}x{d[1]} map at {h}x{w} input"
    maps = [(m, s) for m, s in zip(cands, sizes, strict=True) if s is not None]
    if not maps:
        return default_name, f"family default (no stage output is a spatial map at {h}x{w} input)"
    shown = "no map" if d is None else f"a {d[0]}x{d[1]} map"
    for m, s in maps:
        if min(s) >= MIN_CAM_GRID:
            return (_dotted_name(model, m), f"{default_name} gives {shown} at {h}x{w} input (coarser than "
                    f"{MIN_CAM_GRID}x{MIN_CAM_GRID}); {_dotted_name(model, m)} is the latest stage that is not "
                    f"({s[0]}x{s[1]})")
    m, s = max(maps, key=lambda ms: min(ms[1]))
    return (_dotted_name(model, m), f"{default_name} gives {shown} at {h}x{w} input; no stage reaches "
            f"{MIN_CAM_GRID}x{MIN_CAM_GRID}, {_dotted_name(model, m)} is the finest ({s[0]}x{s[1]})")

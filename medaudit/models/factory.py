"""One model factory: timm names and torchvision architectures (``tv:`` prefix).

Models are created with random weights unless weights are given explicitly
(``weights=PATH``) or ``pretrained=True`` finds them in the local cache; there is
never a silent random init when pretrained weights were asked for.

Weight files are read by :mod:`medaudit.models.weights`; how a model runs (its family,
channels-last) is :mod:`medaudit.models.runtime`'s.

timm (and through it torchvision and ``torch._dynamo``, ~2 s) is imported by the functions that
build or name models, not with this module: a report whose predictions are all cached never
builds a model (:func:`medaudit.models.checkpoint.load_checkpoint` with ``lazy=True``).
"""

from __future__ import annotations

import contextlib
import difflib
import socket
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from torch import nn

from medaudit.errors import MedauditError, MedauditWarning
from medaudit.models.runtime import model_family
from medaudit.models.weights import load_backbone_weights

TV_PREFIX = "tv:"
# Inputs at or below this size get the MedMNIST-paper "(28)" ResNet stem.
SMALL_INPUT_MAX = 64
_TRANSFORMER_MODULES = ("vision_transformer", "deit", "beit", "eva", "swin", "vit", "xcit", "cait", "levit")


def _suggest(arch: str) -> str:
    import timm
    import torchvision

    names = timm.list_models() + [TV_PREFIX + n for n in torchvision.models.list_models(torchvision.models)]
    close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else " See `timm.list_models()` for the names."


def is_transformer_arch(arch: str) -> bool:
    """True for ViT-like architectures (token models with a patch embedding)."""
    if arch.startswith(TV_PREFIX):
        return arch[len(TV_PREFIX) :].startswith(("vit_", "swin_", "maxvit"))
    from timm.models import _registry as timm_registry

    module = timm_registry._model_to_module.get(timm_registry.get_arch_name(arch), "")
    return any(key in module for key in _TRANSFORMER_MODULES)


def create_model(
    arch: str,
    num_classes: int,
    *,
    in_chans: int = 3,
    img_size: int = 224,
    pretrained: bool = False,
    weights: str | Path | None = None,
    small_stem: bool | None = None,
) -> nn.Module:
    """Build a classifier.

    Parameters
    ----------
    arch : str
        A timm model name (``resnet18``, ``vit_tiny_patch16_224``, ...) or a torchvision
        architecture with the ``tv:`` prefix (``tv:resnet18``, ``tv:vit_b_16``).
    num_classes : int
        Width of the classification head.
    in_chans : int
        Input channels (1 for grayscale models, 3 otherwise).
    img_size : int
        Square input size in pixels; ViTs are built for it (position embeddings).
    pretrained : bool
        Load the architecture's pretrained weights from the local cache (downloads only
        when online); failure is an error, never a silent random init.
    weights : path, optional
        A local state_dict (``.pt``/``.pth``/``.safetensors``) to load into the backbone;
        classifier weights whose shape does not match ``num_classes`` are dropped.
    small_stem : bool, optional
        ResNet "(28)" variant (3x3 stride-1 stem, no max-pool); default: on when
        ``img_size <= 64``.

    Returns
    -------
    nn.Module
        In train mode (as built), on the CPU; its forward maps ``(B, in_chans, img_size, img_size)``
        to logits ``(B, num_classes)``.

    Raises
    ------
    MedauditError
        For an unknown architecture (with close names), a class count below 1, pretrained weights
        that are neither cached nor downloadable, or ``weights`` that do not fit the model.
    """
    if num_classes < 1:
        raise MedauditError(f"num_classes must be >= 1 (got {num_classes})", param="num_classes")
    if small_stem is None:
        small_stem = img_size <= SMALL_INPUT_MAX
    if arch.startswith(TV_PREFIX):
        model = _create_torchvision(arch[len(TV_PREFIX) :], num_classes, in_chans, img_size, pretrained)
    else:
        model = _create_timm(arch, num_classes, in_chans, img_size, pretrained)
    if small_stem:
        replaced = _apply_small_stem(model, in_chans)
        if replaced and pretrained:
            warnings.warn(f"'{arch}' at {img_size} px uses the small ResNet stem: its first convolution starts from "
                          "random weights, not the pretrained ones (the standard stem keeps them)",
                          MedauditWarning, stacklevel=2)
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def _create_timm(arch: str, num_classes: int, in_chans: int, img_size: int, pretrained: bool) -> nn.Module:
    import timm

    if not timm.is_model(arch):
        raise MedauditError(f"unknown model architecture '{arch}'.{_suggest(arch)}")
    kwargs: dict = {"num_classes": num_classes, "in_chans": in_chans}
    if is_transformer_arch(arch):
        kwargs["img_size"] = img_size
    try:
        with _hub_offline_when_unreachable(pretrained):
            return timm.create_model(arch, pretrained=pretrained, **kwargs)
    except Exception as exc:  # hub/network failures come in many types; re-raise as a domain error
        if not pretrained:
            raise
        raise MedauditError(
            f"pretrained weights for '{arch}' are not in the local cache and could not be downloaded ({exc}); "
            "download them on a machine that is online (they are cached under ~/.cache/huggingface) "
            "or give a local state_dict file as the weights instead",
            param="pretrained",
        ) from None


@contextlib.contextmanager
def _hub_offline_when_unreachable(pretrained: bool, timeout: float = 3.0):
    """Cache-only Hugging Face Hub access while the hub cannot be reached.

    Offline, huggingface_hub retries each request with back-off (measured: 55 s and 22
    warnings before failing); in offline mode it answers from the local cache at once, or
    fails at once when the weights are not there. The probe goes to the endpoint the hub
    client uses (``HF_ENDPOINT``, e.g. a mirror); behind a proxy no probe is made, since a
    direct connection failing says nothing about the proxied one.
    """
    if not pretrained:
        yield
        return
    from huggingface_hub import constants as hub_constants

    proxies = urllib.request.getproxies()
    if hub_constants.HF_HUB_OFFLINE or proxies.get("https") or proxies.get("all"):
        yield
        return
    url = urlsplit(hub_constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError:
        previous = hub_constants.HF_HUB_OFFLINE
        hub_constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            hub_constants.HF_HUB_OFFLINE = previous
        return
    yield


def _create_torchvision(name: str, num_classes: int, in_chans: int, img_size: int, pretrained: bool) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(torchvision.models)
    if name not in available:
        raise MedauditError(f"unknown torchvision architecture 'tv:{name}'.{_suggest(TV_PREFIX + name)}")
    if in_chans != 3:
        raise MedauditError(f"torchvision architecture 'tv:{name}' takes 3-channel input (got {in_chans} channels)",
                            param="in_chans")
    kwargs: dict = {}
    if name.startswith("vit_"):
        kwargs["image_size"] = img_size
    if pretrained:
        try:
            model = torchvision.models.get_model(name, weights="DEFAULT", **kwargs)
        except Exception as exc:  # torch.hub raises URLError/RuntimeError/etc. when offline
            raise MedauditError(
                f"pretrained weights for 'tv:{name}' are not in the torch hub cache and could not be downloaded "
                f"({exc}); give a local state_dict file as the weights instead",
                param="pretrained",
            ) from None
        _replace_head(model, num_classes)
        return model
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def _replace_head(model: nn.Module, num_classes: int) -> None:
    if hasattr(model, "fc") and isinstance(model.fc, nn.Linear):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif hasattr(model, "heads") and hasattr(model.heads, "head"):
        model.heads.head = nn.Linear(model.heads.head.in_features, num_classes)
    elif hasattr(model, "classifier") and isinstance(model.classifier, nn.Sequential):
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    else:
        raise MedauditError(f"cannot replace the classifier head of {type(model).__name__}")


def _apply_small_stem(model: nn.Module, in_chans: int) -> bool:
    """MedMNIST "(28)" ResNet: 3x3 stride-1 first conv and no max-pool. Returns False for non-ResNets."""
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d) and hasattr(model, "maxpool") and hasattr(model, "layer1"):
        model.conv1 = nn.Conv2d(in_chans, conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        return True
    return False


def has_small_stem(model: nn.Module) -> bool:
    """True for a ResNet built with the "(28)" stem (3x3 stride-1 conv1, no max-pool)."""
    conv1 = getattr(model, "conv1", None)
    return (isinstance(conv1, nn.Conv2d) and isinstance(getattr(model, "maxpool", None), nn.Identity)
            and tuple(conv1.kernel_size) == (3, 3) and tuple(conv1.stride) == (1, 1))


def model_summary(model: nn.Module, arch: str) -> dict:
    """Architecture facts for the report: family, parameters, depth, patch size."""
    n_params = sum(p.numel() for p in model.parameters())
    family = model_family(model)
    patch = None
    depth = None
    pe = getattr(model, "patch_embed", None)
    if pe is not None and hasattr(pe, "patch_size"):
        ps = pe.patch_size
        patch = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
    elif hasattr(model, "patch_size"):
        patch = int(model.patch_size)
    if hasattr(model, "blocks"):
        depth = len(model.blocks)
    elif hasattr(model, "encoder") and hasattr(model.encoder, "layers"):
        depth = len(model.encoder.layers)
    else:
        digits = "".join(ch for ch in arch.split(":")[-1].split("_")[0] if ch.isdigit())
        depth = int(digits) if digits and family == "cnn" and "resnet" in arch else None
    return {"family": family, "params": int(n_params), "patch_size": patch, "depth": depth}


def resolve_layer(model: nn.Module, dotted: str) -> nn.Module:
    """Return the sub-module at ``dotted`` (e.g. ``layer4.1`` or ``blocks.-1.norm1``).

    Raises MedauditError listing candidate layer names when the path does not exist.
    """
    current = model
    for part in dotted.split("."):
        try:
            if part.lstrip("-").isdigit():
                current = current[int(part)]  # type: ignore[index]
            else:
                current = getattr(current, part)
        except (AttributeError, IndexError, TypeError, KeyError):
            names = [n for n, _ in model.named_modules() if n and n.count(".") <= 2]
            raise MedauditError(
                f"layer '{dotted}' not found in {type(model).__name__}; candidates include: {', '.join(names[-15:])}"
            ) from None
    return current

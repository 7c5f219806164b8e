"""Grad-CAM galleries for CNNs and Vision Transformers.

* :func:`resolve_target_layer` — default CAM layer per family (ResNet, ViT/DeiT with
  register tokens, Swin, ConvNeXt, EfficientNet, torchvision models) + token reshape;
* :func:`compute_cams` — batched CAMs through pytorch_grad_cam, model left untouched,
  invalid (all-zero / NaN / 1x1) CAMs flagged with a reason;
* :func:`select_gallery` — missed disease, other errors, confident correct; same samples
  for every model;
* :func:`draw_tiles` — input + overlay + labels as compact image files;
* :func:`cam_tiles_for_report` — the whole step for ``medaudit report``;
* :func:`medaudit.explain.run.run_cam_gallery` — ``medaudit cam`` (checkpoints and data in,
  tiles and ``cams.json`` out); import it from its module, it loads data and checkpoints.
"""

from medaudit.explain.cam import CAM_METHODS, CamResult, compute_cams
from medaudit.explain.gallery import cam_block, cam_tiles_for_report
from medaudit.explain.select import select_gallery
from medaudit.explain.targets import TokenReshape, candidate_layers, resolve_target_layer
from medaudit.explain.tiles import draw_tiles

__all__ = [
    "CAM_METHODS",
    "CamResult",
    "TokenReshape",
    "cam_block",
    "cam_tiles_for_report",
    "candidate_layers",
    "compute_cams",
    "draw_tiles",
    "resolve_target_layer",
    "select_gallery",
]

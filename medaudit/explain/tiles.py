"""Gallery tiles: the image the model saw, its CAM overlay, and the labels, as small files.

Each tile is ``[input | overlay]`` over a caption (sample id; true, predicted label and its
probability), with a coloured bar for the group (red: missed disease, orange: other error,
green: correct). Images are shown at input resolution (small inputs upscaled by an integer
factor with nearest-neighbour so pixels stay honest; inputs above 256 px are shown at 256 px
to keep a gallery of dozens of tiles to a few MB). Invalid CAMs are never drawn: the
overlay panel says why instead. JPEG by default: 64 tiles stay around 1-2 MB.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from medaudit.errors import MedauditError
from medaudit.naming import safe_name

GROUP_COLORS = {"missed_disease": (200, 30, 30), "error": (230, 140, 20), "correct": (40, 150, 60)}
MIN_PANEL, MAX_PANEL = 160, 256
FORMATS = {"jpeg": ".jpg", "png": ".png"}


def panel_size(h: int) -> int:
    """Display side in pixels for an input of side ``h``: integer upscale to >= 160, capped at 256."""
    if h >= MAX_PANEL:
        return MAX_PANEL
    return min(MAX_PANEL, h * max(1, math.ceil(MIN_PANEL / h)))


def _colormap_lut(name: str = "jet") -> np.ndarray:
    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5, lut: np.ndarray | None = None) -> np.ndarray:
    """Blend a [0, 1] CAM ``(H, W)`` as a jet heat map over a uint8 image ``(H, W, 3)``."""
    if lut is None:
        lut = _colormap_lut()
    heat = lut[np.clip(np.round(cam * 255), 0, 255).astype(np.uint8)]
    return np.round((1 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)).astype(np.uint8)


def _font(size: int):
    return ImageFont.load_default(size=size)


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]  # keep the end of long ids (the file name part)
    return "…" + text


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    return lines + ([line] if line else [])


def render_tile(image: np.ndarray, cam: np.ndarray | None, info: dict, *, lut: np.ndarray | None = None):
    """One tile as a PIL image. ``cam`` None (or NaN) draws the reason instead of an overlay."""
    h, w = image.shape[:2]
    side = panel_size(max(h, w))
    resample = Image.NEAREST if side >= max(h, w) else Image.BILINEAR
    left = Image.fromarray(image).resize((side, side), resample)
    font, small = _font(13), _font(11)
    if cam is not None and np.isfinite(cam).all():
        cam_img = Image.fromarray((np.clip(cam, 0, 1) * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
        right = Image.fromarray(overlay(np.asarray(left), np.asarray(cam_img) / 255.0, lut=lut))
    else:
        right = Image.new("RGB", (side, side), (90, 90, 90))
        d = ImageDraw.Draw(right)
        reason = info.get("reason") or "CAM unavailable"
        for k, line in enumerate(["no CAM:"] + _wrap(d, reason, small, side - 12)):
            d.text((6, 6 + 14 * k), line, fill=(255, 255, 255), font=small)
    bar, caption = 5, 40
    tile = Image.new("RGB", (2 * side, side + bar + caption), (255, 255, 255))
    d = ImageDraw.Draw(tile)
    d.rectangle([0, 0, 2 * side, bar - 1], fill=GROUP_COLORS.get(info.get("group"), (120, 120, 120)))
    tile.paste(left, (0, bar))
    tile.paste(right, (side, bar))
    y0 = side + bar + 3
    d.text((4, y0), _fit(d, str(info.get("sample_id", "")), small, 2 * side - 8), fill=(60, 60, 60), font=small)
    wrong = info.get("pred") != info.get("true")
    prob = info.get("prob")
    ptxt = "" if prob is None else f" ({prob:.2f})"
    label = f"true: {info.get('true')}   pred: {info.get('pred')}{ptxt}"
    d.text((4, y0 + 16), _fit(d, label, font, 2 * side - 8), fill=(190, 20, 20) if wrong else (20, 20, 20), font=font)
    return tile


def draw_tiles(
    images_uint8: np.ndarray | Sequence[np.ndarray],
    cams: np.ndarray,
    infos: Sequence[dict],
    out_dir: str | os.PathLike,
    prefix: str,
    *,
    fmt: str = "jpeg",
    quality: int = 85,
) -> list[dict]:
    """Write one tile file per sample and return the report's tile dicts.

    Parameters
    ----------
    images_uint8 : array (B, H, W, 3) uint8
        De-normalised model inputs (what the model saw, at input resolution).
    cams : array (B, H, W) float in [0, 1]
        NaN rows (invalid CAMs) are not drawn; the tile shows ``info["reason"]`` instead.
    infos : sequence of dict, length B
        ``sample_id``, ``group``, ``true``, ``pred``, ``prob``; optional ``reason``,
        ``selected_as``, ``hard``.
    out_dir : path
        Folder for the files (created), usually ``<report>/cams``.
    prefix : str
        File name prefix, e.g. the model name: ``<prefix>_000.jpg``.
    fmt : {"jpeg", "png"}

    Returns
    -------
    list of dict
        ``{"sample_id", "group", "true", "pred", "prob", "file", "reason", "selected_as", "hard"}``
        with ``file`` relative to the parent of ``out_dir`` (``cams/<prefix>_000.jpg``) and
        ``reason`` None for drawn CAMs.
    """
    if fmt not in FORMATS:
        raise MedauditError(f"tile format must be one of {', '.join(FORMATS)} (got '{fmt}')")
    if not (len(images_uint8) == len(cams) == len(infos)):
        raise MedauditError(f"draw_tiles: {len(images_uint8)} images, {len(cams)} CAMs, {len(infos)} infos")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    safe_prefix = safe_name(prefix)
    lut = _colormap_lut()
    tiles = []
    for k, (img, cam, info) in enumerate(zip(images_uint8, cams, infos, strict=True)):
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise MedauditError(f"draw_tiles: image {k} must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
        cam = np.asarray(cam, dtype=np.float32)
        drawn = bool(np.isfinite(cam).all())
        reason = None if drawn else (info.get("reason") or "CAM is NaN")
        tile = render_tile(img, cam if drawn else None, {**info, "reason": reason}, lut=lut)
        name = f"{safe_prefix}_{k:03d}{FORMATS[fmt]}"
        if fmt == "jpeg":
            tile.save(out_dir / name, "JPEG", quality=quality, optimize=True)
        else:
            tile.save(out_dir / name, "PNG", optimize=True)
        tiles.append(
            {
                "sample_id": str(info.get("sample_id")),
                "group": info.get("group"),
                "true": info.get("true"),
                "pred": info.get("pred"),
                "prob": None if info.get("prob") is None else float(info["prob"]),
                "file": f"{out_dir.name}/{name}",
                "reason": reason,
                "selected_as": info.get("selected_as"),
                "hard": info.get("hard"),
            }
        )
    return tiles

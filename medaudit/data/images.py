"""Safe image decoding: one place that opens, bounds, fully decodes and normalises images.

Policy (documented because it changes pixels):

* Images are decoded completely (``Image.load``) so a truncated file fails *here*, naming
  the file, instead of being dropped later (a silently dropped positive changes recall).
* Decompression bombs: PIL's ``DecompressionBombWarning``/``Error`` are turned into
  :class:`~medaudit.errors.MedauditError`, and images above :data:`MAX_PIXELS` are refused
  before decoding.
* Modes are normalised to ``"L"`` (grayscale) or ``"RGB"``:

  - 16/32-bit integer and float grayscale (``I;16*``, ``I``, ``F``) → ``L`` by linearly
    scaling the image's *actual* range ``[min, max]`` to ``[0, 255]`` (a constant image
    becomes all zeros); raw 16-bit values would otherwise clip to white.
  - ``1`` → ``L``; ``LA``/``La`` → ``L`` and ``RGBA``/``RGBa``/``PA``/``P`` with
    transparency → ``RGB``, composited onto **black** (the usual medical background).
  - ``P`` (palette), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` → ``RGB``.
  - EXIF orientation is applied (the image as a viewer shows it); multi-frame files
    (GIF/TIFF stacks) use their first frame.

Content hashes are sha256 over ``"<mode>:<W>x<H>:"`` followed by the normalised pixel
bytes, so a PNG written from an array hashes the same as that array (see
:func:`array_hash`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from medaudit.errors import MedauditError

#: Largest image accepted, in pixels (~67 MP, i.e. 8192 x 8192). Classifier inputs are far
#: smaller; anything bigger is more likely a bomb or a whole-slide image needing tiling.
MAX_PIXELS = 8192 * 8192

#: File extensions treated as images when scanning folders (lower case).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)

_HIGH_DEPTH_GRAY = {"I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;32", "I;32B"}
_ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}


@contextlib.contextmanager
def _truncated_images_refused():
    """Decode with PIL's truncated-image tolerance off, whatever a library set globally.

    WeasyPrint sets ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` when imported; with it, half a JPEG
    decodes as grey pixels and a truncated scan would be audited as if it were whole.
    """
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def is_image_file(path: Path) -> bool:
    """True when ``path`` has an image extension and is not a hidden file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def decode_image(
    path: str | os.PathLike, *, display: str | None = None, max_pixels: int = MAX_PIXELS,
    draft_min_side: int | None = None,
) -> tuple[Image.Image, str]:
    """Open, fully decode and normalise one image file.

    With ``draft_min_side``, a JPEG is decoded at a reduced size by the decoder's DCT scaling
    (``PIL.Image.draft``, scales 1/2, 1/4, 1/8): the smallest scale whose *both* sides are still
    ``>= draft_min_side``, so a following resize to that side only ever shrinks further. The
    pixels differ slightly from a full decode followed by the same resize (measured in
    ``benchmarks/predict_throughput.py --source jpeg``), so a caller that uses it must record it
    where its results are keyed. Other formats, and JPEGs that a 1/2 scale would take below
    ``draft_min_side``, decode exactly as without it.

    Parameters
    ----------
    path : path-like
        The image file.
    display : str, optional
        Name used in error messages (e.g. the sample id); defaults to ``path``.
    max_pixels : int
        Refuse images with more than this many pixels (width x height).
    draft_min_side : int, optional
        JPEG only: decode at the smallest DCT scale keeping width and height ``>=`` this (px).

    Returns
    -------
    image : PIL.Image.Image
        Fully loaded, mode ``"L"`` or ``"RGB"`` (see the module docstring).
    original_mode : str
        The file's mode before normalisation (e.g. ``"I;16"``, ``"RGBA"``).

    Raises
    ------
    MedauditError
        Missing, unreadable, truncated or oversized (bomb) image.
    """
    name = display or str(path)
    try:
        # Escalate PIL's bomb warning to an error just for this call.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise MedauditError(
                        f"{name}: image is {w}x{h} = {w * h} pixels, above the limit of {max_pixels} "
                        "(possible decompression bomb); downscale it before auditing"
                    )
                im.seek(0)
                if draft_min_side is not None and im.format == "JPEG":
                    # Square request: both sides stay >= the side whatever the EXIF orientation.
                    im.draft(im.mode, (int(draft_min_side), int(draft_min_side)))
                with _truncated_images_refused():
                    im.load()
                original_mode = im.mode
                im = ImageOps.exif_transpose(im)
                out = normalise_mode(im)
                out.load()
    except MedauditError:
        raise
    except FileNotFoundError:
        raise MedauditError(f"{name}: image file not found") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise MedauditError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise MedauditError(f"{name}: not a readable image (unknown or corrupt format); fix or remove the file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MedauditError(f"{name}: cannot decode image ({exc}); the file is truncated or corrupt") from None
    return out, original_mode


def open_image(path: str | os.PathLike, *, display: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """:func:`decode_image` without the original mode."""
    return decode_image(path, display=display, max_pixels=max_pixels)[0]


def normalise_mode(im: Image.Image) -> Image.Image:
    """Return ``im`` converted to ``"L"`` or ``"RGB"`` following the module policy."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode in _HIGH_DEPTH_GRAY:
        return _scale_to_l(np.asarray(im))
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        # A palette with a transparent index behaves like RGBA.
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        if im.mode == "RGB":
            return im
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        gray = mode in ("LA", "La")
        arr = np.asarray(im.convert("LA" if gray else "RGBA"), dtype=np.float32)
        alpha = arr[..., -1:] / 255.0
        comp = np.rint(arr[..., :-1] * alpha).astype(np.uint8)
        return Image.fromarray(comp[..., 0] if gray else comp, "L" if gray else "RGB")
    return im.convert("RGB")


def _scale_to_l(arr: np.ndarray) -> Image.Image:
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("image holds NaN or infinite pixel values")
    lo, hi = float(arr.min()), float(arr.max())
    if hi > lo:
        arr = (arr - lo) * (255.0 / (hi - lo))
    else:
        arr = np.zeros_like(arr)
    return Image.fromarray(np.rint(arr).astype(np.uint8), "L")


def pixel_hash(im: Image.Image) -> str:
    """sha256 hex of a normalised image's mode, size and pixel bytes."""
    w, h = im.size
    return hashlib.sha256(f"{im.mode}:{w}x{h}:".encode() + im.tobytes()).hexdigest()


def array_hash(img: np.ndarray) -> str:
    """sha256 hex of one uint8 image array, equal to :func:`pixel_hash` of ``Image.fromarray(img)``.

    Parameters
    ----------
    img : ndarray of uint8, shape (H, W) or (H, W, 3)
    """
    mode = "L" if img.ndim == 2 else "RGB"
    h, w = img.shape[:2]
    return hashlib.sha256(f"{mode}:{w}x{h}:".encode() + np.ascontiguousarray(img).tobytes()).hexdigest()


# -- perceptual hash (near-duplicates) ----------------------------------------------------------

_PHASH_RESIZE = 32  # imagehash.phash: hash_size 8 x highfreq_factor 4
_PHASH_BITS = 8
#: Side of the grey thumbnail kept beside the pHash (2x2 means of the 32x32 resize), used to
#: confirm pHash candidates (:mod:`medaudit.data.neardup`).
THUMBNAIL_SIDE = 16
# Unnormalised DCT-II rows 0..7 for length 32, as scipy.fftpack.dct(type=2, norm=None):
# X[k] = 2 sum_n x[n] cos(pi k (2n + 1) / 2N). Only the 8 lowest frequencies are needed, so two
# small matrix products replace the full 2-D DCT.
_DCT8 = 2.0 * np.cos(np.pi * np.arange(_PHASH_BITS)[:, None] * (2 * np.arange(_PHASH_RESIZE)[None, :] + 1)
                     / (2 * _PHASH_RESIZE))


def perceptual_signature(im: Image.Image) -> tuple[int, np.ndarray]:
    """64-bit DCT perceptual hash (pHash) of an image, and the grey thumbnail that confirms matches.

    The hash is ``imagehash.phash`` (Zauner 2010 / hackerfactor "Looks Like It"): the image in
    grey (PIL ``"L"``), resized to 32x32 with Lanczos, 2-D DCT-II, the top-left 8x8 coefficients
    (DC included), each bit ``coefficient > median`` of those 64, packed row-major with the first
    bit as the most significant, so ``int(str(imagehash.phash(im)), 16)`` gives the same number.
    Coefficients within 1e-6 of zero are set to zero first, so a flat image (all AC coefficients
    zero) hashes deterministically instead of by floating-point noise.

    Parameters
    ----------
    im : PIL.Image.Image
        Mode ``"L"`` or ``"RGB"`` (any mode PIL can convert to ``"L"``).

    Returns
    -------
    phash : int
        In ``[0, 2**64)``.
    thumbnail : ndarray of uint8, shape (16, 16)
        Means of 2x2 blocks of the 32x32 grey resize (rounded).
    """
    hashes, thumbs = _signatures_from_grey(_grey32(im)[None])
    return int(hashes[0]), thumbs[0]


def array_perceptual_signatures(images: np.ndarray, *, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """:func:`perceptual_signature` of each image of a uint8 stack (as ``Image.fromarray``), batched.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, H, W) or (N, H, W, 3)
    chunk : int
        Images per vectorised DCT (bounds the float64 temporaries to ~8 KB an image).

    Returns
    -------
    phashes : ndarray of uint64, shape (N,)
    thumbnails : ndarray of uint8, shape (N, 256)
        Row-major 16x16 thumbnails.
    """
    n = len(images)
    hashes = np.zeros(n, dtype=np.uint64)
    thumbs = np.zeros((n, THUMBNAIL_SIDE * THUMBNAIL_SIDE), dtype=np.uint8)
    for s in range(0, n, chunk):
        grey = np.stack([_grey32(Image.fromarray(img)) for img in images[s:s + chunk]])
        h, t = _signatures_from_grey(grey)
        hashes[s:s + len(h)] = h
        thumbs[s:s + len(h)] = t.reshape(len(h), -1)
    return hashes, thumbs


def _grey32(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("L").resize((_PHASH_RESIZE, _PHASH_RESIZE), Image.LANCZOS), dtype=np.float64)


def _signatures_from_grey(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) uint64 pHashes and (N, 16, 16) uint8 thumbnails from (N, 32, 32) grey resizes."""
    # Two small matmuls, a sort and packbits: the scan calls this once per image, where einsum's
    # path search and np.median's overhead cost 4x the arithmetic (same bits, same thumbnails).
    n = len(grey)
    coef = np.matmul(np.matmul(_DCT8, grey), _DCT8.T).reshape(n, -1)
    coef[np.abs(coef) < 1e-6] = 0.0
    half = _PHASH_BITS * _PHASH_BITS // 2
    middle = np.sort(coef, axis=1)[:, half - 1:half + 1]
    bits = coef > middle.mean(axis=1, keepdims=True)  # the median of 64 values
    hashes = np.packbits(bits, axis=1).view(">u8").ravel()  # first bit most significant
    s = _PHASH_RESIZE // THUMBNAIL_SIDE
    thumbs = grey.reshape(n, THUMBNAIL_SIDE, s, THUMBNAIL_SIDE, s).mean(axis=(2, 4))
    return hashes.astype(np.uint64), np.rint(thumbs).astype(np.uint8)

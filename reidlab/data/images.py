"""Reading images from disk, with errors that name the file.

A corrupt JPEG in a 30,000-image dataset must not end a training run with a bare
``OSError: image file is truncated``: :func:`read_image` says which file it was,
and :func:`verify_images` scans a whole dataset and lists every bad file at the end.

Choices:
- 16-bit greyscale PNGs (PIL modes ``I;16*`` and ``I``) are scaled to 8 bit
  (``round(v * 255 / 65535)``); PIL's own ``convert("RGB")`` clips them, which
  turns almost every pixel white. 16-bit RGB PNGs already open as 8-bit RGB.
- An image larger than ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb, or a
  file that is not a person crop) is an error naming the file, not PIL's bare
  ``DecompressionBombError``.
- :func:`verify_images` has a fast mode (``full_decode=False``) that reads headers
  only: PIL's ``verify()`` (which checks every PNG chunk), the size limit, and for
  JPEG the end-of-image marker near the end of the file, so that zero-byte and
  truncated files are caught without decoding any pixel.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# A JPEG ends with FFD9; a little trailing padding is tolerated.
_JPEG_TAIL_BYTES = 1024
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageReadError(OSError):
    """An image that exists but cannot be decoded (the message names the file)."""


def is_image_file(name: str | os.PathLike) -> bool:
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def _check_pixel_count(image: Image.Image) -> None:
    """Refuse images over PIL's decompression-bomb limit (PIL itself only warns below 2x the limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ImageReadError(
            f"{image.width} x {image.height} pixels is more than PIL.Image.MAX_IMAGE_PIXELS = {limit} "
            "(a decompression bomb, or not a person crop)"
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB; 16-bit greyscale is scaled to 0..255 instead of clipped."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)  # (H, W) 16-bit range
        scaled = ((values * 255 + 32767) // 65535).astype(np.uint8)  # round(v * 255 / 65535)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    return image.convert("RGB")


def read_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as a fully decoded PIL RGB image.

    Raises ``FileNotFoundError`` or :class:`ImageReadError`, both naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            _check_pixel_count(image)
            # to_rgb() decodes every pixel, so a truncated file fails here, not later.
            return to_rgb(image)
    except _DECODE_ERRORS as error:  # ImageReadError (the size check) is an OSError too
        raise ImageReadError(f"cannot read image {path}: {error}") from error


def check_image_header(path: str | os.PathLike) -> None:
    """Header-only check of one image (no pixel decoding); raises like :func:`read_image`.

    Catches missing, zero-byte, unidentifiable, oversized (decompression bomb) and
    truncated files (PNG: chunk CRCs via ``verify()``; JPEG: no end-of-image marker).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ImageReadError(f"cannot read image {path}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            _check_pixel_count(image)
            image_format = image.format
            image.verify()
    except _DECODE_ERRORS as error:  # ImageReadError (the size check) is an OSError too
        raise ImageReadError(f"cannot read image {path}: {error}") from error
    if image_format == "JPEG":
        with open(path, "rb") as handle:
            handle.seek(max(0, size - _JPEG_TAIL_BYTES))
            if b"\xff\xd9" not in handle.read():
                raise ImageReadError(f"cannot read image {path}: truncated JPEG (no end-of-image marker)")


def verify_images(records: Iterable, full_decode: bool = True, progress: bool = True, raise_on_error: bool = True):
    """Check every image; report ALL unreadable ones by name at the end.

    ``records`` may hold :class:`~reidlab.data.records.ImageRecord` objects, paths,
    or a :class:`~reidlab.data.records.ReIDSplit` (all three subsets are scanned).
    ``full_decode=True`` decodes every pixel (:func:`read_image`); ``False`` reads
    headers only (:func:`check_image_header`, several times faster), which still
    catches zero-byte, truncated, unidentifiable and oversized files.
    Returns a list of ``(path, reason)`` for the unreadable files (empty when all
    are fine); with ``raise_on_error`` a non-empty list raises :class:`ImageReadError`
    whose message lists every bad file.
    """
    if hasattr(records, "train") and hasattr(records, "gallery"):
        records = [*records.train, *records.query, *records.gallery]
    paths = [str(getattr(r, "path", r)) for r in records]
    from reidlab.progress import tqdm

    check = read_image if full_decode else check_image_header
    bad: list[tuple[str, str]] = []
    for path in tqdm(paths, desc="verify images", unit="img", disable=not progress):
        try:
            check(path)
        except (FileNotFoundError, ImageReadError) as error:
            bad.append((path, str(error)))
    if bad and raise_on_error:
        listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
        raise ImageReadError(f"{len(bad)} of {len(paths)} images are unreadable:\n{listing}")
    return bad

"""Reading images from disk, with errors that name the file.

A corrupt JPEG in a 30,000-image dataset must not end a training run with a bare
``OSError: image file is truncated``: :func:`read_image` says which file it was,
and :func:`verify_images` scans a whole dataset and lists every bad file at the end.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class ImageReadError(OSError):
    """An image that exists but cannot be decoded (the message names the file)."""


def is_image_file(name: str | os.PathLike) -> bool:
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def read_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as a fully decoded PIL RGB image.

    Raises ``FileNotFoundError`` or :class:`ImageReadError`, both naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            # convert() decodes every pixel, so a truncated file fails here, not later.
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error


def verify_images(records: Iterable, progress: bool = True, raise_on_error: bool = True):
    """Decode every image; report ALL unreadable ones by name at the end.

    ``records`` may hold :class:`~reidlab.data.records.ImageRecord` objects, paths,
    or a :class:`~reidlab.data.records.ReIDSplit` (all three subsets are scanned).
    Returns a list of ``(path, reason)`` for the unreadable files (empty when all
    are fine); with ``raise_on_error`` a non-empty list raises :class:`ImageReadError`
    whose message lists every bad file.
    """
    if hasattr(records, "train") and hasattr(records, "gallery"):
        records = [*records.train, *records.query, *records.gallery]
    paths = [str(getattr(r, "path", r)) for r in records]
    from tqdm.auto import tqdm

    bad: list[tuple[str, str]] = []
    for path in tqdm(paths, desc="verify images", unit="img", disable=not progress):
        try:
            read_image(path)
        except (FileNotFoundError, ImageReadError) as error:
            bad.append((path, str(error)))
    if bad and raise_on_error:
        listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
        raise ImageReadError(f"{len(bad)} of {len(paths)} images are unreadable:\n{listing}")
    return bad

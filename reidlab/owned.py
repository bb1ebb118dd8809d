"""Deletion and overwriting confined to what the project can prove it wrote.

Every place that removes files on the word of a file it reads passes each name through these
checks first (the synthetic generator's ``meta.json``: :func:`safe_relative`; an export's marker:
:func:`owned_path`; ``--overwrite`` removes only the fixed names of ``RUN_FILES``):
a relative name without ``..``, which resolves (symlinks followed) to a path strictly inside the
folder the project owns. Anything else is refused with one line, and nothing is deleted.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath


class UnsafePathError(ValueError):
    """A listed file that would lie outside the folder it is listed for."""


def safe_relative(name) -> bool:
    """Whether ``name`` is a plain relative POSIX path that stays inside its folder (no ``..``, no
    absolute path, no backslash, nothing to normalise away)."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and path.as_posix() == name


def owned_path(folder: str | Path, name: str, what: str = "a marker") -> Path:
    """``folder / name``, after checking that it lies strictly inside ``folder`` (symlinks resolved);
    :class:`UnsafePathError` naming the file otherwise."""
    folder = Path(folder).resolve()
    if not safe_relative(name):
        raise UnsafePathError(f"{what} in {folder} lists {name!r}, which is not a file inside that folder: "
                              "refused, nothing was deleted")
    path = folder / name
    if folder not in path.parent.resolve().parents and path.parent.resolve() != folder:
        raise UnsafePathError(f"{what} in {folder} lists {name!r}, which leads outside the folder (a link): "
                              "refused, nothing was deleted")
    return path

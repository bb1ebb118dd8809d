"""Checkpoints and run folders that never lose or endanger a user's data.

* **Safe to load.** A checkpoint holds only tensors and plain Python values (the
  RNG states as tensors and tuples, the config as a dict), so it loads with
  ``torch.load(weights_only=True)``, which cannot run code. A file that needs
  more (an old reidlab checkpoint, or a pickle from elsewhere) is refused unless
  ``trust=True`` (``--trust-checkpoint``), with a warning.
* **Atomic.** :func:`atomic_save` writes a hidden temporary file beside the
  target and renames it; on failure the temporary file is removed, and a full
  disk says ``no space left on DEVICE writing PATH``. Stale temporaries of
  killed runs are removed at the next start (:func:`remove_stale_temporaries`).
* **Run folders.** :func:`prepare_run_folder` refuses a folder that already
  holds a run unless told to resume or overwrite it, and overwriting removes
  only the files a run writes (:data:`RUN_FILES`), nothing else.
"""
from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"
# What a training run writes into its folder: the only names --overwrite removes.
RUN_FILES = (CHECKPOINT_NAME, LOG_NAME, CONFIG_NAME, METRICS_NAME, "nonfinite")
TMP_TAG = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, foreign, untrusted, or for another model."""


class RunFolderError(FileExistsError):
    """The output folder already holds a run and neither resume nor overwrite was asked for."""


class DiskFullError(OSError):
    """Writing a file failed for lack of space; the message names the device and the file."""


class FolderBusyError(RuntimeError):
    """Another live process holds the folder's lock (one trainer per run folder)."""


LOCK_NAME = ".reidlab.lock"


class FolderLock:
    """An exclusive OS lock (``flock``) on ``FOLDER/.reidlab.lock``: one trainer per run folder, one
    ``reidlab ablate`` per batch folder. The operating system releases it when the process ends, by
    a kill -9 too, so a killed run never leaves the folder locked. The file keeps the holder's pid
    and command for the refusal's message; it is never deleted (deleting a lock file races)."""

    def __init__(self, folder: str | Path, what: str = "run folder"):
        self.folder, self.what, self._fd = Path(folder), what, None

    def acquire(self) -> "FolderLock":
        import fcntl
        import sys

        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode("utf-8", errors="replace").strip() or "unknown process"
            os.close(fd)
            raise FolderBusyError(f"{self.what} {self.folder} is in use by another reidlab process ({holder}); "
                                  "wait for it to finish or stop it, or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    def __del__(self):
        self.release()


# ----------------------------------------------------------------------------- RNG states (plain types)
def rng_state() -> dict:
    """Python, numpy and torch RNG states as tensors and plain values (loadable with weights_only)."""
    key, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),  # (int, tuple of ints, float | None)
        "numpy": {"key": key, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy = state["numpy"]
    if isinstance(numpy, dict):
        np.random.set_state((numpy["key"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                             numpy["has_gauss"], numpy["cached_gaussian"]))
    else:  # checkpoints written before the weights_only format
        np.random.set_state(numpy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain(value):
    """``value`` with numpy arrays and scalars turned into tensors and Python numbers (weights_only-safe)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# ----------------------------------------------------------------------------- writing
def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)  # torch's zip writer reports a full disk as a failed enforce
    return isinstance(error, RuntimeError) and ("unexpected pos" in text or "file write failed" in text)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}")


def _write_atomically(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(error):
            raise DiskFullError(errno.ENOSPC, f"no space left on {_mount_point(path.parent)} writing {path}") from error
        raise
    return path


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never a half-written
    file, and no temporary left behind when writing fails (a full disk raises :class:`DiskFullError`)."""
    return _write_atomically(Path(path), lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: str | Path) -> Path:
    return _write_atomically(Path(path), lambda tmp: tmp.write_text(text))


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the hidden temporaries (``.NAME.tmpPID``) that killed runs left in ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and p.name.startswith(".") and TMP_TAG in p.name
             and p.name[1:].split(TMP_TAG)[0] in RUN_FILES]
    for p in stale:
        p.unlink(missing_ok=True)
        log.info("removed a partial file left by an interrupted run: %s", p)
    return stale


# ----------------------------------------------------------------------------- reading
def load_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """A training checkpoint (``checkpoint.pt`` or the run folder holding it) as a dict.

    Loaded with ``weights_only=True``: no code in the file can run. A file that
    needs arbitrary unpickling is refused with a :class:`CheckpointError`
    unless ``trust=True``. Truncated, empty and foreign files give a one-line
    :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint (a write that never finished?)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save's zip format, or a (legacy) pickle
        raise CheckpointError(f"{path} is not a checkpoint: neither torch's zip format nor a pickle "
                              f"(it starts with {head!r})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" not in str(error) and "Unsupported global" not in str(error):
            raise CheckpointError(f"{path} is not a readable checkpoint: {str(error).splitlines()[0]}") from error
        if not trust:
            raise CheckpointError(
                f"{path} holds Python objects beyond tensors and plain values; loading it could run code from the "
                f"file. Only if you trust its source: --trust-checkpoint (Python: trust=True)"
            ) from error
        log.warning("loading %s with full unpickling (trusted by the caller): it can run code", path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as inner:  # noqa: BLE001 - any failure of a foreign file is the same user error
            raise CheckpointError(f"{path} is not a readable checkpoint: {inner}") from inner
    except Exception as error:  # noqa: BLE001 - a text file gives KeyError from the unpickler: any failure is the same
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or another format: "
                              f"{type(error).__name__}: {first})") from error
    if not isinstance(state, dict) or "cfg" not in state or "model" not in state:
        keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a reidlab training checkpoint (it holds {keys}; expected 'cfg' and 'model')")
    return state


def load_model_weights(model: torch.nn.Module, weights: dict, path: str | Path) -> None:
    """``model.load_state_dict(weights)`` with a short error naming the file when they do not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    mismatched = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or mismatched:
        parts = [f"{len(names)} {what} (e.g. {names[0]})" for what, names in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", mismatched)) if names]
        raise CheckpointError(
            f"{path} does not fit the {type(model).__name__} built from its config: " + ", ".join(parts)
            + ". Was it trained with another depth, preset or number of classes?"
        )
    model.load_state_dict(weights)


# ----------------------------------------------------------------------------- run folders
def run_files_in(folder: Path) -> list[str]:
    return sorted(name for name in RUN_FILES if (folder / name).exists())


def prepare_run_folder(folder: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Make ``folder`` ready for a run and return it.

    * empty or missing: created;
    * holds a run (any of :data:`RUN_FILES`): an error unless ``resume`` (continue it) or
      ``overwrite`` (its run files are removed; any other file in the folder is left alone);
    * stale temporaries of a killed run are removed in every case.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"output folder {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    existing = run_files_in(folder)
    if not existing or resume:
        return folder
    if not overwrite:
        raise RunFolderError(
            f"output folder {folder} already holds a run ({', '.join(existing)}): use --resume to continue it, "
            f"--overwrite to replace it, or another --output-dir"
        )
    for name in existing:
        target = folder / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    log.info("--overwrite: removed the previous run's %s from %s", ", ".join(existing), folder)
    return folder

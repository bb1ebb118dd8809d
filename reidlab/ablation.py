"""Ablation batches: the papers' tables as grids of papermill runs, scheduled on Dask, one results table.

A *run* is one execution of ``notebooks/10_train.ipynb`` (train + evaluate) with one
parameter set; a *batch* is a grid of runs::

    named set (mbgn-table2, ...) or YAML file of parameter sets  x  seeds  +  shared overrides

    reidlab ablate mbgn-table2 --seeds 2 --epochs 4          # embedded Dask LocalCluster
    reidlab ablate my_runs.yaml --scheduler tcp://HOST:8786  # an existing Dask cluster
    reidlab ablate --list

In Python::

    from reidlab.ablation import make_grid, run_batch, collect, summarize
    runs = make_grid(["mbgn-table2"], seeds=2, overrides={"epochs": 4})
    batch = run_batch(runs, "runs/ablation/mbgn-table2")
    summarize(batch.table)          # mean and std over seeds, the paper's figures beside ours

Every run lands in its own folder, named from its parameters (readable part + a hash of
every parameter that changes the result, so the name is stable and unique): the executed
notebook (``notebook.ipynb``), papermill's log with the cell outputs (``papermill.log``),
the trainer's ``checkpoint.pt`` / ``log.jsonl`` / ``config.json``, and ``results.json``
(parameters, metrics, time, images/s, status, error and traceback).

Resume: re-running a batch skips the runs whose ``results.json`` says ``ok`` for the same
parameters and retries the others; an interrupted run continues from its last checkpoint
(the notebook trains with ``resume=True``). A run that fails (an exception, a non-finite
loss, a killed worker, ``timeout`` seconds exceeded) is recorded as failed with its error,
traceback and partial notebook; the other runs go on, and :func:`run_batch` reports which
failed (the CLI exits with 1).

Scheduling is Dask's (``dask.distributed``): each run is one task, executed on a worker as
a child process (``python -m reidlab.ablation _execute ...``, which runs papermill), so a
per-run timeout can stop it and a killed worker does not leave a kernel running. dask and
papermill are imported only when a batch runs (the ``notebooks`` extra).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback as traceback_module
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOK = REPO_ROOT / "notebooks" / "10_train.ipynb"
RESULTS_NAME = "results.json"
PARAMS_NAME = "params.json"
NOTEBOOK_NAME = "notebook.ipynb"
PAPERMILL_LOG = "papermill.log"
RESULTS_SCHEMA = 1

# The parameters of notebooks/10_train.ipynb: name -> (type, default, help). The notebook's
# `parameters` cell states the same (tests/test_ablation.py checks that they agree).
TRAIN_PARAMETERS: dict[str, tuple[type, Any, str]] = {
    "preset": (str, "baseline/bnneck", "a reidlab.presets name; '' to give `model` instead"),
    "model": (str, "", "registered model name; '' takes the preset's"),
    "model_cfg": (str, '{"depth": 18, "pretrained": false}', "JSON dict merged into the preset's model config"),
    "train_cfg": (str, "{}", "JSON dict of TrainConfig fields over the preset's, e.g. '{\"lr_mult\": {\"attention.\": 10}}'"),
    "dataset": (str, "synthetic", "dataset name for reidlab.data.load_dataset"),
    "data_root": (str, "../data/synthetic", "the dataset's folder (relative to the notebook's folder)"),
    "epochs": (int, 2, "training epochs (0: the preset's)"),
    "steps_per_epoch": (int, 10, "cap on steps per epoch (0: whole epochs)"),
    "height": (int, 128, "input height in pixels (0: the preset's)"),
    "width": (int, 64, "input width in pixels (0: the preset's)"),
    "batch_p": (int, 8, "identities per batch, P (0: the preset's)"),
    "batch_k": (int, 4, "images per identity, K (0: the preset's)"),
    "seed": (int, 0, "random seed"),
    "device": (str, "auto", "auto (CUDA when present), cpu, cuda, cuda:1"),
    "output_dir": (str, "", "run folder; '' for ../runs/train/<name from the parameters>"),
    "eval": (bool, True, "evaluate after training"),
    "threads": (int, 0, "torch CPU threads (0: torch's default)"),
    "num_workers": (int, 0, "data-loader worker processes (0: load in the kernel)"),
    "progress": (bool, True, "tqdm progress bars"),
}
# Parameters that say where and how fast a run executes, not what it computes: they are
# left out of a run's identity (its folder name hash and the resume check).
EXECUTION_PARAMETERS = ("output_dir", "device", "threads", "num_workers", "progress")
# Parameters added after the first batches were run: they enter a run's identity only when set,
# so that the folders of earlier batches keep their names and still count as finished.
LATER_PARAMETERS = ("train_cfg",)
# TrainConfig fields that train_cfg may not set: the notebook's own parameters say them.
_TRAIN_CFG_OWN = ("preset", "model", "model_cfg", "dataset", "data_root", "epochs", "max_steps_per_epoch", "height",
                  "width", "batch_p", "batch_k", "seed", "device", "output_dir", "resume", "overwrite", "eval_every",
                  "num_workers", "progress")
METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")

# Named sets: (paper, table) of reidlab.presets.
NAMED_SETS: dict[str, tuple[str, str, str]] = {
    "mbgn-table2": ("mbgn", "Table 2", "MBGN Table 2: Baseline, +G, +AABS, +GSRPA, +CBAM-S, MBGN"),
    "mbgn-table3": ("mbgn", "Table 3", "MBGN Table 3: part strategies (PCB, AABS+PCB, AABS+M, +F, +C, MGN)"),
    "mbgn-table4": ("mbgn", "Table 4", "MBGN Table 4: GSRPA after 1-4 ResNet stages"),
    "msra-table2": ("msra", "Table 2", "MSRA Table 2: CLG levels x theta"),
    "msra-lambda": ("msra", "Fig. 3", "MSRA Fig. 3: lambda sweep 0.0 .. 1.0"),
}
# Where the paper's figure comes from when our dataset is not one the paper reports.
PAPER_DATASET_ORDER = ("market1501", "dukemtmc", "cuhk03_labeled", "cuhk03")
_DATASET_TO_PAPER = {"market1501": ("market1501",), "market": ("market1501",), "dukemtmc": ("dukemtmc",),
                     "duke": ("dukemtmc",), "cuhk03": ("cuhk03_labeled", "cuhk03")}


# ----------------------------------------------------------------------------- parameters
def default_parameters() -> dict[str, Any]:
    return {name: default for name, (_, default, _) in TRAIN_PARAMETERS.items()}


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = TRAIN_PARAMETERS[name][0]
    if name in ("model_cfg", "train_cfg") and isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{where}: parameter {name!r} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{where}: parameter {name!r} must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: parameter {name!r} must be an integer, got {value!r}") from None
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: parameter {name!r} must be a string, got {value!r}")
    return value


def normalize_parameters(values: dict[str, Any], where: str = "parameters") -> dict[str, Any]:
    """The notebook's defaults updated with ``values``, each checked and converted to its type.

    An unknown name is an error naming it (papermill itself only warns and ignores it).
    ``model_cfg`` may be a dict; it is stored as canonical JSON.
    """
    unknown = sorted(set(values) - set(TRAIN_PARAMETERS))
    if unknown:
        raise ValueError(f"{where}: unknown parameter(s) {unknown}; known: {', '.join(TRAIN_PARAMETERS)}")
    out = default_parameters()
    for name, value in values.items():
        out[name] = _coerce(name, value, where)
    out["model_cfg"] = json.dumps(parse_model_cfg(out["model_cfg"], where), sort_keys=True)
    out["train_cfg"] = json.dumps(parse_model_cfg(out["train_cfg"], where, "train_cfg"), sort_keys=True)
    return out


def parse_model_cfg(text: str | dict, where: str = "parameters", name: str = "model_cfg") -> dict:
    if isinstance(text, dict):
        return dict(text)
    if not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: {name} is not valid JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        example = '{"depth": 18}' if name == "model_cfg" else '{"lr": 0.0003}'
        raise ValueError(f"{where}: {name} must be a JSON object like '{example}', got {text!r}")
    return value


def run_identity(params: dict[str, Any]) -> str:
    """8 hex digits over every parameter that changes the result (not output_dir, device, threads, ...)."""
    keep = {k: v for k, v in sorted(params.items()) if k not in EXECUTION_PARAMETERS
            and not (k in LATER_PARAMETERS and v == TRAIN_PARAMETERS[k][1])}
    return hashlib.sha1(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:8]


def _slug(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._+=-]+", "-", str(text).replace("/", "-"))
    return re.sub(r"-{2,}", "-", text).strip("-.") or "run"


def _compact(value: Any) -> str:
    """A model_cfg / train_cfg value for a folder name: dicts and lists as compact JSON."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)


def run_name(params: dict[str, Any], keys: Sequence[str] = (), base: dict[str, Any] | None = None) -> str:
    """A folder name for a run: readable (preset or model, the ``keys`` that define it, seed) and
    unique (a hash of every parameter that changes the result). Of ``model_cfg`` / ``train_cfg``
    only the items that differ from ``base`` (the batch's shared parameters) are named.

        >>> run_name(normalize_parameters({"preset": "mbgn/table2/Baseline+G", "seed": 1}))
        'mbgn-table2-Baseline+G_seed1_...'
    """
    parts = [params.get("preset") or params.get("model") or "run"]
    for key in keys:
        if key in ("preset", "model", "seed"):
            continue
        value = params[key]
        if key in ("model_cfg", "train_cfg"):  # only what differs from the batch's shared value (``base``)
            shared = parse_model_cfg((base or {}).get(key, "{}"), name=key)
            parts += [f"{k}={_compact(v)}" for k, v in sorted(parse_model_cfg(value, name=key).items())
                      if k not in shared or shared[k] != v]
        else:
            parts.append(f"{key}={value}")
    readable = _slug("_".join(str(p) for p in parts))[:90]
    return f"{readable}_seed{params['seed']}_{run_identity(params)}"


# ----------------------------------------------------------------------------- what a run trains
def resolve_preset(name: str):
    """The :class:`reidlab.presets.Preset` called ``name``; an unknown name is a ValueError with close matches."""
    from reidlab.presets import get_preset, list_presets

    try:
        return get_preset(name)
    except KeyError:
        close = difflib.get_close_matches(name, list_presets(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown preset {name!r}.{hint} All presets: reidlab.presets.list_presets()") from None


def train_config_from_params(params: dict[str, Any], default_output_root: str | Path = "../runs/train"):
    """The :class:`~reidlab.config.TrainConfig` of one notebook run.

    The preset fills model, model_cfg and the paper's train settings; ``model_cfg`` is merged
    into the preset's by :class:`~reidlab.config.TrainConfig` (its keys win, a key set to
    ``null`` is removed); the size/schedule parameters override the preset unless 0. The run trains
    with ``resume=True``: a re-run continues from the folder's checkpoint, a fresh folder
    starts from scratch. A folder that holds a run with other settings is an error.
    """
    from reidlab.config import TrainConfig, merge_dicts

    params = normalize_parameters(params)
    user_cfg = parse_model_cfg(params["model_cfg"])
    values: dict[str, Any] = {}
    if params["preset"]:
        preset = resolve_preset(params["preset"])
        if params["model"] and params["model"] != preset.model:
            raise ValueError(f"parameters: preset {preset.name!r} builds {preset.model!r}; "
                             f"model={params['model']!r} contradicts it (give one of the two)")
        values.update(preset=preset.name, model_cfg=user_cfg)  # TrainConfig merges it into the preset's
    elif params["model"]:
        from reidlab.models import list_models

        if params["model"] not in list_models():
            raise ValueError(f"parameters: unknown model {params['model']!r}; known: {', '.join(list_models())}")
        values.update(model=params["model"], model_cfg=merge_dicts({}, user_cfg))
    else:
        raise ValueError("parameters: give a preset (reidlab.presets.list_presets()) or a model name")
    train_cfg = parse_model_cfg(params["train_cfg"], name="train_cfg")
    clash = sorted(set(train_cfg) & set(_TRAIN_CFG_OWN))
    if clash:
        raise ValueError(f"parameters: train_cfg may not set {clash}: they are the notebook's own parameters")
    values.update(train_cfg)
    for name in ("epochs", "height", "width", "batch_p", "batch_k"):
        if params[name] < 0:
            raise ValueError(f"parameters: {name} must be >= 0 (0: the preset's), got {params[name]}")
        if params[name] > 0:
            values[name] = params[name]
    if params["steps_per_epoch"] < 0:
        raise ValueError(f"parameters: steps_per_epoch must be >= 0, got {params['steps_per_epoch']}")
    output_dir = params["output_dir"] or str(Path(default_output_root) / run_name(params))
    values.update(
        dataset=params["dataset"], data_root=params["data_root"] or None, seed=params["seed"],
        device=params["device"], output_dir=output_dir, resume=True,
        max_steps_per_epoch=params["steps_per_epoch"] or None,
        eval_every=0 if params["eval"] else -1,  # 0: evaluate after the last epoch only; -1: never
        num_workers=params["num_workers"], progress=params["progress"],
    )
    cfg = TrainConfig.from_dict(values)
    check_output_dir(cfg)
    return cfg


_NOT_COMPARED = ("resume", "overwrite", "output_dir", "device", "num_workers", "progress", "log_every")


def check_output_dir(cfg) -> None:
    """Refuse to continue a run folder whose ``config.json`` was written for other settings."""
    path = Path(cfg.output_dir) / "config.json"
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # unreadable: the trainer rewrites it
    new = json.loads(json.dumps(cfg.to_dict()))  # tuples -> lists, as in the file
    differ = sorted(k for k in new if k not in _NOT_COMPARED and k in old and old[k] != new[k])
    if differ:
        raise ValueError(f"output_dir {cfg.output_dir} holds a run with other settings (differs in: "
                         f"{', '.join(differ)}); choose another output_dir ('' names one from the parameters) or remove it")


# ----------------------------------------------------------------------------- results records
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_write_json(data: dict, path: Path) -> Path:
    from reidlab.engine.checkpoint import atomic_write_text

    return atomic_write_text(json.dumps(data, indent=2, default=_json_default), path)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (Path, tuple, set)):
        return str(value) if isinstance(value, Path) else list(value)
    return str(value)


def read_results(folder: str | Path) -> dict | None:
    """A run folder's ``results.json`` as a dict, or None when absent or unreadable."""
    path = Path(folder) / RESULTS_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_finished(folder: str | Path, params: dict[str, Any] | None = None) -> bool:
    """True when ``folder`` holds a valid ``ok`` results record (for ``params``, when given)."""
    record = read_results(folder)
    if not record or record.get("status") != "ok" or record.get("schema") != RESULTS_SCHEMA:
        return False
    if params is not None and record.get("run_id") != run_identity(normalize_parameters(params)):
        return False
    metrics = record.get("metrics") or {}
    wants_eval = (record.get("params") or {}).get("eval", True)
    return not wants_eval or all(isinstance(metrics.get(m), (int, float)) and math.isfinite(metrics[m]) for m in ("rank1", "mAP"))


def failure_record(params: dict[str, Any], error: str, traceback: str | None = None, **extra) -> dict:
    params = normalize_parameters(params)
    return {"schema": RESULTS_SCHEMA, "status": "failed", "error": error, "traceback": traceback,
            "params": params, "run_id": run_identity(params), "metrics": {}, "finished": _now(),
            "host": socket.gethostname(), **extra}


class RunRecorder:
    """Times one notebook run and writes its ``results.json``: ``ok`` with the metrics, or ``failed``
    with the error and traceback when the ``with`` block raises (the exception still propagates,
    so papermill marks the cell and stops).

        with RunRecorder(params, cfg) as run:
            result = trainer.fit()
            run.record(result.history, result.metrics)
    """

    def __init__(self, params: dict[str, Any], cfg=None):
        self.params = normalize_parameters(params)
        self.cfg = cfg
        self.output_dir = Path(cfg.output_dir if cfg is not None else self.params["output_dir"] or ".")
        self.history: pd.DataFrame | None = None
        self.metrics: dict | None = None
        self.result: dict | None = None
        self.device: str | None = None

    def __enter__(self) -> "RunRecorder":
        self.started = _now()
        self._t0 = time.perf_counter()
        return self

    def record(self, history: pd.DataFrame | None, metrics: dict | None, device: str | None = None) -> None:
        """What the run produced: its per-epoch log, its metrics and the device it ran on."""
        self.history, self.metrics = history, metrics
        self.device = device

    def _base(self) -> dict:
        import platform

        base = {"schema": RESULTS_SCHEMA, "params": self.params, "run_id": run_identity(self.params),
                "config": self.cfg.to_dict() if self.cfg is not None else None,
                "started": self.started, "finished": _now(), "wall_seconds": round(time.perf_counter() - self._t0, 3),
                "host": socket.gethostname(), "python": platform.python_version()}
        try:
            import torch

            base["torch"] = torch.__version__
            base["device"] = self.device or (self.cfg.device if self.cfg is not None else None)
        except ImportError:  # pragma: no cover
            pass
        out = self.output_dir
        base["paths"] = {"run_dir": str(out.resolve()), "checkpoint": str((out / "checkpoint.pt").resolve()),
                         "log": str((out / "log.jsonl").resolve()), "config": str((out / "config.json").resolve())}
        return base

    def __exit__(self, exc_type, exc, tb) -> bool:
        record = self._base()
        if exc is None:
            record.update(status="ok", error=None, traceback=None, **training_figures(self.history))
            metrics = {k: float(v) for k, v in (self.metrics or {}).items() if k in METRICS}
            if self.params["eval"] and not all(math.isfinite(metrics.get(m, math.nan)) for m in ("rank1", "mAP")):
                record.update(status="failed", error=f"evaluation gave no finite rank1/mAP: {metrics}")
            record["metrics"] = metrics
        else:
            record.update(status="failed", error=f"{exc_type.__name__}: {exc}".splitlines()[0][:2000],
                          traceback="".join(traceback_module.format_exception(exc_type, exc, tb)),
                          metrics={}, **training_figures(self.history))
        self.result = record
        _atomic_write_json(record, self.output_dir / RESULTS_NAME)
        return False


def training_figures(history: pd.DataFrame | None) -> dict:
    """train_seconds (sum of epoch times), images_per_s (images / seconds), epochs and last loss from a run's log."""
    if history is None or len(history) == 0 or "epoch_s" not in history:
        return {"train_seconds": None, "images_per_s": None, "epochs_done": 0, "final_loss": None}
    seconds = float(history["epoch_s"].sum())
    images = float((history["images_per_s"] * history["epoch_s"]).sum()) if "images_per_s" in history else math.nan
    return {"train_seconds": round(seconds, 3), "images_per_s": round(images / seconds, 3) if seconds > 0 else None,
            "epochs_done": int(history["epoch"].max()),
            "final_loss": float(history["loss"].iloc[-1]) if "loss" in history else None}


# ----------------------------------------------------------------------------- grids
@dataclass
class RunSpec:
    """One run of a batch: its normalized parameters and its folder name."""
    params: dict[str, Any]
    name: str

    def to_dict(self) -> dict:
        return {"name": self.name, "params": self.params}


def list_sets() -> pd.DataFrame:
    """The named sets: name, paper, table, number of runs per seed, presets."""
    from reidlab.presets import list_presets

    rows = []
    for name, (paper, table, description) in NAMED_SETS.items():
        presets = list_presets(paper, table)
        rows.append({"set": name, "paper": paper, "table": table, "runs": len(presets),
                     "description": description, "presets": ", ".join(presets)})
    return pd.DataFrame(rows)


def load_param_sets(source: str | Path) -> tuple[list[dict], dict]:
    """The parameter sets of a named set or a YAML file: ``(entries, common)``.

    YAML: a list of parameter dicts, or ``{"common": {...}, "runs": [...]}`` where ``common``
    applies to every run (an entry's own keys win)::

        common: {epochs: 4}
        runs:
          - preset: mbgn/table2/Baseline
          - {preset: mbgn/table2/MBGN, model_cfg: {attention: null}}
    """
    from reidlab.presets import list_presets

    text = str(source)
    if text in NAMED_SETS:
        paper, table, _ = NAMED_SETS[text]
        return [{"preset": name} for name in list_presets(paper, table)], {}
    path = Path(text)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ValueError(f"{text!r} is neither a named set ({', '.join(NAMED_SETS)}) nor a .yaml file")
    if not path.exists():
        raise FileNotFoundError(f"parameter-set file not found: {path}")
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    common: dict = {}
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"common", "runs"})
        if unknown or "runs" not in data:
            raise ValueError(f"{path}: expected a list of parameter sets or the keys 'common' and 'runs', got {sorted(data)}")
        common, data = data.get("common") or {}, data["runs"]
        if not isinstance(common, dict):
            raise ValueError(f"{path}: 'common' must be a mapping of parameters")
    if not isinstance(data, list) or not data or not all(isinstance(e, dict) for e in data):
        raise ValueError(f"{path}: 'runs' must be a non-empty list of parameter mappings")
    for i, entry in enumerate([common, *data]):
        normalize_parameters(entry, where=f"{path} ({'common' if i == 0 else f'run {i}'})")
    return [dict(e) for e in data], dict(common)


def make_grid(sources: Iterable[str | Path], seeds: int | Sequence[int] = 1,
              overrides: dict[str, Any] | None = None) -> list[RunSpec]:
    """Parameter sets x seeds with shared overrides, as :class:`RunSpec` s (duplicates dropped).

    Precedence, lowest first: the notebook's defaults, a YAML file's ``common``, ``overrides``
    (the command line's shared options), an entry's own keys (what the ablation varies).
    An entry that sets ``seed`` runs with that seed only.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds: need at least one seed")
    overrides = dict(overrides or {})
    normalize_parameters(overrides, where="overrides")
    runs: dict[str, RunSpec] = {}
    for source in sources:
        entries, common = load_param_sets(source)
        for entry in entries:
            for seed in ([entry["seed"]] if "seed" in entry else seed_list):
                given = {**common, **overrides, **entry, "seed": seed}
                if given.get("model") and "preset" not in given:
                    given["preset"] = ""  # a model named without a preset: not the notebook's default preset
                params = normalize_parameters(given, where=str(source))
                name = run_name(params, keys=sorted(entry), base={**common, **overrides})
                runs.setdefault(name, RunSpec(params, name))
    if not runs:
        raise ValueError("the batch has no runs")
    return list(runs.values())


# ----------------------------------------------------------------------------- one run, on a worker
def _kill_tree(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process ``pid`` and its descendants, SIGKILL what is left after ``grace`` s."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = parent.children(recursive=True) + [parent]
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _last_error_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if re.match(r"^\s*[A-Za-z_.]*(Error|Exception|Interrupt)\b", line):
            return line.strip()[:2000]
    return ""


def _task_cancelled() -> bool:
    """True when this Dask task was cancelled or released (its batch stopped); False outside Dask."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        task = get_worker().state.tasks.get(thread_state.key)
    except (ImportError, ValueError, AttributeError):
        return False
    return task is None or task.state in ("cancelled", "released", "forgotten")


def execute_run(run: dict, notebook: str, timeout: float | None = None, gpus: int = 0) -> dict:
    """Execute one run (``RunSpec.to_dict()``) in its folder; returns its results record.

    Runs on a Dask worker: papermill executes the notebook in a child process with its
    stdout/stderr in ``papermill.log``; past ``timeout`` seconds the child and its kernel are
    stopped. When the notebook did not write a record (a crash, a timeout, a kill), one is
    written here with the error and the log's tail as traceback.
    """
    import fcntl

    params = run["params"]
    folder = Path(params["output_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        # One attempt per folder at a time: a run left going by a stopped batch is waited for, not doubled.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_finished(folder, params):
            return read_results(folder)
        return _execute_locked(run, folder, notebook, timeout, gpus)


def _execute_locked(run: dict, folder: Path, notebook: str, timeout: float | None, gpus: int) -> dict:
    params = run["params"]
    (folder / RESULTS_NAME).unlink(missing_ok=True)  # this attempt's record only
    _atomic_write_json(run, folder / PARAMS_NAME)
    env = dict(os.environ)
    if params.get("threads"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(params["threads"])
    if gpus > 1:  # one worker per GPU (embedded cluster): worker i uses GPU i
        try:
            from distributed import get_worker

            env["CUDA_VISIBLE_DEVICES"] = str(int(get_worker().name) % gpus)
        except (ImportError, ValueError, TypeError):
            pass
    command = [sys.executable, "-m", "reidlab.ablation", "_execute", "--notebook", str(notebook),
               "--output", str(folder / NOTEBOOK_NAME), "--params", str(folder / PARAMS_NAME)]
    log_path = folder / PAPERMILL_LOG
    started = time.perf_counter()
    stopped = ""  # why the run was stopped from here, if it was
    with open(log_path, "a") as log:
        log.write(f"\n=== {_now()} attempt on {socket.gethostname()}: {' '.join(command)}\n")
        log.flush()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env,
                                 start_new_session=True)  # a Ctrl-C on the batch's terminal reaches the batch, not the run
        try:
            while True:
                try:
                    code = child.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    if timeout is not None and time.perf_counter() - started > timeout:
                        stopped = f"TimeoutError: the run exceeded its timeout of {timeout:g} s and was stopped"
                    elif _task_cancelled():
                        stopped = "Cancelled: the batch that started this run was stopped"
                    if stopped:
                        _kill_tree(child.pid)
                        code = child.wait()
                        break
        except BaseException:  # the worker is stopping: do not leave the run behind
            _kill_tree(child.pid)
            raise
    record = read_results(folder)
    if code == 0 and record is not None:
        return record
    if record is None or record.get("status") != "failed":
        tail = _log_tail(log_path)
        error = stopped or _last_error_line(tail) or f"papermill exited with code {code}"
        record = failure_record(params, error, traceback=tail, wall_seconds=round(time.perf_counter() - started, 3))
        _atomic_write_json(record, folder / RESULTS_NAME)
    return record


def _execute_child(argv: list[str]) -> int:
    """``python -m reidlab.ablation _execute``: papermill in this process, with a watchdog that stops
    the kernel and exits when the parent (the Dask worker) goes away."""
    import psutil

    parser = argparse.ArgumentParser(prog="reidlab.ablation _execute")
    parser.add_argument("--notebook", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--params", required=True)
    args = parser.parse_args(argv)
    parent = os.getppid()

    def stop(*_):
        for proc in psutil.Process().children(recursive=True):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        os._exit(143)

    def watch_parent():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                stop()

    threading.Thread(target=watch_parent, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    import papermill as pm

    run = json.loads(Path(args.params).read_text())
    try:
        pm.execute_notebook(args.notebook, args.output, parameters=run["params"], cwd=str(Path(args.output).parent),
                            progress_bar=False, log_output=True)
    except pm.PapermillExecutionError as err:
        print(f"{err.ename}: {err.evalue}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- batches
@dataclass
class ClusterPlan:
    workers: int
    threads_per_run: int
    gpus: int = 0


def plan_local_cluster(runs: int, workers: int | None = None, threads_per_run: int | None = None,
                       cores: int | None = None, gpus: int | None = None) -> ClusterPlan:
    """Workers x threads of the embedded cluster: one worker per GPU when there are several;
    on CPU, runs of ``threads_per_run`` threads (default min(4, cores)) and cores // threads
    workers, so that workers x threads never exceeds the cores."""
    cores = cores or os.cpu_count() or 1
    if gpus is None:
        try:
            import torch

            gpus = torch.cuda.device_count()
        except ImportError:  # pragma: no cover
            gpus = 0
    if threads_per_run is not None and threads_per_run < 1:
        raise ValueError(f"--threads-per-run must be >= 1, got {threads_per_run}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if gpus > 1 and workers is None:
        workers = gpus
    if threads_per_run is None:
        threads_per_run = max(1, cores // workers) if workers else min(4, cores)
    if workers is None:
        workers = max(1, cores // threads_per_run)
    return ClusterPlan(workers=max(1, min(workers, runs)), threads_per_run=threads_per_run, gpus=gpus if gpus > 1 else 0)


@dataclass
class BatchResult:
    table: pd.DataFrame  # collect(output_dir): one row per run of the folder
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished before this call
    failed: list[str] = field(default_factory=list)
    output_dir: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def prepare_data(runs: Sequence[RunSpec]) -> None:
    """Generate each synthetic dataset a batch needs once, before the runs start (they would race)."""
    roots = {r.params["data_root"] for r in runs if r.params["dataset"] == "synthetic"}
    for root in sorted(roots):
        from reidlab.data import load_dataset

        load_dataset("synthetic", root)


def resolve_run(run: RunSpec, notebook: str | Path, output_dir: str | Path) -> RunSpec:
    """``run`` with absolute paths (the runs execute in their own folders, maybe on other machines).

    The notebook's default ``data_root`` is relative to the notebook's folder. The folder name's
    hash is recomputed over the resolved parameters, so that it is the ``run_id`` the run records:
    a batch re-run on another data folder gets new run folders instead of colliding with the old.
    """
    params = dict(run.params)
    if params["data_root"]:
        root = Path(params["data_root"]).expanduser()
        if params["data_root"] == TRAIN_PARAMETERS["data_root"][1] and not root.is_absolute():
            root = Path(notebook).parent / root
        params["data_root"] = str(root.resolve())
    name = f"{run.name.rsplit('_', 1)[0]}_{run_identity(params)}"
    return RunSpec(dict(params, output_dir=str(Path(output_dir) / name)), name)


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """A ValueError in one line when nothing answers at the Dask scheduler ``address``
    (``tcp://HOST:PORT``, or ``HOST:PORT``): found in seconds, before a batch writes anything."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or parts.port is None:
        raise ValueError(f"--scheduler {address!r}: expected tcp://HOST:PORT (a Dask scheduler's address)")
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
    except OSError as error:
        raise ValueError(f"cannot reach a Dask scheduler at {address} ({error.strerror or error}); start one "
                         "(`dask scheduler`) or leave out --scheduler for the embedded cluster") from None


def run_batch(runs: Sequence[RunSpec], output_dir: str | Path, scheduler: str | None = None,
              workers: int | None = None, threads_per_run: int | None = None, timeout: float | None = None,
              notebook: str | Path | None = None, progress: bool = True, out=None) -> BatchResult:
    """Run a batch on Dask; returns the collected table and which runs ran, were skipped or failed.

    ``scheduler``: address of an existing Dask scheduler (``tcp://HOST:PORT``); None starts an
    embedded LocalCluster on this machine (:func:`plan_local_cluster`). ``timeout``: seconds
    per run. Runs already finished in ``output_dir`` are skipped; failed and interrupted ones run again.
    """
    out = out or sys.stdout
    notebook = Path(notebook or DEFAULT_NOTEBOOK).resolve()
    if not notebook.exists():
        raise FileNotFoundError(f"train notebook not found: {notebook} (pass --notebook PATH)")
    output_dir = Path(output_dir).resolve()
    if scheduler:
        check_scheduler(scheduler)  # before anything is written
    from reidlab.engine.checkpoint import FolderLock

    with FolderLock(output_dir, "batch folder"):  # one `reidlab ablate` per batch folder
        return _run_batch(runs, output_dir, scheduler, workers, threads_per_run, timeout, notebook, progress, out)


def _run_batch(runs, output_dir: Path, scheduler, workers, threads_per_run, timeout, notebook: Path, progress,
               out) -> BatchResult:
    started = time.perf_counter()
    specs = [resolve_run(run, notebook, output_dir) for run in runs]
    _atomic_write_json({"created": _now(), "runs": [s.to_dict() for s in specs]}, output_dir / "batch.json")
    skipped = [s.name for s in specs if is_finished(output_dir / s.name, s.params)]
    todo = [s for s in specs if s.name not in skipped]
    print(f"batch {output_dir}: {len(specs)} runs, {len(skipped)} already finished, {len(todo)} to run", file=out)
    failed: list[str] = []
    if todo:
        prepare_data(todo)
        failed = _run_on_dask(todo, notebook, scheduler, workers, threads_per_run, timeout, progress, out)
    table = collect(output_dir)
    result = BatchResult(table, ran=[s.name for s in todo], skipped=skipped, failed=failed, output_dir=output_dir,
                         seconds=time.perf_counter() - started)
    print(summary_text(result), file=out)
    return result


def _run_on_dask(todo, notebook, scheduler, workers, threads_per_run, timeout, progress, out) -> list[str]:
    from distributed import Client, LocalCluster, wait
    from reidlab.progress import tqdm

    cluster = None
    gpus = 0
    quiet = logging.getLogger("distributed")  # its INFO lines (and the traceback it logs when a
    level = quiet.level                       # client closes) would bury the progress and the summary
    quiet.setLevel(max(logging.WARNING, level))
    if scheduler:
        client = Client(scheduler, timeout="20s")
        threads = threads_per_run or 0
        where = f"scheduler {scheduler} ({len(client.scheduler_info().get('workers', {}))} workers)"
    else:
        plan = plan_local_cluster(len(todo), workers, threads_per_run)
        cluster = LocalCluster(n_workers=plan.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, memory_limit=0, silence_logs=logging.WARNING)
        client = Client(cluster)
        threads, gpus = plan.threads_per_run, plan.gpus
        where = f"local cluster: {plan.workers} worker(s) x 1 run, {threads} thread(s) per run" + (f", {gpus} GPUs" if gpus else "")
    print(f"running {len(todo)} run(s) on the {where}", file=out)
    futures = {}
    failed: list[str] = []
    try:
        for spec in todo:
            params = dict(spec.params, progress=False)
            if threads and not params["threads"]:
                params["threads"] = threads
            run = RunSpec(params, spec.name).to_dict()
            future = client.submit(execute_run, run, str(notebook), timeout, gpus, pure=False,
                                   key=f"reidlab-run-{spec.name}-{os.urandom(3).hex()}")
            futures[future] = spec
        pending = set(futures)
        done_ok = 0
        shown: dict = {}
        bar = tqdm(total=len(futures), desc="ablation", unit="run", disable=not progress, file=out,
                   mininterval=1.0 if getattr(out, "isatty", lambda: False)() else 30.0)
        while pending:
            try:
                finished, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished within the second: refresh the display
                finished = set()
            for future in finished:
                spec = futures[future]
                try:
                    record = future.result()
                except Exception as err:  # KilledWorker, a lost connection, ...
                    record = failure_record(spec.params, f"{type(err).__name__}: {err}".splitlines()[0],
                                            traceback="".join(traceback_module.format_exception(err)))
                    _atomic_write_json(record, Path(spec.params["output_dir"]) / RESULTS_NAME)
                if record.get("status") == "ok":
                    done_ok += 1
                else:
                    failed.append(spec.name)
                    bar.write(f"FAILED {spec.name}: {record.get('error')}")
                bar.update(1)
            try:
                processing = client.processing()
                keys = {f.key for f in pending}
                slots = sum(client.nthreads().values())
                running = min(slots, sum(1 for ks in processing.values() for k in ks if k in keys))
            except Exception:  # the scheduler is going away
                running = 0
            postfix = dict(ok=done_ok, failed=len(failed), running=running, queued=len(pending) - running)
            if postfix != shown:
                bar.set_postfix(postfix)
                shown = postfix
        bar.close()
    finally:
        for future in futures:
            future.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
        quiet.setLevel(level)
    return failed


def summary_text(result: BatchResult) -> str:
    table = result.table
    lines = [f"batch {result.output_dir}: {len(result.ran)} ran, {len(result.skipped)} skipped (finished before), "
             f"{len(result.failed)} failed, {result.seconds:.0f} s"]
    if len(table):
        cols = [c for c in ("run", "status", "rank1", "mAP", "paper_rank1", "paper_mAP", "train_seconds", "error") if c in table]
        shown = table[cols].copy()
        if "error" in shown:
            shown["error"] = shown["error"].fillna("").astype(str).str.slice(0, 80)
        lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if result.failed:
        lines.append("failed: " + ", ".join(result.failed) + " (see each folder's results.json and notebook.ipynb)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- tables
def paper_figures(preset: str, dataset: str) -> dict:
    """The paper's reported figures for ``preset``: ``{"paper_dataset", "paper_rank1", "paper_mAP"}`` (%).

    For a dataset the paper reports, its figure; otherwise (synthetic, folder, ...) the first of
    Market-1501, DukeMTMC, CUHK03 the preset has, with ``paper_dataset`` saying which."""
    empty = {"paper_dataset": None, "paper_rank1": math.nan, "paper_mAP": math.nan}
    if not preset:
        return empty
    from reidlab.presets import get_preset

    try:
        reported = get_preset(preset).reported
    except KeyError:
        return empty
    candidates = _DATASET_TO_PAPER.get(str(dataset).lower(), PAPER_DATASET_ORDER)
    for name in candidates:
        if name in reported:
            figures = reported[name]
            return {"paper_dataset": name, "paper_rank1": float(figures.get("rank1", math.nan)),
                    "paper_mAP": float(figures.get("mAP", math.nan))}
    return empty


def collect(folder: str | Path, save: bool = True) -> pd.DataFrame:
    """One row per run folder under ``folder``: parameters as columns, metrics in % (rank1, rank5,
    rank10, mAP, mINP), the paper's figures (paper_dataset, paper_rank1, paper_mAP), training
    seconds, images/s, status ("ok", "failed", "incomplete": started, no record), error and paths.
    With ``save``, also written to ``folder/results.csv`` and ``folder/results.parquet``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"batch folder not found: {folder}")
    rows = []
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        record = read_results(run_dir)
        if record is None:
            try:
                spec = json.loads((run_dir / PARAMS_NAME).read_text())
            except (OSError, json.JSONDecodeError):
                continue  # not a run folder
            record = {"status": "incomplete", "params": spec.get("params", {}), "metrics": {},
                      "error": "no results.json: interrupted or still running"}
        params = record.get("params") or {}
        row: dict[str, Any] = {"run": run_dir.name}
        row.update({k: params.get(k) for k in TRAIN_PARAMETERS})
        metrics = record.get("metrics") or {}
        row.update({m: 100.0 * float(metrics[m]) if m in metrics and metrics[m] is not None else math.nan for m in METRICS})
        row.update(paper_figures(params.get("preset", ""), params.get("dataset", "")))
        for key in ("train_seconds", "images_per_s", "wall_seconds", "epochs_done", "final_loss"):
            value = record.get(key)
            row[key] = float(value) if isinstance(value, (int, float)) else math.nan
        row.update(status=record.get("status"), error=record.get("error"), run_id=record.get("run_id"),
                   finished=record.get("finished"), run_dir=str(run_dir.resolve()),
                   notebook=str((run_dir / NOTEBOOK_NAME).resolve()),
                   checkpoint=str((run_dir / "checkpoint.pt").resolve()), log=str((run_dir / "log.jsonl").resolve()))
        rows.append(row)
    columns = (["run", *TRAIN_PARAMETERS, *METRICS, "paper_dataset", "paper_rank1", "paper_mAP", "train_seconds",
                "images_per_s", "wall_seconds", "epochs_done", "final_loss", "status", "error", "run_id", "finished",
                "run_dir", "notebook", "checkpoint", "log"])
    table = pd.DataFrame(rows, columns=columns)
    if save:
        table.to_csv(folder / "results.csv", index=False)
        try:
            table.to_parquet(folder / "results.parquet", index=False)
        except ImportError as err:  # pyarrow missing: the CSV is still there
            print(f"results.parquet not written ({err}); pip install pyarrow", file=sys.stderr)
    return table


GROUP_EXCLUDE = ("seed", *EXECUTION_PARAMETERS)


EXPORT_MARKER = ".reidlab-export.json"
EXPORTED_FILES = ("batch.json", RESULTS_NAME, PARAMS_NAME, "config.json", "metrics.json", "log.jsonl")
_ABSOLUTE_PATH = re.compile(r'(?<=")/[^"\\]*')  # a JSON string (or an escaped one inside a string) that is a path


def _listed_export_files(target: Path, marker: Path) -> list[str]:
    """The files an earlier export's marker lists, each checked to be one an export writes (a record
    name, at most one folder deep) inside ``target``: a received export whose marker points elsewhere
    (``../x``, an absolute path, a link out) is refused whole, before anything is deleted."""
    from reidlab.owned import UnsafePathError, owned_path

    try:
        listed = json.loads(marker.read_text()).get("files", [])
    except (OSError, ValueError, AttributeError) as error:
        raise UnsafePathError(f"export_records: the marker {marker} cannot be read ({error}): refused, nothing was "
                              "deleted") from error
    if not isinstance(listed, list):
        raise UnsafePathError(f"export_records: the marker {marker} has no file list: refused, nothing was deleted")
    for name in listed:
        owned_path(target, name, what=f"the export marker {EXPORT_MARKER}")
        parts = name.split("/")
        if parts[-1] not in EXPORTED_FILES or len(parts) > 2:
            raise UnsafePathError(f"export_records: the marker in {target} lists {name!r}, which no export writes: "
                                  "refused, nothing was deleted")
    return listed


def export_records(folder: str | Path, destination: str | Path) -> list[Path]:
    """Copy a batch's records to ``destination`` for sharing or shipping with a notebook: per run its
    results, parameters, config, metrics and training log (no checkpoints, no executed notebooks), and
    the batch's ``batch.json``. Absolute paths in them become relative: paths inside the batch to the
    run folder's name, others (data root, weight files) relative to ``destination``.

    ``destination`` must be missing, empty, or an earlier export (it holds this function's marker
    file); of an earlier export only the files its marker lists are replaced or removed. Returns the
    files written. The dashboard (``reidlab.viz.dashboard.load_batch``) reads the copy like the batch,
    except for what needs checkpoints.
    """
    source, target = Path(folder).resolve(), Path(destination).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"batch folder not found: {source}")
    if target == source or source in target.parents:
        raise ValueError(f"export_records: the destination {target} is inside the batch {source}")
    marker = target / EXPORT_MARKER
    previous: list[str] = []
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"export_records: {target} is a file")
        if marker.is_file():
            previous = _listed_export_files(target, marker)
        elif any(target.iterdir()):
            raise FileExistsError(f"export_records: {target} is not empty and holds no earlier export "
                                  f"({EXPORT_MARKER}); give a new or empty folder")

    def relative(match: re.Match) -> str:
        path = Path(match.group(0))
        if path == source or source in path.parents:
            return str(path.relative_to(source)) if path != source else "."
        return os.path.relpath(path, target)

    files: dict[str, str] = {}
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and path.name in EXPORTED_FILES and len(rel.parts) <= 2:
            files[rel.as_posix()] = _ABSOLUTE_PATH.sub(relative, path.read_text())
    if not any(name.endswith(RESULTS_NAME) for name in files):
        raise FileNotFoundError(f"export_records: no run records ({RESULTS_NAME}) in {source}")
    target.mkdir(parents=True, exist_ok=True)
    for name in previous:  # only what the earlier export wrote (each checked by _listed_export_files)
        path = target / name
        if name not in files and path.is_file() and not path.is_symlink():
            path.unlink()
    from reidlab.engine.checkpoint import atomic_write_text

    written = []
    for name, text in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        written.append(atomic_write_text(text, target / name))
    _atomic_write_json({"source": os.path.relpath(source, target), "exported": _now(), "files": sorted(files)}, marker)
    for run_dir in sorted({p.parent for p in (target / n for n in previous)} - {p.parent for p in written}):
        if run_dir != target and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # a run folder the earlier export made and this one no longer has
    return written


def summarize(table: pd.DataFrame, by: Sequence[str] | None = None, metrics: Sequence[str] = ("rank1", "mAP", "mINP"),
              include_failed: bool = False) -> pd.DataFrame:
    """Mean and standard deviation over seeds: one row per group (default: every parameter but
    seed and the execution ones), columns ``<metric>_mean``, ``<metric>_std``, ``seeds`` and the
    paper's figures. Only ``ok`` runs count unless ``include_failed``."""
    if by is None:
        by = [c for c in TRAIN_PARAMETERS if c not in GROUP_EXCLUDE and c in table]
    missing = [c for c in [*by, *metrics] if c not in table]
    if missing:
        raise KeyError(f"summarize: table has no column(s) {missing}")
    rows = table if include_failed else table[table["status"] == "ok"]
    if rows.empty:
        return pd.DataFrame(columns=[*by, "seeds"])
    grouped = rows.groupby(list(by), dropna=False, sort=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["seeds"] = grouped.size()
    for col in ("paper_dataset", "paper_rank1", "paper_mAP", "train_seconds"):
        if col in rows:
            out[col] = grouped[col].mean() if col == "train_seconds" else grouped[col].first()
    return out.reset_index()


# ----------------------------------------------------------------------------- command line
def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value


# The notebook parameters `reidlab ablate` takes as options shared by every run of a batch.
SHARED_OVERRIDES = ("dataset", "data_root", "epochs", "steps_per_epoch", "height", "width", "batch_p", "batch_k",
                    "device", "model_cfg", "train_cfg")


def add_ablate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sets", nargs="*", metavar="SET_OR_YAML",
                        help=f"named sets ({', '.join(NAMED_SETS)}) and/or YAML files of parameter sets")
    parser.add_argument("--list", action="store_true", help="list the named sets and exit")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per parameter set (default: 1)")
    parser.add_argument("--first-seed", type=int, default=0, help="the seed of the first run of each parameter set; the others follow (default: 0)")
    parser.add_argument("--output-dir", help="batch folder (default: runs/ablation/<set names>)")
    shared = parser.add_argument_group("shared overrides (every run; default: the train notebook's)")
    for name in SHARED_OVERRIDES:
        kind, default, help_text = TRAIN_PARAMETERS[name]
        shared.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                            help=f"{help_text} (notebook default: {default})")
    shared.add_argument("--set", dest="extra", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                        help="any other notebook parameter, e.g. --set eval=false")
    run = parser.add_argument_group("execution")
    run.add_argument("--scheduler", help="address of an existing Dask scheduler, tcp://HOST:PORT (default: an embedded local cluster)")
    run.add_argument("--workers", type=int, help="local cluster: concurrent runs (default: cores // threads per run, or one per GPU)")
    run.add_argument("--threads-per-run", type=int, help="torch threads per run (default: min(4, cores))")
    run.add_argument("--timeout", type=float, help="seconds per run before it is stopped and recorded as failed (default: none)")
    run.add_argument("--notebook", default=str(DEFAULT_NOTEBOOK), help="the train notebook (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar over the batch's runs (for logs and CI)")
    parser.add_argument("--export-records", metavar="DEST",
                        help="copy the batch's records (results, configs, logs; no checkpoints) from --output-dir "
                             "to DEST with relative paths, and exit (to share a batch or ship it with a notebook)")


def cmd_ablate(args: argparse.Namespace) -> int:
    """``reidlab ablate``: 0 when every run finished, 1 when some failed, 2 on bad input, 130 when interrupted."""
    from reidlab.engine.checkpoint import FolderBusyError

    previous = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM stops cleanly: cluster closed, runs stopped
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if args.export_records:
            if not args.output_dir:
                raise ValueError("--export-records needs the batch folder as --output-dir")
            written = export_records(args.output_dir, args.export_records)
            print(f"exported {len(written)} files of {args.output_dir} to {args.export_records}")
            return 0
        if args.list:
            pd.set_option("display.max_colwidth", 60)
            print(list_sets().drop(columns="presets").to_string(index=False))
            print("\nor a YAML file: a list of parameter sets, or {common: {...}, runs: [...]}; parameters:")
            for name, (kind, default, help_text) in TRAIN_PARAMETERS.items():
                print(f"  {name:16s} {kind.__name__:4s} {default!r:38s} {help_text}")
            return 0
        if not args.sets:
            raise ValueError("name a set (reidlab ablate --list) or a YAML file of parameter sets")
        overrides = {k: getattr(args, k) for k in SHARED_OVERRIDES if getattr(args, k) is not None}
        overrides.update(dict(args.extra))
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        runs = make_grid(args.sets, seeds=seeds, overrides=overrides)
        output_dir = args.output_dir or str(Path("runs") / "ablation" / "+".join(_slug(Path(s).stem) for s in args.sets))
        result = run_batch(runs, output_dir, scheduler=args.scheduler, workers=args.workers,
                           threads_per_run=args.threads_per_run, timeout=args.timeout, notebook=args.notebook,
                           progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FolderBusyError) as err:
        print(f"reidlab ablate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reidlab ablate: interrupted; finished runs are kept, run the same command again to resume",
              file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"table: {result.output_dir / 'results.csv'} and results.parquet")
    return 0 if result.ok else 1


def add_ablate_command(subparsers) -> argparse.ArgumentParser:
    """Register ``reidlab ablate`` on the CLI's subparsers (reidlab/cli.py)."""
    parser = subparsers.add_parser("ablate", help="run ablation batches (papers' tables x seeds) on Dask",
                                   description=__doc__.splitlines()[0])
    add_ablate_arguments(parser)
    parser.set_defaults(func=cmd_ablate)
    return parser


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """``python -m reidlab.ablation ...`` (the same as ``reidlab ablate ...``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_execute"]:
        return _execute_child(argv[1:])
    parser = argparse.ArgumentParser(prog="reidlab ablate", description=__doc__.splitlines()[0])
    add_ablate_arguments(parser)
    return cmd_ablate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

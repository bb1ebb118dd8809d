"""Ablation batches (reidlab.ablation): parameter handling, names, tables, and real batches of
papermill runs of notebooks/10_train.ipynb on Dask (an embedded LocalCluster, a batch killed
mid-way and resumed, a separately started `dask scheduler` + `dask worker`).

The batches use a tiny synthetic dataset and tiny runs (ResNet-18 at 64x32, 1 epoch of 2 steps);
most of each run's time is the kernel starting and importing torch."""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from reidlab import ablation
from reidlab.ablation import (
    TRAIN_PARAMETERS, collect, is_finished, make_grid, normalize_parameters, plan_local_cluster, run_identity,
    run_name, summarize, train_config_from_params,
)

REPO = Path(__file__).resolve().parents[1]
TINY = {"epochs": 1, "steps_per_epoch": 2, "batch_p": 4, "batch_k": 2, "height": 64, "width": 32}


# ----------------------------------------------------------------------------- parameters, names, grids
def test_notebook_parameters_cell_matches_the_package():
    """The notebook's typed `parameters` cell states exactly TRAIN_PARAMETERS (names, types, defaults)."""
    papermill = pytest.importorskip("papermill")
    inferred = papermill.inspect_notebook(str(ablation.DEFAULT_NOTEBOOK))
    assert list(inferred) == list(TRAIN_PARAMETERS)
    for name, (kind, default, _) in TRAIN_PARAMETERS.items():
        assert inferred[name]["inferred_type_name"] == kind.__name__, name
        assert eval(inferred[name]["default"]) == default, name  # noqa: S307 (the notebook's own literal)
        assert inferred[name]["help"], f"parameter {name} has no comment"


def test_normalize_parameters_checks_names_and_types():
    params = normalize_parameters({"epochs": "3", "eval": "false", "model_cfg": {"depth": 18}})
    assert params["epochs"] == 3 and params["eval"] is False and json.loads(params["model_cfg"]) == {"depth": 18}
    with pytest.raises(ValueError, match="unknown parameter.*'epoch'"):
        normalize_parameters({"epoch": 3})
    with pytest.raises(ValueError, match="'height' must be an integer"):
        normalize_parameters({"height": "tall"})
    with pytest.raises(ValueError, match="model_cfg is not valid JSON"):
        normalize_parameters({"model_cfg": "{depth: 18"})


def test_train_config_merges_the_preset_and_rejects_bad_input(tmp_path):
    cfg = train_config_from_params({"preset": "mbgn/table2/Baseline", "model_cfg": '{"depth": 18}',
                                    "output_dir": str(tmp_path / "run"), **TINY})
    assert cfg.model == "mbgn" and cfg.model_cfg["depth"] == 18
    assert cfg.model_cfg["fusion"] == "pcb" and cfg.model_cfg["attention"] == "none"  # the preset's, kept
    assert (cfg.height, cfg.width, cfg.epochs, cfg.max_steps_per_epoch) == (64, 32, 1, 2)
    assert cfg.resume is True and cfg.eval_every == 0
    paper = train_config_from_params({"preset": "mbgn/table2/Baseline", "height": 0, "width": 0, "epochs": 0,
                                      "output_dir": str(tmp_path / "paper")})
    assert (paper.height, paper.width) == (384, 128)  # 0: the preset's own size
    with pytest.raises(ValueError, match="unknown preset 'mbgn/table2/MBGM'.*mbgn/table2/MBGN"):
        train_config_from_params({"preset": "mbgn/table2/MBGM"})
    with pytest.raises(ValueError, match="give a preset .* or a model"):
        train_config_from_params({"preset": ""})
    with pytest.raises(ValueError, match="contradicts"):
        train_config_from_params({"preset": "baseline/pcb", "model": "mgn"})
    # a run folder that holds another run's config is not continued
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "config.json").write_text(json.dumps({**cfg.to_dict(), "seed": 5}))
    with pytest.raises(ValueError, match="other settings .*seed"):
        train_config_from_params({"preset": "mbgn/table2/Baseline", "model_cfg": '{"depth": 18}',
                                  "output_dir": str(tmp_path / "run"), **TINY})


def test_run_names_are_readable_stable_and_unique():
    a = normalize_parameters({"preset": "mbgn/table2/Baseline+G", "seed": 1})
    name = run_name(a)
    assert name.startswith("mbgn-table2-Baseline+G_seed1_") and "/" not in name
    assert run_name(dict(a)) == name  # stable
    assert run_name({**a, "device": "cuda", "threads": 3, "output_dir": "x"}) == name  # execution settings
    assert run_name({**a, "epochs": 7}) != name and run_name({**a, "seed": 2}) != name
    b = normalize_parameters({"preset": "mbgn/table2/MBGN", "model_cfg": {"attention": None, "depth": 18}})
    assert "attention=None" in run_name(b, keys=["preset", "model_cfg"])


def test_make_grid_named_sets_yaml_seeds_and_overrides(tmp_path):
    runs = make_grid(["mbgn-table2"], seeds=2, overrides={"epochs": 3})
    from reidlab.presets import list_presets

    assert len(runs) == 2 * len(list_presets("mbgn", "Table 2")) == 12
    assert {r.params["seed"] for r in runs} == {0, 1} and {r.params["epochs"] for r in runs} == {3}
    assert len({r.name for r in runs}) == 12
    for name in ablation.NAMED_SETS:
        assert make_grid([name]), name
    spec = tmp_path / "grid.yaml"
    spec.write_text("common: {epochs: 5, height: 64}\nruns:\n  - preset: baseline/pcb\n"
                    "  - {model: bnneck, epochs: 9}\n  - {preset: baseline/mgn, seed: 4}\n")
    runs = make_grid([spec], seeds=[0, 1], overrides={"height": 32})
    by_name = {r.name.split("_seed")[0]: r for r in runs}
    assert len(runs) == 5  # two seeds for two entries, one fixed seed
    assert by_name["baseline-pcb"].params["epochs"] == 5 and by_name["baseline-pcb"].params["height"] == 32
    assert by_name["bnneck_epochs=9"].params["epochs"] == 9 and by_name["bnneck_epochs=9"].params["preset"] == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {preset: baseline/pcb, epoch: 3}\n")
    with pytest.raises(ValueError, match=r"bad.yaml \(run 1\): unknown parameter.*'epoch'"):
        make_grid([bad])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        make_grid([tmp_path / "missing.yaml"])
    with pytest.raises(ValueError, match="neither a named set"):
        make_grid(["mbgn-table9"])


def test_plan_local_cluster_never_oversubscribes():
    for cores in (1, 2, 3, 8, 16):
        plan = plan_local_cluster(runs=50, cores=cores, gpus=0)
        assert plan.workers * plan.threads_per_run <= cores and plan.workers >= 1
    assert plan_local_cluster(runs=2, cores=16, gpus=0).workers == 2  # never more workers than runs
    assert plan_local_cluster(runs=8, cores=16, gpus=4).workers == 4  # one per GPU
    with pytest.raises(ValueError, match="--workers"):
        plan_local_cluster(runs=2, workers=0)


def _fake_run(folder: Path, preset: str, seed: int, rank1: float, status: str = "ok") -> None:
    params = normalize_parameters({"preset": preset, "seed": seed, "output_dir": str(folder)})
    record = {"schema": ablation.RESULTS_SCHEMA, "status": status, "params": params, "run_id": run_identity(params),
              "metrics": {"rank1": rank1, "rank5": rank1, "rank10": rank1, "mAP": rank1 / 2, "mINP": 0.1}
              if status == "ok" else {}, "train_seconds": 10.0, "images_per_s": 32.0,
              "error": None if status == "ok" else "ValueError: boom"}
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(record))


def test_collect_and_summarize(tmp_path):
    pytest.importorskip("pyarrow")
    _fake_run(tmp_path / "a0", "mbgn/table2/Baseline", 0, 0.10)
    _fake_run(tmp_path / "a1", "mbgn/table2/Baseline", 1, 0.20)
    _fake_run(tmp_path / "b0", "mbgn/table2/MBGN", 0, 0.30)
    _fake_run(tmp_path / "b1", "mbgn/table2/MBGN", 1, 0.0, status="failed")
    (tmp_path / "c0").mkdir()
    (tmp_path / "c0" / "params.json").write_text(json.dumps({"params": {"preset": "baseline/pcb"}}))
    table = collect(tmp_path)
    assert len(table) == 5 and set(table.status) == {"ok", "failed", "incomplete"}
    assert table.set_index("run").loc["a1", "rank1"] == pytest.approx(20.0)  # percent, as the papers
    assert table.set_index("run").loc["a0", "paper_rank1"] == pytest.approx(92.2)  # MBGN Table 2, Market-1501
    assert table.set_index("run").loc["a0", "paper_dataset"] == "market1501"
    assert table.set_index("run").loc["b1", "error"] == "ValueError: boom"
    assert pd.read_parquet(tmp_path / "results.parquet").shape == table.shape
    assert pd.read_csv(tmp_path / "results.csv").shape == table.shape
    summary = summarize(table).set_index("preset")
    assert summary.loc["mbgn/table2/Baseline", "rank1_mean"] == pytest.approx(15.0)
    assert summary.loc["mbgn/table2/Baseline", "rank1_std"] == pytest.approx(math.sqrt(50.0))
    assert summary.loc["mbgn/table2/Baseline", "seeds"] == 2
    assert summary.loc["mbgn/table2/MBGN", "seeds"] == 1  # the failed seed does not count
    assert summary.loc["mbgn/table2/MBGN", "paper_mAP"] == pytest.approx(92.3)
    assert is_finished(tmp_path / "a0") and not is_finished(tmp_path / "b1") and not is_finished(tmp_path / "c0")
    assert not is_finished(tmp_path / "a0", {"preset": "mbgn/table2/Baseline", "seed": 1})  # another run's record
    with pytest.raises(FileNotFoundError, match="batch folder not found"):
        collect(tmp_path / "nope")


def test_cli_list_and_bad_input(capsys):
    from reidlab.ablation import main

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ablation.NAMED_SETS) and "steps_per_epoch" in out
    assert main(["mbgn-table9"]) == 2
    assert "neither a named set" in capsys.readouterr().err
    assert main([]) == 2


# ----------------------------------------------------------------------------- real batches on Dask
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from reidlab.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("ablation_data") / "synthetic"
    return make_synthetic_dataset(root, num_ids=16, images_per_id=4, progress=False)


def _grid(tmp_path: Path, data: Path, entries: str) -> Path:
    spec = tmp_path / "grid.yaml"
    common = {**TINY, "data_root": str(data), "model_cfg": {"depth": 18, "pretrained": False}}
    spec.write_text(f"common: {json.dumps(common)}\nruns:\n{entries}")
    return spec


def _ablate(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "reidlab.ablation", *map(str, args), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kwargs)


def test_batch_on_local_cluster_with_a_failing_run(tmp_path, tiny_data):
    """A good run and one that fails (an impossible ResNet depth): the failure is recorded with its
    error, traceback and partial notebook, the other finishes, the exit code is 1; a second call
    skips the finished run and retries the failed one."""
    pytest.importorskip("distributed")
    spec = _grid(tmp_path, tiny_data, "  - preset: baseline/bnneck\n  - {preset: baseline/bnneck, model_cfg: {depth: 7}}\n")
    batch = tmp_path / "batch"
    proc = _ablate(spec, "--output-dir", batch, "--workers", 2, "--threads-per-run", 1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    table = collect(batch).set_index("run")
    assert len(table) == 2, out
    ok = table[table.status == "ok"]
    assert list(ok.preset) == ["baseline/bnneck"] and ok.iloc[0].model_cfg == '{"depth": 18, "pretrained": false}', out
    assert (ok.rank1 > 0).all() and (ok.mAP > 0).all() and (ok.images_per_s > 0).all()
    for run_dir in ok.run_dir:
        assert {"notebook.ipynb", "checkpoint.pt", "log.jsonl", "papermill.log", "results.json"} <= {
            p.name for p in Path(run_dir).iterdir()}
    failed = table[table.status == "failed"].iloc[0]
    assert "depth must be one of" in failed.error
    record = json.loads((Path(failed.run_dir) / "results.json").read_text())
    assert "Traceback" in record["traceback"] and "depth" in record["traceback"]
    partial = json.loads((Path(failed.run_dir) / "notebook.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in partial["cells"] for o in c.get("outputs", []))
    assert "FAILED" in out and "1 failed" in out
    assert "INFO distributed" not in out and "CommClosedError" not in out, out  # Dask's chatter stays quiet
    # resume: the finished runs are skipped (their records untouched), the failed one runs again
    stamps = {r: Path(d, "results.json").stat().st_mtime_ns for r, d in ok.run_dir.items()}
    proc = _ablate(spec, "--output-dir", batch, "--workers", 1, "--threads-per-run", 1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "1 already finished, 1 to run" in out, out
    assert stamps == {r: Path(d, "results.json").stat().st_mtime_ns for r, d in ok.run_dir.items()}


def test_killed_batch_resumes_to_the_full_table(tmp_path, tiny_data):
    """SIGTERM the batch process after its first run finished; the re-run skips that run and
    completes the table; no run process is left behind."""
    pytest.importorskip("distributed")
    spec = _grid(tmp_path, tiny_data, "  - {preset: baseline/bnneck, seed: 0}\n  - {preset: baseline/bnneck, seed: 1}\n")
    batch = tmp_path / "batch"
    proc = _ablate(spec, "--output-dir", batch, "--workers", 1, "--threads-per-run", 1)
    deadline = time.time() + 240
    while time.time() < deadline and not any(is_finished(p) for p in batch.glob("*/") if p.is_dir()):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    first = collect(batch)
    finished = first[first.status == "ok"]
    assert len(finished) == 1, first[["run", "status"]]
    time.sleep(1.5)  # the run children notice their worker is gone within a second
    leftovers = subprocess.run(["pgrep", "-f", f"_execute.*{batch}"], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"run processes left behind: {leftovers}"
    stamp = {d: Path(d, "results.json").stat().st_mtime_ns for d in finished.run_dir}
    proc = _ablate(spec, "--output-dir", batch, "--workers", 1, "--threads-per-run", 1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"{len(finished)} already finished" in out
    table = collect(batch)
    assert len(table) == 2 and (table.status == "ok").all() and sorted(table.seed) == [0, 1]
    assert stamp == {d: Path(d, "results.json").stat().st_mtime_ns for d in finished.run_dir}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_batch_on_a_separately_started_dask_cluster(tmp_path, tiny_data):
    """`dask scheduler` + `dask worker` started as their own processes on 127.0.0.1; the batch is
    sent with --scheduler and lands in the same table."""
    pytest.importorskip("distributed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = tmp_path / "dask"
    logs.mkdir()
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--dashboard-address", ":0", "--no-show"],
                                 stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT, env=env)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                               "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard"],
                              stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        spec = _grid(tmp_path, tiny_data, "  - {preset: baseline/bnneck, seed: 3}\n")
        batch = tmp_path / "batch"
        proc = _ablate(spec, "--output-dir", batch, "--scheduler", address, "--threads-per-run", 1)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + (logs / "worker.log").read_text()[-3000:]
        assert f"scheduler {address}" in out
        table = collect(batch)
        assert list(table.preset) == ["baseline/bnneck"] and (table.status == "ok").all()
        assert (table.rank1 > 0).all()
    finally:
        for proc in (worker, scheduler):  # stop by process id
            proc.terminate()
        for proc in (worker, scheduler):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_notebooks_default_data_root_is_relative_to_the_notebook(tmp_path, monkeypatch):
    import reidlab.ablation as ablation

    seen = []
    monkeypatch.setattr(ablation, "prepare_data", lambda todo: None)
    monkeypatch.setattr(ablation, "_run_on_dask", lambda todo, *a, **k: seen.extend(todo) or [])
    monkeypatch.chdir(tmp_path)  # a batch started from anywhere
    default = ablation.normalize_parameters({"preset": "baseline/bnneck"})
    given = ablation.normalize_parameters({"preset": "baseline/bnneck", "data_root": "mydata", "seed": 1})
    specs = [ablation.RunSpec(p, ablation.run_name(p)) for p in (default, given)]
    ablation.run_batch(specs, tmp_path / "batch", progress=False)
    assert [s.name.rsplit("_", 1)[0] for s in seen] == ["baseline-bnneck_seed0", "baseline-bnneck_seed1"]
    roots = [s.params["data_root"] for s in seen]
    assert roots[0] == str((ablation.DEFAULT_NOTEBOOK.parent / "../data/synthetic").resolve())
    assert roots[1] == str(tmp_path / "mydata")  # a value given on the command line: relative to where you are
    for spec in seen:  # the folder's hash is the run_id its record will carry, over the resolved data root
        assert spec.name.endswith("_" + ablation.run_identity(spec.params))
        assert spec.params["output_dir"] == str((tmp_path / "batch" / spec.name).resolve())


def test_a_batch_on_another_data_folder_gets_new_run_folders(tmp_path):
    import reidlab.ablation as ablation

    params = ablation.normalize_parameters({"preset": "baseline/bnneck", "data_root": str(tmp_path / "d1")})
    spec = ablation.RunSpec(params, ablation.run_name(params))
    one = ablation.resolve_run(spec, ablation.DEFAULT_NOTEBOOK, tmp_path / "batch")
    moved = ablation.resolve_run(ablation.RunSpec(dict(params, data_root=str(tmp_path / "d2")), spec.name),
                                 ablation.DEFAULT_NOTEBOOK, tmp_path / "batch")
    assert one.name != moved.name and one.params["output_dir"] != moved.params["output_dir"]


def test_train_cfg_sets_train_settings_without_renaming_earlier_runs():
    import reidlab.ablation as ablation

    plain = ablation.normalize_parameters({"preset": "mbgn/table2/Baseline+GSRPA"})
    assert plain["train_cfg"] == "{}"
    keep = {k: v for k, v in plain.items() if k not in ablation.EXECUTION_PARAMETERS and k != "train_cfg"}
    import hashlib
    import json as _json
    old_identity = hashlib.sha1(_json.dumps(keep, sort_keys=True).encode()).hexdigest()[:8]
    assert ablation.run_identity(plain) == old_identity  # batches run before train_cfg existed keep their folders

    given = ablation.normalize_parameters({"preset": "mbgn/table2/Baseline+GSRPA",
                                           "train_cfg": {"lr_mult": {"attention.": 10}, "lr": 1e-4}})
    assert ablation.run_identity(given) != old_identity
    name = ablation.run_name(given, keys=["preset", "train_cfg"])
    assert 'lr_mult={"attention.":10}' not in name and "lr_mult=-attention.-10" in name  # readable, slugged
    cfg = ablation.train_config_from_params(dict(given, output_dir=""), default_output_root="/nonexistent-root")
    assert cfg.lr_mult == {"attention.": 10} and cfg.lr == 1e-4
    with pytest.raises(ValueError, match="train_cfg may not set \\['epochs'\\]"):
        ablation.train_config_from_params(dict(given, train_cfg='{"epochs": 3}'), default_output_root="/nonexistent-root")
    with pytest.raises(ValueError, match="train_cfg must be a JSON object"):
        ablation.normalize_parameters({"train_cfg": "[1]"})
    with pytest.raises(ValueError, match="unknown field"):
        ablation.train_config_from_params(dict(given, train_cfg='{"lr_mul": 3}'), default_output_root="/nonexistent-root")


def test_export_records_copies_records_with_relative_paths_and_guards_the_destination(tmp_path):
    import reidlab.ablation as ablation

    batch = tmp_path / "runs" / "batch"
    data = tmp_path / "data" / "synthetic"
    for name in ("a_seed0_1", "b_seed0_2"):
        run = batch / name
        run.mkdir(parents=True)
        params = {"output_dir": str(run), "data_root": str(data),
                  "model_cfg": json.dumps({"pretrained": str(tmp_path / "w.pth")})}
        (run / "results.json").write_text(json.dumps({"status": "ok", "params": params}))
        (run / "params.json").write_text(json.dumps({"name": name, "params": params}))
        (run / "log.jsonl").write_text('{"epoch": 1, "loss": 2.0}\n')
        (run / "checkpoint.pt").write_bytes(b"weights")
        (run / "notebook.ipynb").write_text("{}")
    (batch / "batch.json").write_text(json.dumps({"runs": [{"params": {"output_dir": str(batch / "a_seed0_1")}}]}))
    dest = tmp_path / "notebooks" / "shipped"
    written = ablation.export_records(batch, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in written) == [
        "a_seed0_1/log.jsonl", "a_seed0_1/params.json", "a_seed0_1/results.json",
        "b_seed0_2/log.jsonl", "b_seed0_2/params.json", "b_seed0_2/results.json", "batch.json"]
    record = json.loads((dest / "a_seed0_1" / "results.json").read_text())
    assert record["params"]["output_dir"] == "a_seed0_1"
    assert record["params"]["data_root"] == "../../data/synthetic"
    assert json.loads(record["params"]["model_cfg"])["pretrained"] == "../../w.pth"  # inside an escaped JSON string
    assert str(tmp_path) not in "".join(p.read_text() for p in written)
    assert json.loads((dest / "batch.json").read_text())["runs"][0]["params"]["output_dir"] == "a_seed0_1"
    assert ablation.collect(dest, save=False)["status"].tolist() == ["ok", "ok"]

    # re-export after a run was removed: the earlier export's files go, nothing else does
    (dest / "mine.txt").write_text("keep")
    import shutil
    shutil.rmtree(batch / "b_seed0_2")
    ablation.export_records(batch, dest)
    assert not (dest / "b_seed0_2").exists() and (dest / "mine.txt").read_text() == "keep"

    # a folder that is not an export is refused, untouched
    other = tmp_path / "user"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        ablation.export_records(batch, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="inside the batch"):
        ablation.export_records(batch, batch / "copy")


def test_run_names_name_only_what_an_entry_changes(tmp_path):
    import reidlab.ablation as ablation

    source = tmp_path / "variants.yaml"
    source.write_text(
        "common:\n  model_cfg: {depth: 18, pretrained: /some/where/resnet18-synthetic.pth}\n"
        "runs:\n  - {preset: mbgn/table2/MBGN}\n"
        "  - {preset: mbgn/table2/MBGN, model_cfg: {depth: 18, pretrained: /some/where/resnet18-synthetic.pth,"
        " triplet_features: global, structure_dim: 256}}\n"
        "  - {preset: mbgn/table2/Baseline+GSRPA, train_cfg: {lr_mult: {attention.: 10}}}\n")
    names = [r.name.rsplit("_", 1)[0] for r in ablation.make_grid([source], seeds=1)]
    assert names == ["mbgn-table2-MBGN_seed0", "mbgn-table2-MBGN_structure_dim=256_triplet_features=global_seed0",
                     "mbgn-table2-Baseline+GSRPA_lr_mult=-attention.-10_seed0"]


@pytest.mark.parametrize("listed", ["../victim.txt", "ABSOLUTE", "linked/results.json", "notes/../../victim.txt",
                                    "a_seed0_1/../../victim.txt", "mine.txt"])
def test_a_received_export_marker_cannot_delete_files_outside_its_folder(tmp_path, listed):
    """An export's marker names the files the next export may remove; a crafted one (shared
    exports travel) pointing outside the folder, through a link, or at a file no export writes is
    refused whole, with one line from the CLI (exit 2), and nothing is deleted."""
    import reidlab.ablation as ablation
    from reidlab.cli import main

    batch = tmp_path / "batch"
    run = batch / "a_seed0_1"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"status": "ok", "params": {"output_dir": str(run)}}))
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "results.json").write_text("the user's other file")
    received = tmp_path / "received"
    received.mkdir()
    (received / "linked").symlink_to(outside)
    (received / "mine.txt").write_text("mine")
    name = str(victim) if listed == "ABSOLUTE" else listed
    (received / ablation.EXPORT_MARKER).write_text(json.dumps({"files": [name]}))
    with pytest.raises(ValueError, match="refused, nothing was deleted"):
        ablation.export_records(batch, received)
    code = main(["ablate", "--output-dir", str(batch), "--export-records", str(received)])
    assert code == 2
    assert victim.read_text() == "the user's file" and (outside / "results.json").exists()
    assert (received / "mine.txt").read_text() == "mine" and not (received / "a_seed0_1").exists()

"""Issue 8, engine side: what a user can get wrong, and faults, never lose data or give a silent wrong answer.

Each test reproduces one case of the issue on small data and checks the new behaviour:
run folders, untrusted checkpoints, partial files, checkpoint-before-evaluation, Ctrl-C and
time limits with exact resume, presets that merge, resume from the run's config, finiteness
and divergence stops, one-line CLI errors.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from reidlab.config import TrainConfig
from reidlab.engine.checkpoint import (
    CheckpointError, DiskFullError, RunFolderError, atomic_save, load_checkpoint, prepare_run_folder,
)
from reidlab.engine.trainer import DivergenceError, NonFiniteLossError, Trainer, read_log

from test_trainer import TinyReID, same_state, tiny_cfg


def cli(argv, capsys):
    """Run ``reidlab ARGV``; (exit code, stdout, stderr)."""
    from reidlab.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


# ----------------------------------------------------------------------------- run folders
def test_a_run_folder_is_never_overwritten_without_resume_or_overwrite(tmp_path, synthetic_split):
    n = synthetic_split.num_train_pids
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, epochs=1), split=synthetic_split, model=TinyReID(n)).fit()
    before = (run / "checkpoint.pt").read_bytes()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="--resume.*--overwrite"):
        Trainer(tiny_cfg(run, epochs=1), split=synthetic_split, model=TinyReID(n))
    assert (run / "checkpoint.pt").read_bytes() == before and (run / "log.jsonl").exists()
    # overwrite replaces the run's own files and nothing else
    Trainer(tiny_cfg(run, epochs=1, overwrite=True, seed=3), split=synthetic_split, model=TinyReID(n, seed=3)).fit()
    assert (run / "checkpoint.pt").read_bytes() != before
    assert (run / "notes.txt").read_text() == "mine"
    assert len(read_log(run)) == 1


def test_overwrite_removes_only_run_files_and_stale_partials(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    for name in ("checkpoint.pt", "log.jsonl", "mine.csv"):
        (folder / name).write_text("x")
    (folder / ".checkpoint.pt.tmp123").write_bytes(b"\0" * 100)  # left by a kill -9
    prepare_run_folder(folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["mine.csv"]


# ----------------------------------------------------------------------------- checkpoints
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_a_pickle_payload_in_a_checkpoint_does_not_run(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pt"
    torch.save({"cfg": {}, "model": {}, "x": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    load_checkpoint(path, trust=True)  # the explicit opt-in does what it says
    assert marker.exists()


def test_checkpoints_load_with_weights_only(tmp_path, synthetic_split):
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, epochs=1), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids)).fit()
    state = torch.load(run / "checkpoint.pt", weights_only=True)  # raises if anything needs unpickling
    assert state["epoch"] == 1 and state["cfg"]["epochs"] == 1


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"PK\x03\x04garbage", "not a readable"),
                                            (None, "not a reidlab training checkpoint")])
def test_broken_checkpoints_give_one_line_errors(tmp_path, capsys, content, needle):
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)  # a foreign file
    else:
        path.write_bytes(content)
    code, _, err = cli(["evaluate", "--checkpoint", path, "--device", "cpu"], capsys)
    assert_one_line_error(code, err, needle, str(path))


def test_a_truncated_checkpoint_is_named(tmp_path, synthetic_split):
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, epochs=1), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids)).fit()
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(run)


def test_a_failed_write_leaves_no_partial_file_and_names_the_disk(tmp_path, monkeypatch):
    def full_disk(obj, target):
        Path(target).write_bytes(b"\0" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DiskFullError, match=f"no space left on .* writing {tmp_path / 'checkpoint.pt'}"):
        atomic_save({"a": 1}, tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_of_another_depth_is_a_clear_error(tmp_path, synthetic_root, capsys):
    run = tmp_path / "run"
    code, _, err = cli(["train", "--dataset", "synthetic", "--data-root", synthetic_root, "--model", "bnneck",
                        "--model-cfg", '{"depth": 18, "pretrained": false}', "--height", "64", "--width", "32",
                        "--epochs", "1", "--batch-p", "4", "--batch-k", "2", "--max-steps-per-epoch", "1",
                        "--num-workers", "0", "--no-progress", "--eval-every", "-1", "--output-dir", run,
                        "--device", "cpu"], capsys)
    assert code == 0, err
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["cfg"]["model_cfg"]["depth"] = 34
    torch.save(state, run / "checkpoint.pt")
    code, _, err = cli(["evaluate", "--checkpoint", run, "--device", "cpu", "--num-workers", "0"], capsys)
    assert_one_line_error(code, err, "does not fit", "missing", "another depth")


# ----------------------------------------------------------------------------- checkpoint before evaluation
def test_an_evaluation_failure_loses_no_epoch_and_resume_runs_it(tmp_path, synthetic_split, monkeypatch):
    n = synthetic_split.num_train_pids
    run = tmp_path / "run"
    trainer = Trainer(tiny_cfg(run, epochs=1, eval_every=0), split=synthetic_split, model=TinyReID(n))

    def broken_gallery():
        raise OSError("cannot read image gallery/0001.jpg")

    monkeypatch.setattr(trainer, "evaluate", broken_gallery)
    with pytest.raises(OSError):
        trainer.fit()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1  # the epoch is saved
    monkeypatch.undo()
    resumed = Trainer(tiny_cfg(run, epochs=1, eval_every=0, resume=True), split=synthetic_split, model=TinyReID(n))
    result = resumed.fit()
    assert result.metrics is not None and "mAP" in read_log(run).columns and len(read_log(run)) == 1


def test_every_option_is_checked_before_training(tmp_path, synthetic_split):
    with pytest.raises(ValueError, match="metric"):
        Trainer(tiny_cfg(tmp_path, metric="manhattan"), split=synthetic_split, model=TinyReID(4))
    assert not (tmp_path / "checkpoint.pt").exists()


# ----------------------------------------------------------------------------- Ctrl-C and time limit
def _run_straight(tmp_path, split, **cfg):
    trainer = Trainer(tiny_cfg(tmp_path / "straight", **cfg), split=split, model=TinyReID(split.num_train_pids))
    return trainer.fit()


@pytest.mark.parametrize("workers", [0, 2])
def test_time_limit_stops_mid_epoch_and_resume_is_exact(tmp_path, synthetic_split, workers):
    cfg = dict(epochs=2, max_steps_per_epoch=3, num_workers=workers)
    straight = _run_straight(tmp_path, synthetic_split, **cfg)
    run = tmp_path / "limited"
    stopped = Trainer(tiny_cfg(run, time_limit=1e-9, **cfg), split=synthetic_split,
                      model=TinyReID(synthetic_split.num_train_pids)).fit()
    assert stopped.status == "time_limit" and stopped.stopped_at == (1, 1)  # after the first step
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (0, 1)
    resumed = Trainer(tiny_cfg(run, resume=True, **cfg), split=synthetic_split,
                      model=TinyReID(synthetic_split.num_train_pids, seed=5)).fit()
    assert resumed.status == "completed"
    assert same_state(resumed.model.state_dict(), straight.model.state_dict())
    assert read_log(run)["loss"].tolist() == read_log(tmp_path / "straight")["loss"].tolist()


def test_a_stop_says_where_how_to_resume_and_how_to_get_metrics(tmp_path, synthetic_split, capsys):
    """Issue 19: the stop message gives the position in the whole run, the resume command and the
    evaluate command; --time-limit bounds one invocation and is not stored for the next --resume."""
    run = tmp_path / "limited"
    trainer = Trainer(tiny_cfg(run, time_limit=1e-9, epochs=2, max_steps_per_epoch=3), split=synthetic_split,
                      model=TinyReID(synthetic_split.num_train_pids))
    trainer.fit()
    out = capsys.readouterr().out
    assert "stopped after 1 of 6 steps (epoch 1, step 1)" in out
    assert f"continue with: reidlab train --output-dir {run} --resume" in out
    assert f"reidlab evaluate --checkpoint {run}" in out
    saved = json.loads((run / "config.json").read_text())
    assert "time_limit" not in saved and "resume" not in saved and saved["epochs"] == 2
    assert saved["precision_used"] in ("fp32", "bf16") or saved["precision_used"].startswith("auto: ")


def test_the_precision_used_is_in_the_start_line_config_and_log(tmp_path, synthetic_root, capsys, monkeypatch):
    """Issue 19: `auto` says what it resolved to and why, in the start line, config.json and log.jsonl."""
    import reidlab.engine.precision as precision

    monkeypatch.delenv("REIDLAB_PINNED", raising=False)
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: "emulated")
    run = tmp_path / "run"
    code, out, _ = cli(["train", "--model", "bnneck", "--model-cfg", '{"depth": 18, "pretrained": false}',
                        "--dataset", "synthetic", "--data-root", synthetic_root, "--epochs", "1",
                        "--max-steps-per-epoch", "1", "--batch-p", "4", "--batch-k", "2", "--height", "64",
                        "--width", "32", "--num-workers", "0", "--output-dir", run, "--amp", "auto"], capsys)
    said = "auto: fp32, this CPU has no native bf16"
    assert code == 0 and f"precision {said}" in out
    assert json.loads((run / "config.json").read_text())["precision_used"] == said
    assert read_log(run)["precision"].tolist() == [said]
    code, out, _ = cli(["train", "--output-dir", run, "--resume", "--epochs", "2"], capsys)  # config.json reads back
    assert code == 0 and read_log(run)["precision"].tolist() == [said, said]


def test_ctrl_c_stops_at_a_step_boundary_with_a_checkpoint(tmp_path, synthetic_split, monkeypatch, capsys):
    cfg = dict(epochs=1, max_steps_per_epoch=3)
    straight = _run_straight(tmp_path, synthetic_split, **cfg)
    run = tmp_path / "run"
    trainer = Trainer(tiny_cfg(run, **cfg), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids))
    real_step = trainer.train_step

    def step_then_ctrl_c(batch, epoch, step):
        out = real_step(batch, epoch, step)
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C, in the middle of the epoch
        return out

    monkeypatch.setattr(trainer, "train_step", step_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    result = trainer.fit()
    out = capsys.readouterr().out
    assert result.status == "interrupted" and result.stopped_at == (1, 2)
    assert "--resume" in out and str(run / "checkpoint.pt") in out
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is restored
    resumed = Trainer(tiny_cfg(run, resume=True, **cfg), split=synthetic_split,
                      model=TinyReID(synthetic_split.num_train_pids)).fit()
    assert same_state(resumed.model.state_dict(), straight.model.state_dict())


# ----------------------------------------------------------------------------- silent wrong answers
TABLE2 = ["mbgn/table2/Baseline", "mbgn/table2/Baseline+G", "mbgn/table2/Baseline+AABS",
          "mbgn/table2/Baseline+GSRPA", "mbgn/table2/Baseline+CBAM-S", "mbgn/table2/MBGN"]


@pytest.mark.parametrize("preset", TABLE2)
def test_model_cfg_merges_into_the_preset(preset):
    from reidlab.engine.commands import add_train_config_options, config_from_args
    from reidlab.engine.trainer import merge_model_kwargs
    from reidlab.models import build_model
    from reidlab.presets import get_preset
    import argparse

    parser = argparse.ArgumentParser()
    add_train_config_options(parser)
    args = parser.parse_args(["--preset", preset, "--model-cfg", '{"depth": 18, "pretrained": false}',
                              "--height", "128", "--width", "64"])
    cfg = config_from_args(args)
    kwargs = merge_model_kwargs(cfg, {"num_classes": 10, "input_size": (128, 64)})
    from_cli = build_model(cfg.model, **kwargs)
    direct = get_preset(preset).build(num_classes=10, depth=18, pretrained=False, input_size=(128, 64))
    assert [type(m).__name__ for m in from_cli.modules()] == [type(m).__name__ for m in direct.modules()]
    assert {k: v.shape for k, v in from_cli.state_dict().items()} == {k: v.shape for k, v in direct.state_dict().items()}


def test_a_null_in_model_cfg_removes_the_preset_key():
    cfg = TrainConfig.from_dict({"preset": "mbgn/table2/Baseline", "model_cfg": {"fusion": None, "depth": 18}})
    assert "fusion" not in cfg.model_cfg and cfg.model_cfg["depth"] == 18 and cfg.model_cfg["use_aabs"] is False


def test_resume_reads_the_runs_own_config(tmp_path, synthetic_root, capsys):
    run = tmp_path / "run"
    common = ["--num-workers", "0", "--no-progress", "--device", "cpu"]
    code, _, err = cli(["train", "--dataset", "synthetic", "--data-root", synthetic_root, "--model", "bnneck",
                        "--model-cfg", '{"depth": 18, "pretrained": false}', "--height", "64", "--width", "32",
                        "--epochs", "1", "--batch-p", "4", "--batch-k", "2", "--max-steps-per-epoch", "1",
                        "--eval-every", "-1", "--output-dir", run, *common], capsys)
    assert code == 0, err
    code, out, err = cli(["train", "--output-dir", run, "--resume", "--epochs", "2", *common], capsys)
    assert code == 0, err
    assert "epochs=2 (was 1)" in out and "size mismatch" not in out + err
    saved = json.loads((run / "config.json").read_text())
    assert (saved["height"], saved["width"], saved["epochs"], saved["data_root"]) == (64, 32, 2, str(synthetic_root))
    assert list(read_log(run)["epoch"]) == [1, 2]


def test_an_update_that_breaks_the_weights_is_named_by_its_step(tmp_path, synthetic_split):
    trainer = Trainer(tiny_cfg(tmp_path, optimizer="sgd", epochs=2, max_steps_per_epoch=3),
                      split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids))
    real_step = trainer.optimizer.step

    def overflowing_step(*args, **kwargs):  # as SGD with a huge lr: global step 2's update overflows
        out = real_step(*args, **kwargs)
        if trainer.global_step == 2:
            with torch.no_grad():
                trainer.model.body[0].weight.fill_(float("inf"))
        return out

    trainer.optimizer.step = overflowing_step
    with pytest.raises(NonFiniteLossError, match=r"optimizer step of global step 2 made 1 weight tensor\(s\) non-finite "
                                                 r"\(e.g. body.0.weight\)"):
        trainer.fit()
    assert trainer.global_step == 3  # found at the very next step, before its update


def test_sgd_with_a_huge_lr_stops_at_the_first_bad_step(tmp_path, synthetic_split):
    trainer = Trainer(tiny_cfg(tmp_path, optimizer="sgd", lr=1e30, epochs=3, max_steps_per_epoch=3,
                               divergence_factor=None), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids))
    with pytest.raises(NonFiniteLossError, match="global step 1"):  # step 0's update; step 1's forward overflows
        trainer.fit()


def test_a_diverging_loss_stops_the_run(tmp_path, synthetic_split):
    trainer = Trainer(tiny_cfg(tmp_path, lr=1e6, epochs=2, max_steps_per_epoch=4),  # the Adam lr 1e6
                      split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids))
    with pytest.raises(DivergenceError, match="step 1 .*Lower --lr"):
        trainer.fit()
    sane = Trainer(tiny_cfg(tmp_path / "sane", lr=3.5e-4, epochs=2, max_steps_per_epoch=4),
                   split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids))
    assert sane.fit().completed


def test_num_workers_default_follows_the_machine():
    from reidlab.config import default_num_workers

    assert TrainConfig().num_workers is None
    assert default_num_workers() == min(8, len(os.sched_getaffinity(0)))


# ----------------------------------------------------------------------------- the user's data folder
def _user_folder(tmp_path) -> Path:
    folder = tmp_path / "my_market_copy"
    for sub in ("bounding_box_train", "bounding_box_test", "query"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "0001_c1s1_000151_01.jpg").write_bytes(b"not really a jpeg")
    return folder


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_with_a_data_root_never_generates_into_it(tmp_path, capsys):
    folder = _user_folder(tmp_path)
    before = _files(folder)
    code, out, err = cli(["train", "--data-root", folder, "--output-dir", tmp_path / "run", "--epochs", "1",
                          "--device", "cpu", "--num-workers", "0", "--no-progress"], capsys)
    assert code == 2 and "Traceback" not in err
    assert _files(folder) == before
    code, out, err = cli(["summary", "synthetic", "--root", folder], capsys)
    assert code == 2 and _files(folder) == before


def test_evaluate_never_generates_into_a_path_from_a_checkpoint(tmp_path, synthetic_split, capsys):
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, epochs=1), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids)).fit()
    folder = _user_folder(tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["cfg"].update(dataset="synthetic", data_root=str(folder))
    torch.save(state, run / "checkpoint.pt")
    before = _files(folder)
    code, _, err = cli(["evaluate", "--checkpoint", run, "--device", "cpu", "--num-workers", "0"], capsys)
    assert code == 2 and "Traceback" not in err
    assert _files(folder) == before


# ----------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize("config,needle", [
    ({"height": "128"}, "TrainConfig.height: expected an integer, got '128'"),
    ({"model_cfg": [18]}, "TrainConfig.model_cfg: expected a JSON object"),
    ({"epochs": 2, "learning_rate": 1}, "unknown field(s) ['learning_rate']"),
    ([18], "must hold a JSON object"),
])
def test_bad_config_files_give_one_line_errors(tmp_path, capsys, config, needle):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    code, _, err = cli(["train", "--config", path, "--output-dir", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_bad_model_cfg_options_give_one_line_errors(tmp_path, capsys):
    code, _, err = cli(["train", "--model-cfg", "[18]", "--output-dir", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, "model_cfg")
    with pytest.raises(SystemExit) as exit_info:  # not JSON at all: argparse's own usage error
        cli(["train", "--model-cfg", "{depth: 18", "--output-dir", tmp_path / "run"], capsys)
    assert exit_info.value.code == 2


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"height": "128"}))
    with pytest.raises(ValueError, match="height"):
        cli(["train", "--config", path, "--debug"], capsys)


def test_nan_features_into_re_ranking_are_named():
    from reidlab.engine.rerank import re_ranking

    q, g = torch.randn(4, 8), torch.randn(6, 8)
    g[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        re_ranking(q, g, k1=3, k2=2)


def test_cuhk03_protocol_from_evaluate(synthetic_split):
    from reidlab.engine.evaluate import evaluate

    model = TinyReID(4).eval()
    from reidlab.engine.metrics import evaluate_ranking

    market = evaluate(model, synthetic_split, 64, 32, device="cpu", progress=False, return_features=True)
    cuhk = evaluate(model, synthetic_split, 64, 32, device="cpu", progress=False, protocol="cuhk03")
    assert cuhk["protocol"] == "cuhk03" and market["protocol"] == "market"
    assert cuhk["mAP"] == pytest.approx(market["mAP"])  # mAP stays on the full gallery
    ids = lambda records: [r.pid for r in records]  # noqa: E731
    cams = lambda records: [r.camid for r in records]  # noqa: E731
    sgs = evaluate_ranking(market["distmat"], ids(synthetic_split.query), ids(synthetic_split.gallery),
                           cams(synthetic_split.query), cams(synthetic_split.gallery), single_gallery_shot=True)
    assert cuhk["cmc"].tolist() == pytest.approx(sgs["cmc"].tolist())
    assert cuhk["cmc"].tolist() != pytest.approx(market["cmc"].tolist())
    with pytest.raises(ValueError, match="protocol"):
        evaluate(model, synthetic_split, 64, 32, device="cpu", progress=False, protocol="viper")


@pytest.mark.parametrize("name", ["pcb", "mgn"])
def test_part_models_refuse_inputs_too_small_for_their_stripes(name):
    from reidlab.models import build_model

    model = build_model(name, num_classes=4, depth=18, pretrained=False).eval()
    with pytest.raises(ValueError, match="stripes need a feature map of >= . rows"):
        model(torch.randn(2, 3, 32, 16))
    assert model(torch.randn(2, 3, 128, 64))["features"].shape[0] == 2


def test_bad_images_are_listed_before_training_or_skipped(tmp_path, synthetic_split, caplog):
    import dataclasses

    broken = tmp_path / "0001_c1s1_000001_00.jpg"
    broken.write_bytes(b"")
    record = dataclasses.replace(synthetic_split.train[0], path=str(broken))
    split = dataclasses.replace(synthetic_split, train=[*synthetic_split.train, record])
    with pytest.raises(ValueError, match=f"(?s)1 unreadable image.*{broken.name}.*empty.*--skip-bad-images"):
        Trainer(tiny_cfg(tmp_path / "run", epochs=1), split=split, model=TinyReID(split.num_train_pids))
    trainer = Trainer(tiny_cfg(tmp_path / "run", epochs=1, skip_bad_images=True), split=split,
                      model=TinyReID(split.num_train_pids))
    assert len(trainer.split.train) == len(synthetic_split.train)
    assert trainer.fit().completed


def test_root_and_data_root_are_one_option(tmp_path, synthetic_root, capsys):
    code, out, _ = cli(["summary", "synthetic", "--data-root", synthetic_root], capsys)
    assert code == 0 and "train" in out
    code, out2, _ = cli(["summary", "synthetic", "--root", synthetic_root], capsys)
    assert out2 == out


@pytest.mark.parametrize("preset", TABLE2)
def test_a_saved_config_builds_the_same_model_again(preset):
    import dataclasses

    cfg = TrainConfig.from_dict({"preset": preset, "model_cfg": {"depth": 18}})
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # as resume / evaluate read it back
    assert again.model_cfg == cfg.model_cfg
    assert dataclasses.replace(cfg, epochs=3).resolved().model_cfg == cfg.model_cfg

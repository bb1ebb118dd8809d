"""Training engine: config, schedules, exact resume, non-finite stop, log, evaluation, CLI."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from reidlab.config import TrainConfig
from reidlab.engine.schedule import EpochLR, lr_factor_fn
from reidlab.engine.trainer import NonFiniteLossError, Trainer, read_log
from reidlab.models.baselines import id_triplet_terms
from reidlab.models.heads import BNNeck


class TinyReID(nn.Module):
    """A two-conv re-ID model with BN, dropout and a BNNeck: the engine's behaviour at a tiny cost."""

    def __init__(self, num_classes: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout(0.2),
        )
        self.neck = BNNeck(16, num_classes)
        self.num_classes = num_classes
        self.loss_terms = id_triplet_terms()
        self.requires = set()

    def forward(self, images, keypoints=None):
        pooled = self.body(images).mean(dim=(2, 3))  # (B, 16)
        neck, logits = self.neck(pooled)
        if not self.training:
            return {"features": neck}
        return {"features": neck, "logits": [logits], "triplet": [pooled]}


def tiny_cfg(output_dir, **overrides) -> TrainConfig:
    values = dict(
        model="bnneck", model_cfg={"depth": 18, "pretrained": False}, height=64, width=32,
        epochs=2, batch_p=4, batch_k=2, num_workers=0, max_steps_per_epoch=2,
        eval_every=-1, progress=False, seed=0, output_dir=str(output_dir), device="cpu",
    )
    values.update(overrides)
    return TrainConfig(**values)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- config
def test_config_defaults_are_mbgn():
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.lr, cfg.betas) == ("adam", 2e-4, (0.9, 0.999))
    assert (cfg.schedule, cfg.constant_epochs, cfg.decay) == ("mbgn", 40, 0.98)
    assert (cfg.batch_p, cfg.batch_k) == (16, 4)


def test_config_round_trip_and_errors():
    cfg = TrainConfig(model="pcb", model_cfg={"depth": 18}, betas=[0.5, 0.9], step_epochs=[3, 5], schedule="step")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.betas == (0.5, 0.9) and again.step_epochs == (3, 5)
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_config_preset_fills_and_explicit_values_win():
    cfg = TrainConfig.from_preset("baseline/mgn", lr=1e-3)
    assert cfg.model == "mgn" and cfg.model_cfg["part_counts"] == (0, 2, 3) and cfg.lr == 1e-3
    direct = TrainConfig(preset="baseline/pcb", epochs=7).resolved()
    assert direct.model == "pcb" and direct.epochs == 7


# ----------------------------------------------------------------------------- schedules
def test_mbgn_schedule_against_the_paper():
    factor = lr_factor_fn(TrainConfig(schedule="mbgn"))
    for epoch in range(80):  # "the first 40 epochs remain unchanged", then x0.98 per epoch
        expected = 1.0 if epoch < 40 else 0.98 ** (epoch - 39)
        assert math.isclose(factor(epoch), expected, rel_tol=1e-12)


def test_step_cosine_and_warmup_schedules():
    step = EpochLR("step", 240, step_epochs=(180,), step_gamma=0.1)  # MSRA: 0.01 -> 0.001
    assert [step(e) for e in (0, 179, 180, 239)] == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1)]
    cosine = EpochLR("cosine", 12, warmup_epochs=2)
    assert cosine(0) == pytest.approx(0.5) and cosine(1) == pytest.approx(1.0)
    assert cosine(2) == pytest.approx(1.0) and cosine(7) == pytest.approx(0.5) and cosine(12) == pytest.approx(0.0)
    values = [cosine(e) for e in range(2, 13)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# ----------------------------------------------------------------------------- resume
def test_resume_gives_exactly_the_uninterrupted_weights(tmp_path, synthetic_split):
    # random augmentation (flip, crop, erasing) and PK sampling make every step depend on the RNG states
    n = synthetic_split.num_train_pids
    straight = Trainer(tiny_cfg(tmp_path / "straight"), split=synthetic_split, model=TinyReID(n))
    initial = {k: v.clone() for k, v in straight.model.state_dict().items()}
    straight_result = straight.fit()

    first = Trainer(tiny_cfg(tmp_path / "resumed"), split=synthetic_split, model=TinyReID(n))
    first.fit(until_epoch=1)  # "interrupted" after one epoch
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 1
    second = Trainer(tiny_cfg(tmp_path / "resumed", resume=True), split=synthetic_split, model=TinyReID(n, seed=1))
    assert second.start_epoch == 1
    resumed_result = second.fit()

    final = straight_result.model.state_dict()
    assert not same_state(final, initial), "training did not move the weights"
    assert same_state(resumed_result.model.state_dict(), final)
    assert same_state(second.optimizer.state_dict()["state"][0], straight.optimizer.state_dict()["state"][0])
    a, b = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert list(a["epoch"]) == list(b["epoch"]) == [1, 2]
    assert a["loss"].tolist() == b["loss"].tolist()


def test_log_rows_per_epoch_with_loss_terms_and_eval(tmp_path, synthetic_split):
    result = Trainer(tiny_cfg(tmp_path, epochs=1, max_steps_per_epoch=1, eval_every=0), split=synthetic_split,
                     model=TinyReID(synthetic_split.num_train_pids)).fit()
    log = read_log(tmp_path)
    assert len(log) == 1
    for column in ("epoch", "lr", "loss", "loss/id", "loss/triplet", "images_per_s", "rank1", "mAP"):
        assert column in log.columns
    assert log["loss"].iloc[0] == pytest.approx(log["loss/id"].iloc[0] + log["loss/triplet"].iloc[0], rel=1e-5)
    assert 0.0 <= result.metrics["mAP"] <= 1.0
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "config.json").exists()


# ----------------------------------------------------------------------------- non-finite stop
class NaNAtCall(nn.Module):
    """Wraps a model; on its ``at``-th training forward one output list turns NaN."""

    def __init__(self, inner, at: int, output: str):
        super().__init__()
        self.inner, self.at, self.output, self.calls = inner, at, output, 0
        self.loss_terms, self.requires, self.num_classes = inner.loss_terms, set(), inner.num_classes

    def forward(self, images, keypoints=None):
        out = self.inner(images)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                out[self.output] = [t * float("nan") for t in out[self.output]]
        return out


@pytest.mark.parametrize("output,label,at", [("logits", "id", 2), ("triplet", "triplet", 1)])
def test_nonfinite_loss_stops_with_a_clear_error_and_a_dump(tmp_path, synthetic_split, output, label, at):
    model = NaNAtCall(TinyReID(synthetic_split.num_train_pids), at=at, output=output)  # one step per epoch: call `at` is epoch `at`, step 0
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(tiny_cfg(tmp_path, max_steps_per_epoch=1), split=synthetic_split, model=model)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    assert f"epoch {at}, step 0" in message and f"global step {at - 1}" in message and label in message
    dump = tmp_path / "nonfinite"
    info = json.loads((dump / "nonfinite.json").read_text())
    assert info["nonfinite_terms"] == [label] and info["global_step"] == at - 1
    assert not math.isfinite(info["loss_parts"][label])
    assert len(info["pid"]) == len(info["index"]) == 8
    assert [synthetic_split.train[i].pid for i in info["index"]] == info["pid"]
    batch = torch.load(dump / "batch.pt", weights_only=False)
    assert batch["pid"].tolist() == info["pid"]
    # the weights (and BN statistics) before the failing step: the initial ones, or the epoch-1 checkpoint
    before = torch.load(dump / "weights_before_step.pt", weights_only=False)["model"]
    if at == 1:
        assert same_state(before, initial)
    else:
        checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
        assert checkpoint["epoch"] == 1 and same_state(before, checkpoint["model"])
        assert not same_state(before, initial)


# ----------------------------------------------------------------------------- evaluation
class KeypointProbe(nn.Module):
    """A model whose features are the x coordinates of the keypoints it is given."""

    requires = {"keypoints"}

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images, keypoints=None):
        return {"features": keypoints[..., 0] + images.mean(dim=(1, 2, 3))[:, None] * 0 + self.dummy}


def test_extract_features_flip_average_matches_a_plain_reference(synthetic_split):
    from reidlab.data.dataset import ReIDDataset
    from reidlab.data.records import COCO17_FLIP_PAIRS
    from reidlab.data.transforms import build_transforms
    from reidlab.engine.evaluate import extract_features

    records = synthetic_split.query[:5]
    samples = [ReIDDataset(records, transform=build_transforms(64, 32, train=False))[i] for i in range(5)]
    images = torch.stack([s["image"] for s in samples])
    model = TinyReID(4).eval()
    with torch.no_grad():
        reference = (model(images)["features"] + model(images.flip(-1))["features"]) / 2
    feats = extract_features(model, records, 64, 32, batch_size=2, flip=True, device="cpu", progress=False, amp=False)
    assert feats.shape == reference.shape and torch.allclose(feats, reference, atol=1e-5)

    # keypoints are passed (the model requires them) and mirrored with left/right swapped
    keypoints = torch.stack([s["keypoints"] for s in samples])  # (5, 17, 3)
    visible = keypoints[..., 2] > 0
    mirrored = keypoints.clone()
    mirrored[..., 0] = torch.where(visible, 31 - keypoints[..., 0], keypoints[..., 0])  # width 32
    swapped = mirrored.clone()
    for a, b in COCO17_FLIP_PAIRS:
        swapped[:, a], swapped[:, b] = mirrored[:, b], mirrored[:, a]
    assert visible.any()
    probe = extract_features(KeypointProbe(), records, 64, 32, flip=True, device="cpu", progress=False)
    assert torch.allclose(probe, (keypoints[..., 0] + swapped[..., 0]) / 2)


# ----------------------------------------------------------------------------- command line
def test_cli_train_then_evaluate(tmp_path, synthetic_root, capsys):
    from reidlab.cli import main

    run = tmp_path / "run"
    code = main([
        "train", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--model", "bnneck",
        "--model-cfg", '{"depth": 18, "pretrained": false}', "--height", "64", "--width", "32",
        "--epochs", "1", "--batch-p", "4", "--batch-k", "2", "--max-steps-per-epoch", "1",
        "--num-workers", "0", "--no-progress", "--output-dir", str(run), "--device", "cpu",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "rank1" in out and "chance level" in out
    assert (run / "checkpoint.pt").exists()
    code = main(["evaluate", "--checkpoint", str(run), "--device", "cpu", "--num-workers", "0",
                 "--output", str(tmp_path / "m.json")])
    assert code == 0
    trained = json.loads((run / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "m.json").read_text())
    assert evaluated["mAP"] == pytest.approx(trained["mAP"], abs=1e-6)  # same checkpoint, same figures


def test_demo_runs_end_to_end_on_a_small_dataset(tmp_path, synthetic_root, capsys):
    from reidlab.engine.commands import DemoSettings, run_demo

    assert DemoSettings().train_config().model_cfg["depth"] == 18  # the shipped settings form a valid config
    settings = DemoSettings(data_root=str(synthetic_root), output_dir=str(tmp_path / "demo"))
    result = run_demo(settings, height=64, width=32, epochs=1, max_steps_per_epoch=1, batch_p=4, batch_k=2,
                      num_workers=0, progress=False, model_cfg={"depth": 18, "pretrained": False}, device="cpu")
    out = capsys.readouterr().out
    assert "rank1" in out and "chance level" in out and "with_keypoints" in out
    assert 0.0 <= result.metrics["rank1"] <= 1.0


def test_lr_mult_gives_fresh_modules_their_own_rate():
    from reidlab.engine.schedule import build_optimizer
    from reidlab.models import build_model

    model = build_model("mbgn", num_classes=4, depth=18, pretrained=False, input_size=(128, 64))
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, lr_mult={"attention.": 10.0}))
    by_lr = {round(g["lr"], 9): sum(p.numel() for p in g["params"]) for g in optimizer.param_groups}
    attention = sum(p.numel() for n, p in model.named_parameters() if n.startswith("attention."))
    assert attention > 0
    assert by_lr == {1e-3: sum(p.numel() for p in model.parameters()) - attention, 1e-2: attention}
    with pytest.raises(ValueError, match="no trainable parameter name starts with"):
        build_optimizer(model, TrainConfig(lr_mult={"gsrpa.": 2.0}))

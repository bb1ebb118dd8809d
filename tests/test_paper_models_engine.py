"""MBGN and MSRA presets through the engine: train (keypoints, attributes, input size and
loss terms wired by the trainer), evaluate, and reload from the checkpoint."""
import math

import pytest
import torch

from reidlab.config import TrainConfig
from reidlab.engine.evaluate import evaluate
from reidlab.engine.trainer import load_checkpoint_model, train


@pytest.mark.parametrize("preset, size, extra", [
    ("mbgn/table2/MBGN", (128, 64), {}),  # AABS needs >= 5 rows on the stride-16 map
    ("msra/table1/MSRA", (64, 32), {"pose_dim": 32, "attribute_node_dim": 8}),
])
def test_preset_trains_evaluates_and_reloads(preset, size, extra, synthetic_split, tmp_path):
    base = TrainConfig.from_preset(preset)
    cfg = TrainConfig.from_preset(
        preset, model_cfg={**base.model_cfg, "depth": 18, "pretrained": False, **extra},
        height=size[0], width=size[1], epochs=1, max_steps_per_epoch=2, batch_p=4, batch_k=2, lr=3.5e-4,
        schedule="constant", num_workers=0, eval_every=0, progress=False, seed=0,
        output_dir=str(tmp_path / "run"), device="cpu",
        amp="off",  # fp32: under bf16 the trained (channels_last) and reloaded models take other kernels on AMX CPUs
    )
    result = train(cfg, split=synthetic_split)
    history = result.history
    assert len(history) == 1 and math.isfinite(history["loss"].iloc[0])
    # every declared loss term was computed and logged
    model_terms = {term.label for term in result.model.loss_terms}
    assert {f"loss/{label}" for label in model_terms} <= set(history.columns)
    assert 0.0 <= result.metrics["rank1"] <= 1.0 and math.isfinite(result.metrics["mAP"])

    reloaded, reloaded_cfg = load_checkpoint_model(result.checkpoint, split=synthetic_split)
    assert reloaded_cfg.model == cfg.model
    again = evaluate(reloaded, synthetic_split, cfg.height, cfg.width, progress=False, device="cpu", amp=False)
    assert again["rank1"] == pytest.approx(result.metrics["rank1"])
    assert again["mAP"] == pytest.approx(result.metrics["mAP"], abs=1e-6)


def test_model_cfg_input_size_must_agree_with_height_width(synthetic_split, tmp_path):
    cfg = TrainConfig.from_preset(
        "mbgn/table2/MBGN", model_cfg={"depth": 18, "pretrained": False, "input_size": (128, 64)},
        height=64, width=32, epochs=1, max_steps_per_epoch=1, num_workers=0, progress=False,
        output_dir=str(tmp_path / "run"), device="cpu",
    )
    with pytest.raises(ValueError, match="disagrees with the config's height x width"):
        train(cfg, split=synthetic_split)

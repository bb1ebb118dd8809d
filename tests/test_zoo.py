"""The notebooks' model zoo: trained once into runs/notebooks, loaded after; untrained = the same start."""
from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

import reidlab.zoo as zoo


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch, synthetic_root):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(synthetic_root, data / "synthetic")
    monkeypatch.setenv("REIDLAB_DATA_DIR", str(data))
    monkeypatch.setattr(zoo, "ZOO_PRETRAIN", dataclasses.replace(
        zoo.ZOO_PRETRAIN, height=128, width=64, num_ids=16, images_per_id=4, epochs=1, max_steps_per_epoch=2,
        batch_p=4, batch_k=2))
    monkeypatch.setattr(zoo, "ZOO", {"baseline": dataclasses.replace(zoo.ZOO["baseline"], epochs=1, steps_per_epoch=2)})
    return tmp_path


def test_zoo_trains_once_then_loads(tiny_zoo, monkeypatch):
    trained, split = zoo.zoo_model("baseline", progress=False)
    folder = tiny_zoo / "runs" / "notebooks" / "baseline"
    assert (folder / "checkpoint.pt").exists() and (folder / "zoo.json").exists()
    assert set(zoo.zoo_metrics("baseline")) == {"rank1", "mAP", "mINP"}
    assert bool(zoo.zoo_table().loc["baseline", "trained"])

    import reidlab.engine.trainer as trainer

    monkeypatch.setattr(trainer.Trainer, "fit", lambda self: pytest.fail("trained again"))
    again, _ = zoo.zoo_model("baseline", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), again.state_dict().values()))

    untrained, _ = zoo.zoo_model("baseline", trained=False, progress=False)
    fresh_twice, _ = zoo.zoo_model("baseline", trained=False, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(untrained.state_dict().values(), fresh_twice.state_dict().values()))
    differ = [k for k, v in trained.state_dict().items() if not torch.equal(v, untrained.state_dict()[k])]
    assert differ, "training did not change the model"
    # the untrained model starts from the zoo's pretrained backbone, not from random weights
    backbone = torch.load(tiny_zoo / "data" / "pretrained" / "notebooks" / "resnet18-synthetic.pth", weights_only=True)
    assert torch.equal(untrained.layer1[0].conv1.weight, backbone["layer1.0.conv1.weight"])


def test_a_changed_entry_is_trained_again(tiny_zoo, monkeypatch):
    zoo.zoo_model("baseline", progress=False)
    monkeypatch.setattr(zoo, "ZOO", {"baseline": dataclasses.replace(zoo.ZOO["baseline"], lr=1e-4)})
    assert not zoo._finished(zoo.zoo_config("baseline"))
    zoo.zoo_checkpoint("baseline", progress=False)
    assert zoo._finished(zoo.zoo_config("baseline"))
    with pytest.raises(ValueError, match="no zoo model"):
        zoo.zoo_config("resnet")


def test_the_same_tree_by_another_path_finds_its_models(tiny_zoo, monkeypatch, tmp_path):
    zoo.zoo_model("baseline", progress=False)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "data").symlink_to(tiny_zoo / "data")  # a copy of the tree that links data/ and runs/
    (other / "runs").symlink_to(tiny_zoo / "runs")
    monkeypatch.setenv("REIDLAB_DATA_DIR", str(other / "data"))
    cfg = zoo.zoo_config("baseline")
    assert str(other) in cfg.output_dir and zoo._finished(cfg)  # found trained: nothing is retrained or removed


def test_a_config_read_back_from_json_is_the_same_model():
    cfg = zoo.zoo_config("msra")  # its model_cfg holds a tuple (levels), which JSON stores as a list
    import json

    assert zoo._settings(json.loads(json.dumps(cfg.to_dict()))) == zoo._settings(cfg.to_dict())


def test_an_older_zoo_backbone_is_replaced_not_refused(tiny_zoo, monkeypatch):
    """A zoo made by an earlier version (other pretraining settings) is the zoo's own: the next
    call pretrains again instead of failing on "holds a backbone pretrained with other settings"."""
    from reidlab.engine.pretrain import backbone_is_current

    first = zoo.zoo_backbone(progress=False)
    monkeypatch.setattr(zoo, "ZOO_PRETRAIN", dataclasses.replace(zoo.ZOO_PRETRAIN, seed=1001))
    assert not backbone_is_current(first, zoo.ZOO_PRETRAIN)
    again = zoo.zoo_backbone(progress=False)
    assert again == first and backbone_is_current(again, zoo.ZOO_PRETRAIN)

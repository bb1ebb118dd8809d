"""reidlab pretrain (issue 10 §1): a synthetic-pretrained backbone through the ordinary weights path."""
from __future__ import annotations

import json

import pytest
import torch

from reidlab.engine.pretrain import PretrainSettings, pretrain_backbone, to_torchvision_names

TINY = PretrainSettings(depth=18, height=64, width=32, num_ids=16, images_per_id=4, epochs=2,
                        max_steps_per_epoch=2, batch_p=4, batch_k=2)


def _pretrain(tmp_path, **kwargs):
    return pretrain_backbone(TINY, output=tmp_path / "w" / "resnet18-synthetic.pth", data_root=tmp_path / "corpus",
                             run_dir=tmp_path / "run", device="cpu", num_workers=0, progress=False, **kwargs)


def test_pretrain_writes_a_backbone_that_the_weights_path_reads(tmp_path, monkeypatch):
    path = _pretrain(tmp_path)
    state = torch.load(path, weights_only=True)
    assert "conv1.weight" in state and "bn1.running_mean" in state and "layer4.1.bn2.weight" in state
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["settings"]["num_ids"] == 16 and meta["train_seconds"] > 0

    from reidlab.models import build_model

    monkeypatch.setenv("REIDLAB_WEIGHTS_DIR", str(path.parent))
    for pretrained in (str(path), "synthetic"):  # a path, or the name that finds the file
        bnneck = build_model("bnneck", num_classes=5, depth=18, pretrained=pretrained)
        assert bnneck.backbone.pretrained_loaded
        loaded = to_torchvision_names(bnneck.backbone.state_dict())
        assert all(torch.equal(loaded[k], state[k]) for k in state)
        mbgn = build_model("mbgn", num_classes=5, depth=18, pretrained=pretrained, input_size=(128, 64))
        assert torch.equal(mbgn.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
        assert torch.equal(mbgn.layer4_l[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_pretrain_is_cached_and_refuses_other_settings(tmp_path, monkeypatch):
    path = _pretrain(tmp_path)
    import reidlab.engine.trainer as trainer

    monkeypatch.setattr(trainer.Trainer, "fit", lambda self: pytest.fail("trained again"))
    assert _pretrain(tmp_path) == path  # cached: no training
    with pytest.raises(FileExistsError, match="other settings"):
        pretrain_backbone(PretrainSettings(**{**TINY.__dict__, "epochs": 3}), output=path, data_root=tmp_path / "corpus",
                          run_dir=tmp_path / "run2", device="cpu", num_workers=0, progress=False)


def test_a_stopped_pretraining_continues(tmp_path, capsys):
    with pytest.raises(TimeoutError, match="reidlab pretrain --epochs 2 to continue"):
        _pretrain(tmp_path, time_limit=1e-9, resume_command="reidlab pretrain --epochs 2")
    out = capsys.readouterr().out
    assert "continue with: reidlab pretrain --epochs 2" in out and "reidlab train" not in out  # its own command
    assert not (tmp_path / "w" / "resnet18-synthetic.pth").exists()  # no weights from a half-trained run
    path = _pretrain(tmp_path)
    assert path.exists()


def test_a_stopped_pretraining_can_export_its_partial_backbone_and_says_what_changed(tmp_path, capsys):
    """Issue 19: --export-partial writes the backbone so far, marked partial, under a name that
    pretrained="synthetic" never finds; a resume with other options names each change."""
    with pytest.raises(TimeoutError):
        _pretrain(tmp_path, time_limit=1e-9, export_partial=True)
    partial = tmp_path / "w" / "resnet18-synthetic.partial.pth"
    meta = json.loads(partial.with_suffix(".json").read_text())
    assert meta["partial"] is True and (meta["stopped_before_epoch"], meta["steps_done_in_that_epoch"]) == (1, 1)
    assert "conv1.weight" in torch.load(partial, weights_only=True)
    assert not (tmp_path / "w" / "resnet18-synthetic.pth").exists()
    capsys.readouterr()
    pretrain_backbone(PretrainSettings(**{**TINY.__dict__, "epochs": 1}), output=tmp_path / "w" / "resnet18-synthetic.pth",
                      data_root=tmp_path / "corpus", run_dir=tmp_path / "run", device="cpu", num_workers=0,
                      progress=False)
    out = capsys.readouterr().out
    assert "resume: epochs=1 (was 2)" in out


def test_the_corpus_counts_agree_and_say_why_they_differ(tmp_path, capsys):
    """Issue 19: images generated vs checked (18,126 vs 18,064 was seen): the difference is the
    junk images (pid -1) that the generator draws and every loader leaves out; both counts are said."""
    from reidlab.data.synthetic import load_synthetic, read_marker

    _pretrain(tmp_path)
    out = capsys.readouterr().out
    written = sum(read_marker(tmp_path / "corpus")["counts"].values())
    split = load_synthetic(tmp_path / "corpus", generate_if_missing=False)
    used = len(split.train) + len(split.query) + len(split.gallery)
    junk = len(list((tmp_path / "corpus").glob("*/-1_*.jpg")))
    assert written - used == junk
    assert f"corpus: {written:,} images generated; {used:,} used" in out and f"other {junk:,} are junk" in out


def test_synthetic_weights_missing_say_how_to_make_them(tmp_path, monkeypatch):
    from reidlab.models.backbone import ResNetBackbone

    monkeypatch.setenv("REIDLAB_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("REIDLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="reidlab pretrain --depth 34"):
        ResNetBackbone(depth=34, pretrained="synthetic")

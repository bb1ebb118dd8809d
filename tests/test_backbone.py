"""ResNet backbone: last stride, stage taps, local weight loading, never a download."""
from __future__ import annotations

import logging

import pytest
import torch
import torchvision

import reidlab.models.backbone as backbone_module
from reidlab.models.backbone import TORCHVISION_WEIGHT_FILES, ResNetBackbone, copy_stage


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """Empty torch hub cache, no REIDLAB_WEIGHTS_DIR, and any download attempt fails the test."""
    monkeypatch.delenv("REIDLAB_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))

    def forbidden(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", forbidden)
    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden)
    return tmp_path


def _saved_resnet18(folder) -> tuple:
    """A fresh torchvision resnet18 state_dict saved under torchvision's file name."""
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = folder / TORCHVISION_WEIGHT_FILES[18]
    torch.save(state, path)
    return path, state


def test_last_stride_one_doubles_the_last_map(no_download):
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        s2 = ResNetBackbone(18, last_stride=2, pretrained=False).eval()(images)
        s1 = ResNetBackbone(18, last_stride=1, pretrained=False).eval()(images)
    assert s2.shape == (2, 512, 2, 1)  # 64/32, 32/32
    assert s1.shape == (2, 512, 4, 2)  # 64/16, 32/16


@pytest.mark.parametrize("depth,channels", [(18, (64, 128, 256, 512)), (50, (256, 512, 1024, 2048))])
def test_stage_taps_have_the_documented_channels(no_download, depth, channels):
    net = ResNetBackbone(depth, last_stride=1, pretrained=False).eval()
    assert net.stage_channels == channels
    with torch.no_grad():
        taps = net(torch.randn(1, 3, 32, 16), return_stages=(1, 2, 3, 4))
    assert [t.shape[1] for t in taps] == list(channels)
    assert [tuple(t.shape[2:]) for t in taps] == [(8, 4), (4, 2), (2, 1), (2, 1)]  # last stride 1
    with torch.no_grad():
        assert torch.equal(net(torch.ones(1, 3, 32, 16)), net(torch.ones(1, 3, 32, 16), return_stages=(4,))[0])


def test_weights_load_from_weights_dir(no_download, monkeypatch, tmp_path):
    path, state = _saved_resnet18(tmp_path)
    monkeypatch.setenv("REIDLAB_WEIGHTS_DIR", str(tmp_path))
    net = ResNetBackbone(18, pretrained=True)
    assert net.pretrained_loaded
    assert torch.equal(net.stem[0].weight, state["conv1.weight"])
    assert torch.equal(net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_weights_load_from_explicit_path(no_download, tmp_path):
    path, state = _saved_resnet18(tmp_path)
    net = ResNetBackbone(18, pretrained=str(path))
    assert net.pretrained_loaded
    assert torch.equal(net.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_missing_explicit_file_is_a_clear_error(no_download, tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ResNetBackbone(18, pretrained=str(missing))


def test_wrong_file_is_an_error_naming_it(no_download, tmp_path):
    path = tmp_path / "resnet50-as-18.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="resnet50-as-18"):
        ResNetBackbone(18, pretrained=str(path))


def test_no_weights_warns_once_and_trains_from_scratch(no_download, caplog):
    with caplog.at_level(logging.WARNING, logger=backbone_module.__name__):
        net = ResNetBackbone(18, pretrained=True)
    assert not net.pretrained_loaded
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "\n" not in message and "from scratch" in message and TORCHVISION_WEIGHT_FILES[18] in message


def test_copy_stage_is_independent_and_restrided(no_download):
    net = ResNetBackbone(18, last_stride=1, pretrained=False)
    copy = copy_stage(net.layer4, stride=2)
    assert copy[0].conv1.stride == (2, 2) and net.layer4[0].conv1.stride == (1, 1)
    assert copy[0].conv1.weight.data_ptr() != net.layer4[0].conv1.weight.data_ptr()
    assert torch.equal(copy[0].conv1.weight, net.layer4[0].conv1.weight)


def test_eval_mode_restores_the_previous_mode_even_on_error():
    from reidlab.models import eval_mode

    net = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.Dropout(0.5))
    net.train()
    with eval_mode(net):
        assert not net.training and not net[0].training
    assert net.training and net[1].training
    with pytest.raises(RuntimeError):
        with eval_mode(net):
            raise RuntimeError("inside explain")
    assert net.training
    net.eval()
    with eval_mode(net):
        pass
    assert not net.training

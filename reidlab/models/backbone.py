"""ResNet backbones (torchvision) with a last-stride option and stage taps.

Weights are loaded through one documented path, :func:`load_imagenet_weights`:
an explicit file, the ``REIDLAB_WEIGHTS_DIR`` folder, or the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, torchvision's own file names). Nothing is ever
downloaded: these machines are offline, and a hanging download is worse than a
clear message. When no file is found, training starts from scratch and one
line says where to put the weights.

``pretrained="synthetic"`` reads the backbone that ``reidlab pretrain``
(:mod:`reidlab.engine.pretrain`) trained on a large synthetic corpus, the
workbench's stand-in for ImageNet: ``resnet{depth}-synthetic.pth`` in
``REIDLAB_WEIGHTS_DIR`` or ``data/pretrained/``; a missing file is an error that
says how to make it.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

log = logging.getLogger(__name__)

# torchvision's file names for its ImageNet weights (IMAGENET1K_V1).
TORCHVISION_WEIGHT_FILES = {
    18: "resnet18-f37072fd.pth",
    34: "resnet34-b627a593.pth",
    50: "resnet50-0676ba61.pth",
    101: "resnet101-63fe2227.pth",
}
STAGE_CHANNELS = {18: (64, 128, 256, 512), 34: (64, 128, 256, 512), 50: (256, 512, 1024, 2048), 101: (256, 512, 1024, 2048)}


def default_data_dir() -> Path:
    """``$REIDLAB_DATA_DIR``, else the ``data/`` folder of the working tree this package runs from
    (so a notebook in ``notebooks/`` and a command at the top level find the same files), else ./data."""
    if os.environ.get("REIDLAB_DATA_DIR"):
        return Path(os.environ["REIDLAB_DATA_DIR"])
    tree = Path(__file__).resolve().parents[2]
    if (tree / "pyproject.toml").exists() and (tree / "reidlab").is_dir():
        return tree / "data"
    return Path("data")


def synthetic_weight_file(depth: int, search: bool = True) -> Path:
    """The synthetic-pretrained ResNet-``depth`` file: the first that exists of
    ``$REIDLAB_WEIGHTS_DIR/resnet{depth}-synthetic.pth`` and ``data/pretrained/...`` (``search=False``:
    where ``reidlab pretrain`` writes it). Missing: a FileNotFoundError saying how to make it."""
    name = f"resnet{depth}-synthetic.pth"
    places = ([Path(os.environ["REIDLAB_WEIGHTS_DIR"]) / name] if os.environ.get("REIDLAB_WEIGHTS_DIR") else [])
    places.append(default_data_dir() / "pretrained" / name)
    if not search:
        return places[-1]
    for path in places:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no synthetic-pretrained ResNet-{depth} backbone (looked in "
                            f"{', '.join(str(p) for p in places)}); make it with `reidlab pretrain --depth {depth}`")


def weight_search_paths(depth: int) -> list[Path]:
    """Where :func:`load_imagenet_weights` looks for ResNet-``depth`` weights, in order."""
    name = TORCHVISION_WEIGHT_FILES[depth]
    paths = []
    if os.environ.get("REIDLAB_WEIGHTS_DIR"):
        paths.append(Path(os.environ["REIDLAB_WEIGHTS_DIR"]) / name)
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / name)
    return paths


def load_imagenet_weights(net: nn.Module, depth: int, weights: str | os.PathLike | None = None) -> bool:
    """Load ImageNet weights into a torchvision ResNet from a local file; never download.

    ``weights`` is a file path; when ``None`` the search paths of
    :func:`weight_search_paths` are tried. Returns whether weights were loaded.
    A file that exists but does not fit the network is an error naming the file.
    """
    candidates = [Path(weights)] if weights is not None else weight_search_paths(depth)
    if weights is not None and not candidates[0].is_file():
        raise FileNotFoundError(f"ImageNet weights file not found: {candidates[0]}")
    for path in candidates:
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            try:
                missing, unexpected = net.load_state_dict(state, strict=False)
            except RuntimeError as error:  # shape mismatch: say which file
                raise ValueError(f"{path} does not fit ResNet-{depth}: {error}") from error
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise ValueError(
                    f"{path} does not fit ResNet-{depth}: missing {missing[:5]}, unexpected {unexpected[:5]}"
                )
            log.info("loaded backbone weights from %s", path)
            return True
    log.warning(
        "No ImageNet weights for ResNet-%d (looked in %s); training from scratch. "
        "To use them, copy torchvision's %s into one of those places.",
        depth, ", ".join(str(p) for p in candidates), TORCHVISION_WEIGHT_FILES[depth],
    )
    return False


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier, its stages exposed by name.

    ``stem`` (conv1, bn1, relu, maxpool) and ``layer1`` .. ``layer4`` are the
    torchvision modules themselves, so paper models can insert attention after a
    stage or copy ``layer4`` into branches. ``forward`` returns the stage outputs
    asked for in ``return_stages`` (1..4), or the last one.
    """

    def __init__(self, depth: int = 50, last_stride: int = 1, pretrained: bool | str = True):
        super().__init__()
        if depth not in TORCHVISION_WEIGHT_FILES:
            raise ValueError(f"depth must be one of {sorted(TORCHVISION_WEIGHT_FILES)}, got {depth!r} ({type(depth).__name__})")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.pretrained_loaded = False
        if pretrained == "synthetic":
            pretrained = synthetic_weight_file(depth)
        if pretrained:
            self.pretrained_loaded = load_imagenet_weights(
                net, depth, pretrained if isinstance(pretrained, (str, os.PathLike)) else None
            )
        self.pretrained_source = str(pretrained) if self.pretrained_loaded else None
        if last_stride == 1:
            set_stride(net.layer4, 1)
        self.depth = depth
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.stage_channels = STAGE_CHANNELS[depth]
        self.out_channels = self.stage_channels[-1]

    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, images: torch.Tensor, return_stages: tuple[int, ...] | None = None):
        x = self.stem(images)  # (B, 64, H/4, W/4)
        taps = {}
        for i, stage in enumerate(self.stages(), start=1):
            x = stage(x)
            taps[i] = x
        if return_stages is None:
            return x  # (B, C4, H/16 or H/32, ...)
        return [taps[i] for i in return_stages]


def set_stride(layer: nn.Sequential, stride: int) -> nn.Sequential:
    """Set the spatial stride of a ResNet stage's first block (conv and shortcut) in place."""
    block = layer[0]
    conv = block.conv2 if hasattr(block, "conv3") else block.conv1  # Bottleneck strides in conv2
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)
    return layer


def copy_stage(layer: nn.Sequential, stride: int | None = None) -> nn.Sequential:
    """A deep copy of a stage (e.g. ``layer4`` for a new branch), optionally with a new stride."""
    new = copy.deepcopy(layer)
    if stride is not None:
        set_stride(new, stride)
    return new


def resnet_backbone(depth: int = 50, last_stride: int = 1, pretrained: bool | str = True) -> ResNetBackbone:
    """Builder with explicit arguments (torchvision style)."""
    return ResNetBackbone(depth=depth, last_stride=last_stride, pretrained=pretrained)

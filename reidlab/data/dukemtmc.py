"""DukeMTMC-reID (Zheng et al., ICCV 2017): the Market-1501 layout with names like
``0001_c2_f0046182.jpg`` (8 cameras); attributes from ``duke_attribute.mat``
(Lin et al., 23 attributes). See :mod:`reidlab.data.market1501`."""
from __future__ import annotations

from .keypoints import MARKET_FRAME
from .market1501 import load_market_layout
from .records import ReIDSplit


def load_dukemtmc(
    root,
    attribute_file="auto",
    keypoint_files="auto",
    name: str = "dukemtmc",
    keypoint_image_size: tuple[int, int] | None = None,
) -> ReIDSplit:
    """DukeMTMC-reID as a :class:`ReIDSplit`.

    ``"auto"`` finds ``duke_attribute.mat`` and ``duke-annotation-{train,test,query}.csv``
    in ``root``. Duke crops vary in size, so keypoint files for it must be in the
    pixels of the images on disk (or give ``keypoint_image_size`` for a fixed frame).
    """
    return load_market_layout(
        root, name, attribute_file, keypoint_files,
        auto_attribute_name="duke_attribute.mat", auto_keypoint_prefix="duke",
        keypoint_image_size=keypoint_image_size,
        # Duke crops vary in size: without keypoint_image_size the CSV is in pixels of each image.
        keypoint_annotation_size=MARKET_FRAME if keypoint_image_size is not None else None,
    )

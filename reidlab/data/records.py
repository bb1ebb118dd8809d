"""The one record type and the one split type every loader returns (torchreid's contract).

A dataset is three lists of :class:`ImageRecord` (train, query, gallery) in a
:class:`ReIDSplit`. Every loader in :mod:`reidlab.data` returns this shape, so
training, evaluation and the notebooks never care where the images came from.

Conventions (they hold for every loader):
- ``pid``: training ids are relabelled 0..N-1; query/gallery keep the dataset's
  own ids; distractors keep id 0 in the gallery; junk (id -1) never enters a split.
- ``camid``: 0-based.
- ``attributes``: ``(K,)`` int64 in the order of the split's :class:`AttributeSpec`,
  binary attributes as 0/1, multi-class ones (Market's ``age``) as 0..C-1;
  -1 where unknown.
- ``keypoints``: ``(17, 3)`` float32 in COCO-17 order (:data:`COCO17_NAMES`),
  columns ``x, y, visible`` in pixels of the image as stored on disk;
  a missing point is ``(-1, -1, 0)``.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# Index pairs swapped by a horizontal flip (left <-> right).
COCO17_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)
NUM_KEYPOINTS = len(COCO17_NAMES)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributeSpec:
    """Names and class counts of a dataset's attributes, in record order.

    ``num_classes[k] == 2`` is a binary attribute (0 = no / first class,
    1 = yes / second class); larger values are multi-class (Market's 4-class age).
    """

    names: tuple[str, ...]
    num_classes: tuple[int, ...]

    def __post_init__(self):
        if len(self.names) != len(self.num_classes):
            raise ValueError(
                f"AttributeSpec: {len(self.names)} names but {len(self.num_classes)} class counts"
            )

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def table(self):
        """A pandas DataFrame: one row per attribute with its kind and class count."""
        import pandas as pd

        return pd.DataFrame(
            {
                "attribute": list(self.names),
                "kind": ["binary" if c == 2 else "multi-class" for c in self.num_classes],
                "classes": list(self.num_classes),
            }
        )


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image: where it is, who it shows, from which camera, and optional labels."""

    path: str
    pid: int
    camid: int
    attributes: np.ndarray | None = None  # (K,) int64, see module docstring
    keypoints: np.ndarray | None = None  # (17, 3) float32: x, y, visible
    extra: dict = field(default_factory=dict)  # loader-specific (e.g. occluder mask path)


@dataclass(eq=False)
class ReIDSplit:
    """Train / query / gallery records of one dataset, plus what describes them."""

    name: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    attribute_spec: AttributeSpec | None = None  # None becomes an empty AttributeSpec (no attributes)
    root: str | None = None

    def __post_init__(self):
        # An empty spec rather than None: split.attribute_spec.table() / len() work on every dataset.
        if self.attribute_spec is None:
            self.attribute_spec = AttributeSpec((), ())

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    @property
    def has_attributes(self) -> bool:
        return bool(self.attribute_spec) and any(
            r.attributes is not None for r in self.train
        )

    @property
    def has_keypoints(self) -> bool:
        return any(r.keypoints is not None for r in self.train)

    def summary(self):
        """One row per subset: images, ids, cameras, attribute and keypoint coverage."""
        import pandas as pd

        rows = []
        for subset, records in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            with_kp = [r.keypoints for r in records if r.keypoints is not None]
            visible = float(np.mean([k[:, 2].mean() for k in with_kp])) if with_kp else 0.0
            rows.append(
                {
                    "subset": subset,
                    "images": len(records),
                    "ids": len({r.pid for r in records}),
                    "cameras": len({r.camid for r in records}),
                    "with_attributes": sum(r.attributes is not None for r in records),
                    "with_keypoints": len(with_kp),
                    "visible_keypoint_fraction": round(visible, 3),
                }
            )
        return pd.DataFrame(rows).set_index("subset")

    def __repr__(self) -> str:
        return (
            f"ReIDSplit({self.name!r}: train {len(self.train)} images / {self.num_train_pids} ids, "
            f"query {len(self.query)}, gallery {len(self.gallery)}, "
            f"attributes {len(self.attribute_spec) if self.attribute_spec else 0}, "
            f"keypoints {'yes' if self.has_keypoints else 'no'})"
        )


def relabel(records: list[ImageRecord]) -> list[ImageRecord]:
    """Training records with ids mapped to 0..N-1 in sorted order of the original ids."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [
        ImageRecord(r.path, mapping[r.pid], r.camid, r.attributes, r.keypoints, {**r.extra, "orig_pid": r.pid})
        for r in records
    ]


def id_counts(records: list[ImageRecord]) -> Counter:
    return Counter(r.pid for r in records)


REQUIREMENT_FIELDS = ("keypoints", "attributes")
_FIXES = {
    "keypoints": (
        "give every image keypoints: for Market-1501 put market1501_14point_{train,query,gallery}.mat "
        "(layumi/market1501_body_point) in the dataset folder; for any other dataset run the pose estimator "
        "once (reidlab.data.pose.estimate_split_keypoints(split, KeypointRCNNSource())), which writes the CSVs "
        "the loader reads"
    ),
    "attributes": "use an attribute file that covers every identity (e.g. market_attribute.mat / duke_attribute.mat)",
}


def missing_counts(split: "ReIDSplit", field_name: str) -> dict[str, tuple[int, int]]:
    """``{subset: (records without field_name, records)}`` for train, query and gallery."""
    if field_name not in REQUIREMENT_FIELDS:
        raise ValueError(f"missing_counts: field must be one of {REQUIREMENT_FIELDS}, got {field_name!r}")
    return {
        subset: (sum(getattr(r, field_name) is None for r in records), len(records))
        for subset, records in (("train", split.train), ("query", split.query), ("gallery", split.gallery))
    }


def check_requirements(split: "ReIDSplit", requires, allow_missing: bool = False, subsets=("train", "query", "gallery")) -> None:
    """Refuse a split in which some images lack what a model ``requires`` (``model.requires``).

    ``requires``: a set of ``"keypoints"`` / ``"attributes"`` (other names are ignored: they are
    not record fields). Raises ValueError naming, per subset, how many images lack each field
    and how to fix it; with ``allow_missing`` (the CLI's ``--allow-missing-keypoints``) it logs
    the same as a warning and returns (for ablations: missing keypoints give empty pose nodes).
    ``subsets`` limits the check (e.g. ("query", "gallery") before evaluation).
    """
    problems = []
    for field_name in sorted(set(requires) & set(REQUIREMENT_FIELDS)):
        counts = missing_counts(split, field_name)
        parts = [f"{subset} {missing}/{total}" for subset, (missing, total) in counts.items()
                 if subset in subsets and missing]
        if parts:
            problems.append(
                f"{split.name}: images without {field_name}: {', '.join(parts)}; the model requires {field_name}. "
                f"To fix, {_FIXES[field_name]}; or allow it explicitly (--allow-missing-keypoints / allow_missing=True)."
            )
    if not problems:
        return
    if allow_missing:
        for problem in problems:
            logger.warning("%s", problem.split(" To fix,")[0] + " (allowed: --allow-missing-keypoints)")
        return
    raise ValueError(" ".join(problems))

"""Identity-level attribute labels of Market-1501 and DukeMTMC-reID.

Files: ``market_attribute.mat`` (Lin et al., "Improving person re-identification
by attribute and identity learning", 27 attributes) and ``duke_attribute.mat``
(23 attributes). Each is a MATLAB struct with ``train`` and ``test`` parts; every
attribute is a ``(1, num_ids)`` row and ``image_index`` holds the id strings.

Choices, since the files are easy to misread:
- fields are read BY NAME: their order differs between ``train`` and ``test``;
- the 1/2 coding becomes 0/1 (value - 1); Market's ``age`` 1..4 becomes 0..3;
  a 0 in the file (two Duke ``top`` entries) means "not labelled" and becomes -1;
- the record order of attributes is the canonical order below (the ``train``
  field order of the released files).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .records import AttributeSpec

log = logging.getLogger(__name__)

_MARKET_NAMES = (
    "age", "backpack", "bag", "handbag",
    "downblack", "downblue", "downbrown", "downgray", "downgreen",
    "downpink", "downpurple", "downwhite", "downyellow",
    "upblack", "upblue", "upgreen", "upgray", "uppurple", "upred", "upwhite", "upyellow",
    "clothes", "down", "up", "hair", "hat", "gender",
)
MARKET_ATTRIBUTES = AttributeSpec(
    names=_MARKET_NAMES,
    num_classes=tuple(4 if name == "age" else 2 for name in _MARKET_NAMES),
)

_DUKE_NAMES = (
    "backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top",
    "downblack", "downwhite", "downred", "downgray", "downblue", "downgreen", "downbrown",
    "upblack", "upwhite", "upred", "uppurple", "upgray", "upblue", "upgreen", "upbrown",
)
DUKE_ATTRIBUTES = AttributeSpec(names=_DUKE_NAMES, num_classes=(2,) * len(_DUKE_NAMES))

# What class 0 / class 1 (and the age groups) mean, for tables and figures.
ATTRIBUTE_MEANINGS = {
    "age": ("young", "teenager", "adult", "old"),
    "clothes": ("dress", "pants"),
    "down": ("long lower-body clothing", "short"),
    "up": ("long sleeve", "short sleeve"),
    "hair": ("short hair", "long hair"),
    "gender": ("male", "female"),
    "top": ("short top", "long top"),
}

ID_FIELD = "image_index"
PARTS = ("train", "test")


def _id_strings(value, path: Path) -> list[str]:
    """``image_index`` as a list of strings, whichever way MATLAB/scipy stored it."""
    array = np.asarray(value)
    if array.dtype == object:
        return [str(np.asarray(item).ravel()[0]).strip() for item in array.ravel()]
    if array.dtype.kind in "US":
        one_char = array.dtype in (np.dtype("U1"), np.dtype("S1"))
        if array.ndim == 2 and one_char and array.shape[1] > 1:
            return ["".join(str(c) for c in row).strip() for row in array]  # char matrix, one id per row
        return [str(s).strip() for s in array.ravel()]
    if array.dtype.kind in "iuf":
        return [str(int(v)) for v in array.ravel()]
    raise ValueError(f"attribute file {path}: cannot read '{ID_FIELD}' of dtype {array.dtype}")


EXPECTED_LAYOUT = (
    "expected one struct variable (e.g. 'market_attribute') with parts 'train' and 'test', each a struct "
    f"with one (1, N) numeric field per attribute and '{ID_FIELD}' (the N id strings), as in Lin et al.'s files"
)


def _describe(value) -> str:
    array = np.asarray(value)
    return f"a {'x'.join(map(str, array.shape)) or 'scalar'} {array.dtype} array"


def _struct_fields(struct, path: Path, where: str) -> dict:
    """A loadmat struct (1x1 record array) as {field name: value}; ``where`` names it in errors."""
    if not (isinstance(struct, np.ndarray) and struct.dtype.names is not None and struct.size == 1):
        raise ValueError(f"attribute file {path}: {where} is not a 1x1 MATLAB struct (found {_describe(struct)}); "
                         f"{EXPECTED_LAYOUT}")
    record = struct.ravel()[0]
    return {name: record[name] for name in record.dtype.names}


def _attribute_row(value, path: Path, part: str, name: str) -> np.ndarray:
    """One attribute field as a flat int64 array, or an error naming the field."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or array.ndim > 2 or (array.ndim == 2 and min(array.shape) > 1):
        raise ValueError(f"attribute file {path}: field '{part}.{name}' must be a (1, N) numeric row, "
                         f"found {_describe(value)}")
    return array.astype(np.int64).ravel()


def read_attribute_file(path: str | os.PathLike):
    """Read a Market/Duke-format attribute ``.mat``.

    Returns ``(spec, parts)`` where ``parts = {"train": {pid: (K,) int64}, "test": {...}}``,
    the arrays in ``spec`` order. A Market or Duke file gets :data:`MARKET_ATTRIBUTES` /
    :data:`DUKE_ATTRIBUTES`; any other field set (e.g. a generated file) gets a spec in
    its ``train`` field order with ``num_classes`` = the largest value seen (at least 2).
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"attribute file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for non-.mat input
        raise ValueError(f"cannot read attribute file {path} as a MATLAB v5 .mat: {error}") from error
    top_keys = [k for k in mat if not k.startswith("__")]
    if len(top_keys) != 1:
        raise ValueError(f"attribute file {path}: found variables {top_keys}; {EXPECTED_LAYOUT}")
    top = _struct_fields(mat[top_keys[0]], path, f"variable '{top_keys[0]}'")
    missing_parts = [p for p in PARTS if p not in top]
    if missing_parts:
        raise ValueError(f"attribute file {path}: struct '{top_keys[0]}' lacks part(s) {missing_parts}")

    raw = {part: _struct_fields(top[part], path, f"'{top_keys[0]}.{part}'") for part in PARTS}
    for part in PARTS:
        if ID_FIELD not in raw[part]:
            raise ValueError(f"attribute file {path}: part '{part}' has no '{ID_FIELD}' field")
    train_names = tuple(n for n in raw["train"] if n != ID_FIELD)
    for part in PARTS:
        names = {n for n in raw[part] if n != ID_FIELD}
        if names != set(train_names):
            raise ValueError(
                f"attribute file {path}: parts 'train' and '{part}' name different attributes "
                f"({sorted(names ^ set(train_names))})"
            )

    values = {part: {n: _attribute_row(raw[part][n], path, part, n) for n in train_names} for part in PARTS}
    for part in PARTS:
        lengths = {n: len(v) for n, v in values[part].items()}
        if len(set(lengths.values())) > 1:
            shortest = min(lengths, key=lengths.get)
            longest = max(lengths, key=lengths.get)
            raise ValueError(f"attribute file {path}: part '{part}' has fields of different lengths "
                             f"('{shortest}': {lengths[shortest]}, '{longest}': {lengths[longest]})")
    if set(train_names) == set(MARKET_ATTRIBUTES.names):
        spec = MARKET_ATTRIBUTES
    elif set(train_names) == set(DUKE_ATTRIBUTES.names):
        spec = DUKE_ATTRIBUTES
    else:
        spec = AttributeSpec(
            names=train_names,
            num_classes=tuple(
                max(2, int(max(values[p][n].max(initial=0) for p in PARTS))) for n in train_names
            ),
        )

    parts: dict[str, dict[int, np.ndarray]] = {}
    for part in PARTS:
        ids = _id_strings(raw[part][ID_FIELD], path)
        try:
            pids = [int(s) for s in ids]
        except ValueError as error:
            raise ValueError(f"attribute file {path}: part '{part}' has a non-numeric id ({error})") from error
        table = np.stack([values[part][n] for n in spec.names], axis=1)  # (num_ids, K), 1-based codes
        if table.shape[0] != len(pids):
            raise ValueError(
                f"attribute file {path}: part '{part}' has {len(pids)} ids but {table.shape[0]} attribute rows"
            )
        limits = np.asarray(spec.num_classes)
        too_big = table > limits[None, :]
        if too_big.any() or (table < 0).any():
            row, col = np.argwhere(too_big | (table < 0))[0]
            raise ValueError(
                f"attribute file {path}: part '{part}', id {pids[row]}, attribute '{spec.names[col]}' "
                f"has value {table[row, col]}, outside 1..{limits[col]}"
            )
        coded = table - 1  # 1/2 -> 0/1, age 1..4 -> 0..3, 0 (unlabelled) -> -1
        part_map = {}
        for pid, row in zip(pids, coded):
            if pid in part_map:
                raise ValueError(f"attribute file {path}: id {pid} appears twice in part '{part}'")
            part_map[pid] = row.copy()  # shared by all images of the id: treat as read-only
        parts[part] = part_map
    return spec, parts


def write_attribute_file(path: str | os.PathLike, spec: AttributeSpec, parts: dict, struct_name: str = "market_attribute"):
    """Write ``parts`` (as returned by :func:`read_attribute_file`, 0-based codes) in the
    Market ``.mat`` format (1-based codes, ``image_index`` as 4-digit strings)."""
    import scipy.io

    content = {}
    for part in PARTS:
        pids = sorted(parts[part])
        rows = np.stack([np.asarray(parts[part][p], dtype=np.int64) for p in pids]) if pids else np.zeros((0, len(spec)), np.int64)
        fields = {name: (rows[:, k] + 1).astype(np.uint8)[None, :] for k, name in enumerate(spec.names)}
        index = np.empty((1, len(pids)), dtype=object)
        for i, pid in enumerate(pids):
            index[0, i] = f"{pid:04d}"
        fields[ID_FIELD] = index
        content[part] = fields
    scipy.io.savemat(str(path), {struct_name: content})
    return Path(path)


def report_attribute_coverage(subsets: dict, attribute_path, skip_pids=(0,)) -> dict[str, tuple[int, int]]:
    """``{subset: (images with attributes, images)}``; logs a warning naming the counts
    when some subset is only partly covered (e.g. "attributes cover 24/48 query images").

    ``subsets`` maps a name (train/query/gallery) to its records; records whose pid is
    in ``skip_pids`` (gallery distractors, which have no identity) are not counted.
    """
    coverage = {}
    for name, records in subsets.items():
        counted = [r for r in records if r.pid not in skip_pids]
        coverage[name] = (sum(r.attributes is not None for r in counted), len(counted))
    partial = {name: counts for name, counts in coverage.items() if counts[0] < counts[1]}
    if partial:
        listing = ", ".join(f"{covered}/{total} {name} images" for name, (covered, total) in partial.items())
        log.warning("attribute file %s covers only %s; the other images carry no attributes (-1, ignored by the "
                    "attribute losses)", attribute_path, listing)
    return coverage

"""Presets for the baselines: BNNeck (BoT-style strong baseline), PCB (MBGN's ablation
"Baseline", Table 2 / Table 3 "PCB"), MGN (MBGN Table 1 and Table 3).

They are the stand-alone architectures; the MBGN table rows themselves
("mbgn/table3/PCB", "mbgn/table3/MGN", ...) are built from the "mbgn" model
with flags, so that one code path differs only where the paper's rows differ.
All train with MBGN's settings (TrainConfig defaults: Adam 2e-4, constant 40
epochs then x0.98, P=16 x K=4; loss L_id + 2 L_tri, margin 1.2). Reported
figures are the numbers MBGN prints for that row (Market-1501, %).
"""
from __future__ import annotations

from reidlab.presets import Preset, register_preset

register_preset(
    Preset(
        name="baseline/bnneck",
        model="bnneck",
        model_cfg={"depth": 50, "last_stride": 1},
        train_cfg={"height": 256, "width": 128},
        paper="baseline",
        table="",
        row="BNNeck",
        notes="ResNet-50 + BNNeck (Luo et al. 2019) trained with MBGN's loss and schedule; no paper row.",
    )
)

register_preset(
    Preset(
        name="baseline/pcb",
        model="pcb",
        model_cfg={"depth": 50, "last_stride": 1, "num_stripes": 6, "reduction_dim": 256, "dropout": 0.5},
        train_cfg={"height": 256, "width": 128},
        paper="baseline",
        table="",
        row="PCB",
        reported={"market1501": {"rank1": 90.4, "mAP": 74.6}},
        notes=(
            "MBGN Sec. 4.4: the ablation Baseline is ResNet-50 + PCB with average segmentation; "
            "MBGN reports it as 92.2 / 82.0 in Table 2 (Baseline) and 90.4 / 74.6 in Table 3 (PCB)."
        ),
    )
)

register_preset(
    Preset(
        name="baseline/mgn",
        model="mgn",
        model_cfg={"depth": 50, "last_stride": 1, "part_counts": (0, 2, 3), "reduction_dim": 256},
        train_cfg={"height": 256, "width": 128},
        paper="baseline",
        table="",
        row="MGN",
        reported={"market1501": {"rank1": 91.3, "mAP": 78.7}},
        notes="MBGN Table 3 (same baseline training); MBGN Table 1 quotes MGN's own 95.7 / 86.9.",
    )
)

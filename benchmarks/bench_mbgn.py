"""MBGN speed against the Table 2 Baseline and BNNeck, new code paths against the reference ones (issue 9).

    python benchmarks/bench_mbgn.py                 # CPU, 1 thread, ~6 min; JSON in benchmarks/results/bench_mbgn.json
    python benchmarks/bench_mbgn.py --quick         # ResNet-18 only, fewer repeats (~2 min)
    python benchmarks/bench_mbgn.py --threads 2     # more threads (noisier on a shared machine)

What is measured, every contender of a group alternating within one run (A B C A B C ...),
each figure the minimum over the repeats after one warm-up:

- ``step``: forward + the declared loss (MBGN Eq. 8, batch 16 = 4 x 4) + backward, in fp32 and under
  bf16 autocast: Table 2 Baseline (PCB stripes) and MBGN (every component) for ResNet-18 and
  ResNet-50 at 128x64 and 256x128; for ResNet-18 also MBGN with the reference code paths
  (involution as 49 shifted multiply-adds under autograd, Eq. 2-5 through the N x N relation),
  i.e. the code before issue 9. ``ratio_mbgn_over_baseline`` is the issue's target (<= 2.0).
- ``eval``: evaluation images/s, forward only (no_grad, eval mode), ResNet-50 at 256x128:
  BNNeck and MBGN, fp32 and bf16. ``ratio_mbgn_over_bnneck_per_image`` (target <= 2.5).
- ``components``: one involution layer (forward + backward) and GSRPA's relation maps (Eq. 2-5,
  forward + backward) at layer-1 shapes, fast against reference.

Times are CPU time of this process (``time.process_time``; with one thread it is the
compute, and it does not count time the core spent on other processes of a shared
machine); wall time is saved alongside.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    from benchmarks.common import save_results  # noqa: E402
except ImportError:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import save_results  # noqa: E402

from reidlab.engine.precision import cpu_bf16_support, cpu_line, resolve_amp  # noqa: E402
from reidlab.losses import compute_loss  # noqa: E402
from reidlab.models import build_model  # noqa: E402
from reidlab.models.gsrpa import GSRPA, relation_maps, relation_maps_reference  # noqa: E402
from reidlab.models.involution import Involution, involution, involution_reference  # noqa: E402
from reidlab.presets.mbgn import BASELINE, FULL  # noqa: E402

NUM_CLASSES = 751


def use_reference_paths(model: torch.nn.Module) -> torch.nn.Module:
    """Switch every involution and GSRPA of ``model`` to the pre-issue-9 code paths (same results)."""
    for module in model.modules():
        if isinstance(module, Involution):
            module.reference = True
        if isinstance(module, GSRPA):
            module.literal_relation = True
    return model


def autocast(dtype: torch.dtype | None):
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def measure(contenders: dict, repeats: int) -> dict:
    """``{name: fn}`` -> ``{name: {"cpu_ms", "wall_ms"}}``: one warm-up each, then ``repeats`` alternating rounds."""
    for fn in contenders.values():
        fn()
    cpu = {name: [] for name in contenders}
    wall = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    return {name: {"cpu_ms": round(min(cpu[name]) * 1e3, 1), "wall_ms": round(min(wall[name]) * 1e3, 1)}
            for name in contenders}


def train_step(model, images, pids, dtype):
    def step():
        model.zero_grad(set_to_none=True)
        with autocast(dtype):
            out = model(images)
        out = {k: ([t.float() for t in v] if isinstance(v, list) else v) for k, v in out.items()}
        loss, _ = compute_loss(out, {"pid": pids}, model.loss_terms)
        loss.backward()
    return step


def bench_steps(depth: int, size: tuple[int, int], batch: int, dtypes: dict, repeats: int, reference: bool) -> dict:
    torch.manual_seed(0)
    pids = torch.arange(batch // 4).repeat_interleave(4)  # P x 4
    images = torch.randn(batch, 3, *size)
    models = {
        "Baseline": build_model("mbgn", num_classes=NUM_CLASSES, input_size=size, depth=depth, pretrained=False, **BASELINE),
        "MBGN": build_model("mbgn", num_classes=NUM_CLASSES, input_size=size, depth=depth, pretrained=False, **FULL),
    }
    if reference:
        models["MBGN_reference_paths"] = use_reference_paths(
            build_model("mbgn", num_classes=NUM_CLASSES, input_size=size, depth=depth, pretrained=False, **FULL))
    contenders = {f"{name}/{label}": train_step(model.train(), images, pids, dtype)
                  for label, dtype in dtypes.items() for name, model in models.items()
                  if not (name == "MBGN_reference_paths" and dtype is not None)}
    times = measure(contenders, repeats)
    row = {"batch": batch, "times": times}
    for label in dtypes:
        row[f"ratio_mbgn_over_baseline_{label}"] = round(
            times[f"MBGN/{label}"]["cpu_ms"] / times[f"Baseline/{label}"]["cpu_ms"], 2)
    if "bf16" in dtypes:
        row["baseline_speedup_fp32_to_bf16"] = round(times["Baseline/fp32"]["cpu_ms"] / times["Baseline/bf16"]["cpu_ms"], 2)
        row["mbgn_speedup_fp32_to_bf16"] = round(times["MBGN/fp32"]["cpu_ms"] / times["MBGN/bf16"]["cpu_ms"], 2)
    if reference:
        ref = times["MBGN_reference_paths/fp32"]["cpu_ms"]
        row["mbgn_speedup_fp32_vs_reference_paths"] = round(ref / times["MBGN/fp32"]["cpu_ms"], 2)
        if "bf16" in dtypes:
            row["mbgn_speedup_bf16_vs_reference_paths_fp32"] = round(ref / times["MBGN/bf16"]["cpu_ms"], 2)
    print(f"  ResNet-{depth} {size[0]}x{size[1]} batch {batch}: {row}", flush=True)
    return row


def bench_eval(depth: int, size: tuple[int, int], batch: int, dtypes: dict, repeats: int) -> dict:
    torch.manual_seed(0)
    images = torch.randn(batch, 3, *size)
    models = {
        "BNNeck": build_model("bnneck", num_classes=NUM_CLASSES, depth=depth, pretrained=False).eval(),
        "MBGN": build_model("mbgn", num_classes=NUM_CLASSES, input_size=size, depth=depth, pretrained=False, **FULL).eval(),
    }

    def forward(model, dtype):
        def run():
            with torch.no_grad(), autocast(dtype):
                model(images)["features"].float()
        return run

    contenders = {f"{name}/{label}": forward(model, dtype) for label, dtype in dtypes.items() for name, model in models.items()}
    times = measure(contenders, repeats)
    row = {"batch": batch, "times": times,
           "images_per_s": {name: round(batch / (t["cpu_ms"] / 1e3), 2) for name, t in times.items()}}
    for label in dtypes:
        row[f"ratio_mbgn_over_bnneck_per_image_{label}"] = round(
            times[f"MBGN/{label}"]["cpu_ms"] / times[f"BNNeck/{label}"]["cpu_ms"], 2)
    print(f"  eval ResNet-{depth} {size[0]}x{size[1]}: {row}", flush=True)
    return row


def bench_components(size: tuple[int, int], batch: int, repeats: int) -> dict:
    """Layer-1 shapes (C = 64, H/4 x W/4): one involution layer and Eq. 2-5, fast vs reference, forward + backward."""
    torch.manual_seed(0)
    H, W = size[0] // 4, size[1] // 4
    x = torch.randn(batch, 64, H, W, requires_grad=True)
    kernel = torch.randn(batch, 4, 49, H, W, requires_grad=True)
    gsrpa = GSRPA(64, (H, W)).train()
    out_1 = torch.randn(batch, 8, H * W, requires_grad=True)
    out_2 = torch.randn(batch, 8, H * W, requires_grad=True)

    def inv(fn):
        return lambda: fn(x, kernel).square().sum().backward()

    def rel(fn):
        return lambda: sum(m.square().sum() for m in fn(out_1, out_2, gsrpa.map_1, gsrpa.map_2, (H, W))[-2:]).backward()

    times = measure({"involution/fast": inv(involution), "involution/reference": inv(involution_reference),
                     "relation_maps/fast": rel(relation_maps), "relation_maps/reference": rel(relation_maps_reference)},
                    repeats)
    row = {"shape": [batch, 64, H, W], "times": times,
           "involution_speedup": round(times["involution/reference"]["cpu_ms"] / times["involution/fast"]["cpu_ms"], 2),
           "relation_maps_speedup": round(
               times["relation_maps/reference"]["cpu_ms"] / times["relation_maps/fast"]["cpu_ms"], 2)}
    print(f"  components {size[0]}x{size[1]}: {row}", flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="ResNet-18 only, no evaluation at ResNet-50")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtypes = {"fp32": None}
    if cpu_bf16_support() == "native":
        dtypes["bf16"] = resolve_amp("bf16", "cpu")
    else:  # emulated bf16 is many times slower than fp32: a figure that says nothing about bf16
        print(f"bf16 skipped: this CPU has no native bf16 ({cpu_bf16_support()}); fp32 only", flush=True)
    figures: dict = {"settings": {"threads": args.threads, "repeats": args.repeats,
                                  "cpu_bf16_support": cpu_bf16_support(),
                                  "amp_auto_on_cpu": str(resolve_amp("auto", "cpu"))}}
    print(f"CPU: {cpu_line()}; {args.threads} thread(s)", flush=True)
    for size in ((128, 64), (256, 128)):
        figures[f"components_{size[0]}x{size[1]}"] = bench_components(size, 16, args.repeats + 1)
    for size in ((128, 64), (256, 128)):
        figures[f"step_resnet18_{size[0]}x{size[1]}"] = bench_steps(18, size, 16, dtypes, args.repeats, reference=True)
    if not args.quick:
        for size in ((128, 64), (256, 128)):
            figures[f"step_resnet50_{size[0]}x{size[1]}"] = bench_steps(50, size, 16, dtypes, args.repeats, reference=False)
        figures["eval_resnet50_256x128"] = bench_eval(50, (256, 128), 16, dtypes, args.repeats)
    save_results("bench_mbgn", figures, "cpu")


if __name__ == "__main__":
    main()

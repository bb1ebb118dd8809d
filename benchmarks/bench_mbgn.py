"""Speed of MBGN and its ablations: forward+backward images/s, AABS's share of the forward, peak memory.

    python benchmarks/bench_mbgn.py            # CPU (ResNet-18, 128x64, batch 8) and, with CUDA, 384x128 batch 64 bf16
    python benchmarks/bench_mbgn.py --skip-cpu # CUDA only

Models: Table 2's Baseline (PCB stripes, no attention), Baseline+GSRPA, and MBGN (all components),
all the one ``"mbgn"`` model with flags. AABS's share: the time of Algorithm 1 on Branch l's
map of the batch (measured alone, same device and batch) over MBGN's (no-grad) forward time; also
the worst case, H + 1 repetitions (every repetition moving a plane), from the time of one.
Results: printed and saved to benchmarks/results/bench_mbgn.json.
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save_results  # noqa: E402

from reidlab.models.aabs import adjust_split_planes  # noqa: E402
from reidlab.models.mbgn import MBGN  # noqa: E402
from reidlab.presets.mbgn import BASELINE, FULL  # noqa: E402

MODELS = {
    "Baseline": BASELINE,
    "Baseline+GSRPA": {**BASELINE, "attention": "gsrpa"},
    "MBGN": FULL,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, iters: int) -> float:
    """Median seconds of ``iters`` calls (after the caller's warm-up)."""
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def bench_setting(device: torch.device, depth: int, size: tuple[int, int], batch: int, amp: bool, iters: int,
                  warmup: int, channels_last: bool) -> dict:
    results = {}

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()

    for name, flags in MODELS.items():
        torch.manual_seed(0)
        model = MBGN(num_classes=751, depth=depth, pretrained=False, input_size=size, **flags).to(device)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=memory_format).train()
        images = torch.randn(batch, 3, *size, device=device).to(memory_format=memory_format)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

        def step():
            with autocast():
                out = model(images)
                loss = sum(l.float().logsumexp(1).mean() for l in out["logits"]) + sum(
                    t.float().square().mean() for t in out["triplet"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def forward():
            with torch.no_grad(), autocast():
                model(images)

        for _ in range(warmup):
            step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step_s = _timed(step, device, iters)
        row = {"images_per_s": round(batch / step_s, 2), "step_ms": round(step_s * 1e3, 2)}
        if device.type == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        else:
            row["max_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        forward_s = _timed(forward, device, iters)
        row["forward_ms"] = round(forward_s * 1e3, 2)
        if flags.get("use_aabs"):
            with torch.no_grad(), autocast():
                local_map = model.explain(images).local_map  # (B, C, H, W) Branch l's map
            model.train()
            ratio = model.aabs[0].ratio
            result = adjust_split_planes(local_map, ratio)
            for _ in range(warmup):
                adjust_split_planes(local_map, ratio)
            aabs_s = _timed(lambda: adjust_split_planes(local_map, ratio), device, iters)
            row["aabs_ms"] = round(aabs_s * 1e3, 3)
            row["aabs_share_of_forward"] = round(aabs_s / forward_s, 4)
            row["aabs_repetitions"] = result.iterations
            # worst case: every repetition moves a plane, up to H repetitions (+1 confirming sweep)
            sweep_s = _timed(lambda: adjust_split_planes(local_map, ratio, max_iters=1), device, iters)
            row["aabs_one_repetition_ms"] = round(sweep_s * 1e3, 3)
            row["aabs_worst_case_share"] = round(sweep_s * (local_map.shape[2] + 1) / forward_s, 4)
            row["local_map"] = list(local_map.shape)
        results[name] = row
        print(f"  {name:16s} {row}", flush=True)
        del model, optimizer, images
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-cuda", action="store_true")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument("--cuda-batch", type=int, default=64)
    parser.add_argument("--channels-last", action="store_true", help="CUDA: channels_last memory format")
    args = parser.parse_args(argv)
    figures = {}
    if not args.skip_cpu:
        if args.cpu_threads:
            torch.set_num_threads(args.cpu_threads)
        print("CPU: ResNet-18, 128x64, batch 8, float32", flush=True)
        figures["cpu_resnet18_128x64_b8_fp32"] = bench_setting(
            torch.device("cpu"), 18, (128, 64), 8, amp=False, iters=args.iters, warmup=1, channels_last=False)
    device = "cpu"
    if torch.cuda.is_available() and not args.skip_cuda:
        device = "cuda"
        torch.backends.cudnn.benchmark = True
        key = f"cuda_resnet50_384x128_b{args.cuda_batch}_bf16" + ("_channels_last" if args.channels_last else "")
        print(f"CUDA ({torch.cuda.get_device_name()}): ResNet-50, 384x128, batch {args.cuda_batch}, bf16", flush=True)
        figures[key] = bench_setting(torch.device("cuda"), 50, (384, 128), args.cuda_batch, amp=True,
                                     iters=max(args.iters, 10), warmup=3, channels_last=args.channels_last)
    save_results("bench_mbgn", figures, device)


if __name__ == "__main__":
    main()

"""Training throughput (images/s) of the baselines: forward + loss + backward + Adam step.

CPU: ResNet-18, 128x64, batch P x K = 8 x 4, full precision.
CUDA (when present): ResNet-50, 256x128, batch 16 x 4 = 64, bf16 autocast, channels_last.
Random images (the data pipeline is not measured); the loss is each model's
declared total loss (MBGN Eq. 8). Saves benchmarks/results/bench_train.json.

    python benchmarks/bench_train.py [--models bnneck pcb mgn] [--steps 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reidlab.losses import compute_loss  # noqa: E402
from reidlab.models import build_model  # noqa: E402

try:
    from benchmarks.common import save_results  # noqa: E402
except ImportError:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import save_results  # noqa: E402

NUM_CLASSES = 751  # Market-1501 training ids


def measure(name: str, device: torch.device, depth: int, height: int, width: int, p: int, k: int,
            amp_dtype: torch.dtype | None, channels_last: bool, warmup: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, depth=depth, pretrained=False).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999))
    batch_size = p * k
    images = torch.randn(batch_size, 3, height, width, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    batch = {"image": images, "pid": torch.arange(p, device=device).repeat_interleave(k),
             "camid": torch.zeros(batch_size, dtype=torch.long, device=device)}

    def step():
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            outputs = model(batch["image"])
        outputs = {key: [t.float() for t in v] if isinstance(v, list) else v.float() for key, v in outputs.items()}
        total, _ = compute_loss(outputs, batch, model.loss_terms)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "images_per_s": round(batch_size * steps / seconds, 2),
        "step_ms": round(1000 * seconds / steps, 1),
        "depth": depth, "input": f"{height}x{width}", "batch": f"{p}x{k}",
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
        "channels_last": channels_last, "timed_steps": steps,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bnneck", "pcb", "mgn"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 on CPU, 20 on CUDA)")
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args(argv)

    figures: dict = {}
    cpu = torch.device("cpu")
    for name in args.models:
        result = measure(name, cpu, 18, 128, 64, 8, 4, None, False, warmup=1, steps=args.steps or 3)
        figures[f"cpu/{name}"] = result
        print(f"cpu  {name:>7}: {result['images_per_s']:8.1f} images/s ({result['step_ms']} ms/step)")
    device = cpu
    if torch.cuda.is_available() and not args.cpu_only:
        device = torch.device("cuda")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        torch.backends.cudnn.benchmark = True
        for name in args.models:
            result = measure(name, device, 50, 256, 128, 16, 4, dtype, True, warmup=5, steps=args.steps or 20)
            figures[f"cuda/{name}"] = result
            print(f"cuda {name:>7}: {result['images_per_s']:8.1f} images/s ({result['step_ms']} ms/step)")
    save_results("bench_train", figures, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())

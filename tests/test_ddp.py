"""DDP: two CPU processes on gloo (as torchrun would start them) train in lock-step."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data_root: str, out_dir: str) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from reidlab.config import TrainConfig
    from reidlab.data.synthetic import load_synthetic
    from reidlab.engine.distributed import cleanup
    from reidlab.engine.trainer import Trainer

    try:
        split = load_synthetic(data_root, generate_if_missing=False)
        cfg = TrainConfig(
            model="tiny", height=64, width=32,
            epochs=1, batch_p=4, batch_k=2, num_workers=0, max_steps_per_epoch=1, eval_every=-1,
            progress=False, device="cpu", output_dir=f"{out_dir}/run_rank{rank}",  # rank 1's folder must stay empty
        )
        from test_trainer import TinyReID  # tests/ is on sys.path (pytest's rootdir-relative import)

        trainer = Trainer(cfg, split=split, model=TinyReID(split.num_train_pids))
        assert trainer.dist.world_size == world_size and dist.get_backend() == "gloo"
        initial = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
        batches = [list(b) for b in trainer.sampler]
        trainer.fit()
        final = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
        torch.save({"initial": initial, "final": final, "first_batch": batches[0]}, f"{out_dir}/rank{rank}.pt")
    finally:
        cleanup()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
def test_two_ranks_hold_identical_weights_after_a_step(tmp_path, synthetic_root):
    mp.spawn(_worker, args=(2, _free_port(), str(synthetic_root), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    # each rank saw its own identities (DistributedSampler semantics of PKSampler)
    assert set(r0["first_batch"]).isdisjoint(r1["first_batch"])
    # same start, same end (gradients all-reduced), and the step moved the weights.
    # (BN running statistics are buffers, broadcast from rank 0 at each forward: not compared.)
    for name in r0["final"]:
        assert torch.equal(r0["initial"][name], r1["initial"][name]), name
        assert torch.allclose(r0["final"][name], r1["final"][name], atol=1e-6, rtol=0), name
    moved = [n for n in r0["final"] if not torch.equal(r0["final"][n], r0["initial"][n])]
    assert len(moved) > len(r0["final"]) // 2
    # only rank 0 writes logs and checkpoints
    assert (tmp_path / "run_rank0" / "checkpoint.pt").exists() and (tmp_path / "run_rank0" / "log.jsonl").exists()
    assert not (tmp_path / "run_rank1").exists() or not any((tmp_path / "run_rank1").iterdir())

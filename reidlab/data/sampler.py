"""P x K identity sampling for triplet training (Hermans et al., "In defense of the triplet loss", 2017).

Each batch holds ``P`` distinct identities and ``K`` images of each, so every
anchor has positives and negatives in the batch (batch-hard mining needs both).

Per epoch (as torchreid's RandomIdentitySampler): every identity's images are
shuffled and cut into chunks of ``K`` (an identity with fewer than ``K`` images is
filled up by sampling its images with replacement; a trailing part chunk is filled
the same way when the identity has at least ``K`` images), then batches take one
chunk from each of ``P`` identities drawn at random among those with chunks left.
An epoch therefore sees about every image once.

Distributed (DDP): all ranks draw the same identity permutation for the epoch
and rank ``r`` keeps identities ``r, r + world_size, ...``, so ranks work on
disjoint identities; every rank yields the same number of batches (the smallest
over ranks) so that collective ops stay in step.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKSampler(Sampler[list[int]]):
    """Batch sampler: yields lists of ``p * k`` dataset indices (use as ``batch_sampler=``)."""

    def __init__(self, pids: Sequence[int], p: int, k: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True):
        if p < 1 or k < 1:
            raise ValueError(f"PKSampler: p and k must be >= 1, got p={p}, k={k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"PKSampler: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.index_of: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            self.index_of[int(pid)].append(index)
        self.identities = sorted(self.index_of)
        per_rank = len(self.identities) // world_size
        if per_rank < p:
            raise ValueError(
                f"PKSampler: p={p} identities per batch but only {len(self.identities)} identities"
                + (f" ({per_rank} per rank over {world_size} ranks)" if world_size > 1 else "")
            )
        self.p, self.k = int(p), int(k)
        self.seed, self.rank, self.world_size, self.drop_last = int(seed), int(rank), int(world_size), bool(drop_last)
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (call before each epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def _rank_batches(self, rng_seed, identities: list[int]) -> list[list[int]]:
        rng = np.random.default_rng(rng_seed)
        chunks: dict[int, list[list[int]]] = {}
        for pid in identities:
            indices = np.array(self.index_of[pid])
            rng.shuffle(indices)
            if len(indices) < self.k:  # all images once, the rest with replacement
                indices = np.concatenate([indices, rng.choice(indices, self.k - len(indices), replace=True)])
            elif len(indices) % self.k:  # fill the last chunk with images not already in it
                rest = len(indices) % self.k
                indices = np.concatenate([indices, rng.choice(indices[:-rest], self.k - rest, replace=False)])
            chunks[pid] = [indices[i:i + self.k].tolist() for i in range(0, len(indices), self.k)]
        batches = []
        available = [pid for pid in identities if chunks[pid]]
        while len(available) >= self.p:
            chosen = rng.choice(len(available), self.p, replace=False)
            batch = []
            for i in chosen:
                batch += chunks[available[i]].pop()
            batches.append(batch)
            available = [pid for pid in available if chunks[pid]]
        if available and not self.drop_last:
            batches.append([i for pid in available for i in chunks[pid].pop()])
        return batches

    def _batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.identities))
        usable = len(self.identities) // self.world_size * self.world_size  # equal shares
        shared = [self.identities[i] for i in order[:usable]]
        per_rank = [
            self._rank_batches([self.seed, self.epoch, 1 + r], shared[r::self.world_size]) for r in range(self.world_size)
        ]
        length = min(len(b) for b in per_rank)
        batches = per_rank[self.rank][:length]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())

    def __repr__(self) -> str:
        return (f"PKSampler(P={self.p}, K={self.k}, {len(self.identities)} identities, rank {self.rank}/{self.world_size}, "
                f"{len(self)} batches per epoch)")


class SeededBatches:
    """The batches of ``sampler`` for one epoch, from step ``start`` on, each index paired with a seed.

    ``ReIDDataset[(index, seed)]`` draws the sample's augmentation from ``seed``, which depends only on
    (``seed``, epoch, step, position in the batch): the same in every worker and after a resume in the
    middle of an epoch, so that a run stopped at any step boundary continues exactly.
    """

    def __init__(self, sampler: PKSampler, seed: int, start: int = 0, stop: int | None = None):
        self.sampler, self.seed, self.start, self.stop = sampler, int(seed), int(start), stop

    def _range(self) -> range:
        total = len(self.sampler)
        stop = total if self.stop is None else min(total, self.stop)
        return range(min(self.start, stop), stop)

    def sample_seed(self, step: int, position: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.sampler.epoch, step, position]).generate_state(1)[0])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches = self.sampler._batches()
        for step in self._range():
            yield [(index, self.sample_seed(step, position)) for position, index in enumerate(batches[step])]

    def __len__(self) -> int:
        return len(self._range())

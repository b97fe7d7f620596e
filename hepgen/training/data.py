"""Jet point clouds for training: a Lightning data module with multiplicity bucketing.

Jets are sorted by multiplicity into buckets and each batch is drawn from one bucket,
then trimmed to the largest multiplicity it holds (seed 000 sec. 5.5.6), so little
compute goes to padding. Under DDP every rank takes its own share of the batches
(the sampler reads rank and world size from ``torch.distributed``).
"""

from __future__ import annotations

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler


class JetCloudDataset(Dataset):
    """Scaled particles (N, P, 3), masks (N, P) and optional per-jet extras as tensors."""

    def __init__(self, scaled: np.ndarray, mask: np.ndarray, *extras: np.ndarray):
        self.x = torch.as_tensor(scaled, dtype=torch.float32)
        self.mask = torch.as_tensor(mask, dtype=torch.bool)
        self.extras = [torch.as_tensor(e, dtype=torch.float32) for e in extras]
        self.n = self.mask.sum(1).numpy()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return (self.x[i], self.mask[i], *(e[i] for e in self.extras))


def trim_collate(batch):
    """Stack a batch and cut particles to its largest multiplicity."""
    x, mask, *extras = (torch.stack(items) for items in zip(*batch))
    width = max(int(mask.sum(1).max()), 1)
    return (x[:, :width], mask[:, :width], *extras)


def stack_collate(batch):
    """Stack a batch, keeping all P slots (flows on the flattened cloud)."""
    return tuple(torch.stack(items) for items in zip(*batch))


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of jets with similar multiplicity, in random order every epoch."""

    def __init__(self, multiplicities: np.ndarray, batch_size: int, num_buckets: int = 10, seed: int = 0,
                 drop_last: bool = True, epoch_source=None):
        self.n = np.asarray(multiplicities)
        self.batch_size = batch_size
        self.num_buckets = max(1, num_buckets)
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        # The epoch of each order comes from ``epoch_source()`` (the trainer's epoch
        # counter, restored on --resume) when given, read when the first batch is drawn:
        # Lightning creates the iterator of a resumed run before it restores the counter.
        self.epoch_source = epoch_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rank_world(self):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = np.argsort(self.n + rng.random(len(self.n)), kind="stable")  # random ties
        batches = []
        for bucket in np.array_split(order, self.num_buckets):
            bucket = rng.permutation(bucket)
            for s in range(0, len(bucket), self.batch_size):
                b = bucket[s : s + self.batch_size]
                if len(b) == self.batch_size or (not self.drop_last and len(b)):
                    batches.append(b.tolist())
        rng.shuffle(batches)
        rank, world = self._rank_world()
        usable = len(batches) - len(batches) % world if world > 1 else len(batches)
        return batches[rank:usable:world]

    def __iter__(self):
        if self.epoch_source is not None:
            self.epoch = int(self.epoch_source())
        batches = self._batches()
        self.epoch += 1
        yield from batches

    def __len__(self) -> int:
        rank, world = self._rank_world()
        per_bucket = [len(b) for b in np.array_split(np.arange(len(self.n)), self.num_buckets)]
        if self.drop_last:
            total = sum(k // self.batch_size for k in per_bucket)
        else:
            total = sum(-(-k // self.batch_size) for k in per_bucket)
        return (total - total % world) // world if world > 1 else total


class JetDataModule(LightningDataModule):
    def __init__(self, scaled: np.ndarray, mask: np.ndarray, *extras: np.ndarray, batch_size: int = 256,
                 num_buckets: int = 10, seed: int = 0, num_workers: int = 0, trim: bool = True):
        super().__init__()
        self.dataset = JetCloudDataset(scaled, mask, *extras)
        self.trim = trim
        self.batch_size = min(batch_size, len(self.dataset))
        self.num_buckets = num_buckets if len(self.dataset) >= num_buckets * self.batch_size else 1
        self.seed = seed
        self.num_workers = num_workers

    def _trainer_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def train_dataloader(self):
        sampler = BucketBatchSampler(self.dataset.n, self.batch_size, self.num_buckets, self.seed,
                                     epoch_source=self._trainer_epoch)
        collate = trim_collate if self.trim else stack_collate
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)

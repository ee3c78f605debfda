"""A batch sampler whose output depends only on (seed, global step, rank), for exact resume."""

import numpy as np
import paddle


def sample_seed(seed, epoch, index):
    """Return the augmentation seed of one sample in one epoch, a 31-bit int.

    The dataset seeds Python's ``random`` and NumPy with it before augmenting, so the patch a
    sample yields does not depend on worker processes or on where a run was resumed.
    """
    mixed = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0]
    return int(mixed) & 0x7FFFFFFF


class StepBatchSampler(paddle.io.BatchSampler):
    """Seeded, resumable, rank-aware batch sampler.

    Epoch ``e`` visits ``RandomState(seed + e).permutation(num_samples)`` (or ``arange`` when
    ``shuffle`` is False), padded by wrapping around to a multiple of ``world_size``; rank ``r``
    takes every ``world_size``-th entry from ``r``, as SimpleCV's ``StepDistributedSampler`` does.
    Each batch is a list of ``(index, sample_seed)`` tuples.

    Args:
        num_samples: size of the dataset.
        batch_size: samples per batch on this rank.
        seed: base seed (the config's ``train.seed``).
        shuffle: permute each epoch.
        drop_last: drop a last partial batch (the official loader keeps it).
        rank: this process's rank.
        world_size: number of data-parallel processes.
    """

    def __init__(self, num_samples, batch_size, seed=2333, shuffle=True, drop_last=False, rank=0, world_size=1):
        if num_samples <= 0:
            raise ValueError('StepBatchSampler needs at least one sample, got %d' % num_samples)
        if batch_size <= 0:
            raise ValueError('batch_size must be positive, got %d' % batch_size)
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = int(rank)
        self.world_size = int(world_size)
        self._per_rank = -(-self.num_samples // self.world_size)
        if self.drop_last and self._per_rank < self.batch_size:
            raise ValueError(
                'with drop_last, %d samples per rank make no batch of %d' % (self._per_rank, self.batch_size)
            )
        self._epoch = 0
        self._skip = 0

    def __len__(self):
        if self.drop_last:
            return self._per_rank // self.batch_size
        return -(-self._per_rank // self.batch_size)

    def set_start_step(self, global_step):
        """Make the next ``__iter__`` start at the batch that ``global_step`` falls on."""
        self._epoch, self._skip = divmod(int(global_step), len(self))

    @property
    def epoch(self):
        """The epoch that the next ``__iter__`` yields."""
        return self._epoch

    def epoch_indices(self, epoch):
        """Return this rank's sample indices for ``epoch`` (before batching)."""
        if self.shuffle:
            order = np.random.RandomState(self.seed + epoch).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        padded = np.resize(order, self._per_rank * self.world_size)
        return padded[self.rank :: self.world_size]

    def __iter__(self):
        epoch, skip = self._epoch, self._skip
        self._epoch, self._skip = epoch + 1, 0
        indices = self.epoch_indices(epoch)
        for batch_index in range(skip, len(self)):
            chunk = indices[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            yield [(int(i), sample_seed(self.seed, epoch, i)) for i in chunk]

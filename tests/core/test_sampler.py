import itertools

import pytest

from simplecv.data.sampler import StepBatchSampler, sample_seed


def _take(sampler, count):
    """The next ``count`` batches, re-iterating across epochs as a trainer does."""
    out = []
    while len(out) < count:
        out.extend(itertools.islice(iter(sampler), count - len(out)))
    return out


def test_each_epoch_is_a_permutation_with_a_last_partial_batch():
    sampler = StepBatchSampler(10, 4, seed=7)
    assert len(sampler) == 3
    for _ in range(2):
        batches = list(sampler)
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(i for b in batches for i, _ in b) == list(range(10))
    assert StepBatchSampler(10, 4, drop_last=True).__len__() == 2


def test_epochs_differ_and_runs_repeat():
    first, second = StepBatchSampler(50, 5, seed=1), StepBatchSampler(50, 5, seed=1)
    assert _take(first, 30) == _take(second, 30)
    epoch0, epoch1 = _take(StepBatchSampler(50, 5, seed=1), 20)[:10], _take(StepBatchSampler(50, 5, seed=1), 20)[10:]
    assert [i for b in epoch0 for i, _ in b] != [i for b in epoch1 for i, _ in b]
    assert _take(StepBatchSampler(50, 5, seed=2), 10) != epoch0


@pytest.mark.parametrize('start', [0, 3, 7, 10, 23])
def test_set_start_step_resumes_exactly(start):
    reference = _take(StepBatchSampler(37, 5, seed=3), 30)
    resumed = StepBatchSampler(37, 5, seed=3)
    resumed.set_start_step(start)
    assert _take(resumed, 30 - start) == reference[start:]


def test_sample_seeds_depend_on_epoch_and_index_only():
    assert sample_seed(1, 0, 5) == sample_seed(1, 0, 5)
    assert len({sample_seed(1, e, i) for e in range(3) for i in range(100)}) == 300
    batch = next(iter(StepBatchSampler(8, 8, seed=1)))
    assert all(seed == sample_seed(1, 0, index) for index, seed in batch)


def test_ranks_split_the_padded_permutation():
    ranks = [StepBatchSampler(11, 2, seed=4, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    seen = [[i for b in list(s) for i, _ in b] for s in ranks]
    assert len(seen[0]) == len(seen[1]) == 6
    assert set(seen[0]) | set(seen[1]) == set(range(11))


def test_invalid_arguments():
    with pytest.raises(ValueError, match='at least one sample'):
        StepBatchSampler(0, 2)
    with pytest.raises(ValueError, match='no batch'):
        StepBatchSampler(3, 4, drop_last=True)

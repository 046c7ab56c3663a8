"""Token batching invariants and collation."""

import numpy as np
import pytest

from hat.data.batching import TokenBatcher
from hat.data.dataset import DataDir
from hat.data.tokenizer import EOS_ID, PAD_ID
from hat.errors import HatError


@pytest.fixture(scope="module")
def sizes():
    rng = np.random.default_rng(0)
    src = rng.integers(2, 120, size=5000)
    tgt = np.clip(src + rng.integers(-10, 10, size=5000), 2, None)
    return src, tgt


def test_no_batch_over_max_tokens_counting_padding(sizes):
    src, tgt = sizes
    for max_tokens in (256, 1000, 4096):
        batcher = TokenBatcher(src, tgt, max_tokens=max_tokens)
        for batch in batcher.batches(epoch=1):
            assert len(batch) * max(src[batch].max(), tgt[batch].max()) <= max_tokens


def test_every_pair_exactly_once_per_epoch(sizes):
    src, tgt = sizes
    batcher = TokenBatcher(src, tgt, max_tokens=2048)
    for epoch in (1, 2):
        seen = np.concatenate(batcher.batches(epoch))
        assert sorted(seen.tolist()) == list(range(len(src)))


def test_same_seed_same_order_new_epoch_new_order(sizes):
    src, tgt = sizes
    a = TokenBatcher(src, tgt, max_tokens=2048, seed=3).batches(1)
    b = TokenBatcher(src, tgt, max_tokens=2048, seed=3).batches(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False)) and len(a) == len(b)
    c = TokenBatcher(src, tgt, max_tokens=2048, seed=3).batches(2)
    d = TokenBatcher(src, tgt, max_tokens=2048, seed=4).batches(1)
    flat = np.concatenate(a)
    assert not np.array_equal(flat, np.concatenate(c))
    assert not np.array_equal(flat, np.concatenate(d))


def test_batches_are_length_bucketed(sizes):
    src, tgt = sizes
    cost = np.maximum(src, tgt)
    batches = TokenBatcher(src, tgt, max_tokens=2048).batches(1)
    spread = np.mean([cost[b].max() - cost[b].min() for b in batches])
    assert spread <= 2  # sorted by length: a batch holds (nearly) equal lengths


def test_shards_partition_the_epoch(sizes):
    src, tgt = sizes
    full = TokenBatcher(src, tgt, max_tokens=1500, seed=9).batches(1)
    shards = [
        TokenBatcher(src, tgt, max_tokens=1500, seed=9, num_shards=3, shard_id=k).batches(1)
        for k in range(3)
    ]
    assert sum(map(len, shards)) == len(full)
    ids = np.concatenate([np.concatenate(s) for s in shards])
    assert sorted(ids.tolist()) == list(range(len(src)))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_max_sentences_and_filtering_are_counted(sizes):
    src, tgt = sizes
    batcher = TokenBatcher(src, tgt, max_tokens=100_000, max_sentences=16)
    assert max(len(b) for b in batcher.batches(1)) == 16
    long_src = src.copy()
    long_src[:7] = 500
    filtered = TokenBatcher(long_src, tgt, max_tokens=4096, max_positions=(256, 256))
    assert filtered.report.too_long == 7 and filtered.report.kept == len(src) - 7
    assert "7 longer than max positions" in str(filtered.report)
    assert not set(np.concatenate(filtered.batches(1)).tolist()) & set(range(7))
    small = TokenBatcher(src, tgt, max_tokens=60)
    assert small.report.over_max_tokens == int((np.maximum(src, tgt) > 60).sum())
    with pytest.raises(HatError, match="no pair fits"):
        TokenBatcher(src, tgt, max_tokens=1)


def test_collate(toy_bin):
    ds = DataDir(toy_bin).split("valid")
    batch = ds.collate([3, 0, 7])
    assert batch.src_tokens.shape[0] == 3 and len(batch) == 3
    for row, i in enumerate([3, 0, 7]):
        n_src, n_tgt = len(ds.src[i]), len(ds.tgt[i])
        assert batch.src_tokens[row, :n_src].tolist() == ds.src[i].tolist()
        assert batch.src_tokens[row, n_src] == EOS_ID
        assert (batch.src_tokens[row, n_src + 1 :] == PAD_ID).all()
        assert batch.src_lengths[row] == n_src + 1
        assert batch.prev_output_tokens[row, 0] == EOS_ID
        assert batch.prev_output_tokens[row, 1 : n_tgt + 1].tolist() == ds.tgt[i].tolist()
        assert batch.target[row, :n_tgt].tolist() == ds.tgt[i].tolist()
        assert batch.target[row, n_tgt] == EOS_ID
    assert batch.ntokens == sum(len(ds.tgt[i]) + 1 for i in [3, 0, 7])
    assert batch.src_lengths.tolist() == [int(ds.src_sizes[i]) for i in [3, 0, 7]]

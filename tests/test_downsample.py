"""Downsampling for charts: pure functions over numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

from labtrack._server.downsample import downsample, select_range


def test_short_series_is_returned_whole() -> None:
    y = np.array([1.0, np.nan, 3.0])
    d = downsample(np.arange(3), y, 2000)
    assert not d.downsampled
    assert d.index.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(d.low, y)
    np.testing.assert_array_equal(d.high, y)


def test_long_series_keeps_ends_and_at_most_points() -> None:
    rng = np.random.default_rng(0)
    n = 100_003  # not a multiple of the bucket size: the last bucket is shorter
    y = rng.normal(size=n)
    d = downsample(np.arange(n), y, 2000)
    assert d.downsampled
    assert len(d.index) <= 2000
    assert d.index[0] == 0 and d.index[-1] == n - 1
    assert np.all(np.diff(d.index) > 0)
    assert len(d.low) == len(d.high) == len(d.index)
    # the envelope covers every value of the series
    assert d.low.min() == y.min() and d.high.max() == y.max()


def test_envelope_holds_each_bucket_and_the_drawn_point() -> None:
    rng = np.random.default_rng(1)
    n = 50_000
    y = rng.normal(size=n)
    d = downsample(np.arange(n), y, 500)
    drawn = y[d.index]
    assert np.all(d.low <= drawn) and np.all(drawn <= d.high)


def test_a_single_spike_is_never_hidden() -> None:
    n = 1_000_000
    y = np.zeros(n)
    y[654_321] = 1e9
    y[123_457] = -5.0
    d = downsample(np.arange(n), y, 1000)
    assert d.high.max() == 1e9
    assert d.low.min() == -5.0
    # the representative point is the spike (a large triangle), not a neighbour
    assert 654_321 in d.index.tolist()


def test_nan_and_infinities() -> None:
    n = 10_000
    y = np.linspace(0, 1, n)
    y[100:300] = np.nan  # a whole bucket of NaN shows as a gap
    y[5000] = np.inf
    y[7000] = -np.inf
    d = downsample(np.arange(n), y, 100)
    assert np.nanmax(d.high) == np.inf
    assert np.nanmin(d.low) == -np.inf
    assert np.isnan(d.low).any()  # the all-NaN bucket
    finite_buckets = ~np.isnan(d.low)
    assert np.all(d.low[finite_buckets] <= d.high[finite_buckets])
    assert 5000 in d.index.tolist() and 7000 in d.index.tolist()


def test_time_axis_and_unordered_steps() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    steps = np.concatenate([np.arange(10_000), np.arange(5_000, 15_000)])  # a resumed run
    y = rng.normal(size=n)
    d = downsample(steps, y, 300)
    assert np.all(np.diff(d.index) > 0)  # file order kept
    t = 1.7e9 + np.arange(n) * 0.01
    d2 = downsample(t, y, 300)
    assert len(d2.index) <= 300


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="points must be at least 3"):
        downsample(np.arange(5), np.zeros(5), 2)
    with pytest.raises(ValueError, match="x has 4 values but y has 5"):
        downsample(np.arange(4), np.zeros(5), 10)


def test_select_range_ordered_includes_neighbours() -> None:
    x = np.arange(0, 100, 10)
    assert select_range(x, 25, 55, ordered=True).tolist() == [2, 3, 4, 5, 6]
    assert select_range(x, None, 5, ordered=True).tolist() == [0, 1]
    assert select_range(x, 95, None, ordered=True).tolist() == [9]
    assert select_range(x, 41, 49, ordered=True).tolist() == [4, 5]  # an empty gap
    assert select_range(x, 500, 600, ordered=True).tolist() == [9]
    assert select_range(np.zeros(0), 1, 2, ordered=True).tolist() == []


def test_select_range_unordered_matches_a_mask() -> None:
    x = np.array([5, 1, 7, 3, 9, 2])
    assert select_range(x, 2, 5, ordered=False).tolist() == [0, 3, 5]
    assert select_range(x, 8, 10, ordered=False).tolist() == [3, 4, 5]
    assert select_range(x, 100, 200, ordered=False).tolist() == []

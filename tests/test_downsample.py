"""Largest-Triangle-Three-Buckets keeps a curve's shape in at most the points asked for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiplatform.downsample import largest_triangle_three_buckets as lttb

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def curves(draw: st.DrawFn, min_size: int = 0) -> tuple[list[int], list[float]]:
    """Points at strictly increasing steps, unevenly spaced like a resumed run's reports."""
    gaps = draw(st.lists(st.integers(min_value=1, max_value=50), min_size=min_size, max_size=400))
    xs = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    ys = draw(st.lists(finite, min_size=len(xs), max_size=len(xs)))
    return xs, ys


@given(curves(), st.integers(min_value=2, max_value=500))
def test_never_more_points_than_asked_and_a_subsequence_in_order(
    curve: tuple[list[int], list[float]], threshold: int
) -> None:
    xs, ys = curve
    kept = lttb(xs, ys, threshold)
    assert len(kept) <= threshold
    assert kept == sorted(set(kept))
    assert all(0 <= i < len(xs) for i in kept)


@given(curves(min_size=1), st.integers(min_value=2, max_value=500))
def test_the_first_and_last_points_are_kept(
    curve: tuple[list[int], list[float]], threshold: int
) -> None:
    xs, ys = curve
    kept = lttb(xs, ys, threshold)
    assert kept[0] == 0
    assert kept[-1] == len(xs) - 1


@given(curves(), st.integers(min_value=2, max_value=500))
def test_a_curve_with_no_more_points_than_asked_comes_back_whole(
    curve: tuple[list[int], list[float]], threshold: int
) -> None:
    xs, ys = curve
    if len(xs) <= threshold:
        assert lttb(xs, ys, threshold) == list(range(len(xs)))
    else:
        assert len(lttb(xs, ys, threshold)) == threshold


@given(
    noise=st.lists(st.floats(min_value=-1, max_value=1), min_size=200, max_size=2000),
    peak_at=st.floats(min_value=0.02, max_value=0.45),
    dip_at=st.floats(min_value=0.55, max_value=0.98),
    height=st.floats(min_value=20, max_value=1e4),
    threshold=st.integers(min_value=20, max_value=150),
)
def test_the_peak_and_the_dip_of_a_spiky_series_survive(
    noise: list[float], peak_at: float, dip_at: float, height: float, threshold: int
) -> None:
    """A loss that spikes once and collapses once, in noise: both extremes are drawn."""
    ys = list(noise)
    peak, dip = int(peak_at * len(ys)), int(dip_at * len(ys))
    ys[peak], ys[dip] = height, -height
    xs = list(range(len(ys)))
    kept = lttb(xs, ys, threshold)
    assert peak in kept
    assert dip in kept


def test_a_decaying_loss_keeps_its_ends_and_its_spike() -> None:
    xs = list(range(100_000))
    ys = [10 / (1 + x / 1000) for x in xs]
    ys[61_234] = 50.0
    kept = lttb(xs, ys, 500)
    assert len(kept) == 500
    assert {0, 61_234, 99_999} <= set(kept)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        lttb([1, 2, 3], [1.0, 2.0, 3.0], 1)
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        lttb([1, 2, 3], [1.0, 2.0], 2)

"""Shrinking a curve to a number of points a chart can draw without changing its shape.

Largest-Triangle-Three-Buckets (Steinarsson, "Downsampling Time Series for Visual
Representation", 2013): the first and last points stay; the points between are cut into equal
buckets, and from each bucket the point that spans the largest triangle with the point kept
before it and the mean of the next bucket is kept. Peaks and dips span large triangles, so they
survive where averaging or striding would flatten them. Every kept point is an input point.
"""

from __future__ import annotations

from collections.abc import Sequence


def largest_triangle_three_buckets(
    xs: Sequence[float], ys: Sequence[float], threshold: int
) -> list[int]:
    """The indices (ascending) of at most `threshold` points of the curve `(xs[i], ys[i])` that
    keep its shape; all of them when there are no more than `threshold`. `xs` ascend."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    if threshold < 2:
        raise ValueError(f"a curve needs at least 2 points to keep, not {threshold}")
    count = len(xs)
    if count <= threshold:
        return list(range(count))
    if threshold == 2:
        return [0, count - 1]
    # The points between the first and the last go into threshold - 2 buckets of near-equal
    # size; bucket b starts at bounds[b]. The last point is a bucket of its own.
    buckets = threshold - 2
    bounds = [1 + b * (count - 2) // buckets for b in range(buckets + 1)] + [count]
    kept = [0]
    for b in range(buckets):
        next_start, next_end = bounds[b + 1], bounds[b + 2]
        mean_x = sum(xs[next_start:next_end]) / (next_end - next_start)
        mean_y = sum(ys[next_start:next_end]) / (next_end - next_start)
        ax, ay = xs[kept[-1]], ys[kept[-1]]
        best, best_area = bounds[b], -1.0
        for index in range(bounds[b], bounds[b + 1]):
            # Twice the triangle's area; the factor does not change which point is largest.
            area = abs((ax - mean_x) * (ys[index] - ay) - (ax - xs[index]) * (mean_y - ay))
            if area > best_area:
                best, best_area = index, area
        kept.append(best)
    kept.append(count - 1)
    return kept

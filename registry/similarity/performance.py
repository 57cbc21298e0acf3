"""Measured speed and reliability of blocks, for the `performance` ranking policy.

The numbers live in the inference layer's per-minute metrics (inference.models.BlockMetricBucket),
which the registry may not import. The inference app registers the reader at startup
(inference.signals.connect); until one is registered every block counts as unmeasured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from registry.models import Organization


@dataclass(frozen=True)
class BlockPerformance:
    requests: int
    p50_ms: float | None
    error_rate: float | None


# (viewer, block pks) -> {block pk: its performance as the viewer may see it}
PerformanceReader = Callable[[Organization, Sequence[int]], dict[int, BlockPerformance]]
_readers: list[PerformanceReader] = []


def on_block_performance(reader: PerformanceReader) -> PerformanceReader:
    """Register the reader (the last registration wins, so a reload does not stack them)."""
    _readers[:] = [reader]
    return reader


def block_performance(*, viewer: Organization, block_pks: Sequence[int]) -> dict[int, BlockPerformance]:
    if not _readers or not block_pks:
        return {}
    return _readers[0](viewer, list(block_pks))

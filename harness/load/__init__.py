"""Open-loop HTTP load generation with coordinated-omission-safe HdrHistogram statistics.

``schedule`` decides when requests should go, ``runner`` sends them, ``records`` holds what
happened and ``stats`` (pure) turns records into percentiles, saturation flags and a verdict.
"""

from .records import RequestRecord, RequestSpec
from .runner import BackgroundLoad, LoadPlan, LoadResult, run_open_loop, run_open_loop_async
from .schedule import intended_send_times, iter_send_times
from .stats import MIN_SAMPLES_FOR_P99, LatencyStats

__all__ = [
    "BackgroundLoad",
    "LatencyStats",
    "LoadPlan",
    "LoadResult",
    "MIN_SAMPLES_FOR_P99",
    "RequestRecord",
    "RequestSpec",
    "intended_send_times",
    "iter_send_times",
    "run_open_loop",
    "run_open_loop_async",
]

"""Drift by population stability index (PSI), the credit-risk industry's drift score.

Each feature's reference distribution (reference_data/reference_sample.csv) is cut into bins:
deciles for a numeric feature (fewer where values repeat), one bin per category plus one for
"anything else", and one bin for null. The live window is the last WINDOW rows the service
scored. PSI = sum over bins of (live - ref) * ln(live / ref), live shares smoothed by half a row
per bin so an empty bin is not infinite. The usual reading: below 0.1 stable, 0.1-0.25 moving,
above 0.25 a shift. A clean 250-row window scores ~0.04 on ten bins (sampling noise alone is
about bins / rows), so THRESHOLD = 0.25 leaves a wide margin; a frozen, unit-changed or
null-flooded feature scores several units once a third of the window has turned.
"""

from __future__ import annotations

import bisect
import csv
import math
import threading
from collections import deque
from pathlib import Path
from typing import Any

WINDOW = 250
MIN_ROWS = 150
THRESHOLD = 0.25
MAX_BLAMED = 3


class Feature:
    def __init__(self, name: str, values: list[str], categories: list[str] | None) -> None:
        self.name, self.categories = name, categories
        present = [v for v in values if v != ""]
        if categories is None:
            nums = sorted(float(v) for v in present)
            edges = sorted({nums[int(len(nums) * q / 10)] for q in range(1, 10)})
            self.edges = edges
            counts = [0] * (len(edges) + 2)  # bins..., null
            for x in nums:
                counts[bisect.bisect_right(edges, x)] += 1
        else:
            self.index = {c: i for i, c in enumerate(categories)}
            counts = [0] * (len(categories) + 2)  # categories..., other, null
            for v in present:
                counts[self.index.get(v, len(categories))] += 1
        counts[-1] = len(values) - len(present)
        total = len(values)
        self.ref = [(c + 0.5) / (total + 0.5 * len(counts)) for c in counts]

    def bin(self, value: Any) -> int:
        if value is None:
            return len(self.ref) - 1
        if self.categories is None:
            return bisect.bisect_right(self.edges, float(value))
        return self.index.get(value, len(self.categories))

    def psi(self, bins: list[int]) -> float:
        counts = [0] * len(self.ref)
        for b in bins:
            counts[b] += 1
        n = len(bins) + 0.5 * len(counts)
        return sum((live - ref) * math.log(live / ref)
                   for live, ref in (((c + 0.5) / n, r) for c, r in zip(counts, self.ref)))


class Monitor:
    def __init__(self, reference_csv: Path, schema: dict[str, Any]) -> None:
        with reference_csv.open() as fh:
            rows = list(csv.DictReader(fh))
        self.features = [Feature(f["name"], [r[f["name"]] for r in rows], f.get("categories"))
                         for f in schema["features"]]
        self.window: deque[list[int]] = deque(maxlen=WINDOW)  # each row as its bins
        self.lock = threading.Lock()

    def add(self, columns: dict[str, list[Any]]) -> None:
        n = len(next(iter(columns.values())))
        binned = [[f.bin(columns[f.name][i]) for f in self.features] for i in range(n)]
        with self.lock:
            self.window.extend(binned)

    def verdict(self) -> dict[str, Any]:
        with self.lock:
            rows = list(self.window)
        scores = {} if len(rows) < MIN_ROWS else {
            f.name: round(f.psi([r[j] for r in rows]), 4) for j, f in enumerate(self.features)}
        blamed = sorted((s, name) for name, s in scores.items() if s > THRESHOLD)[::-1]
        return {"drifting": bool(blamed), "blamed": [name for _, name in blamed[:MAX_BLAMED]],
                "psi": scores, "window_rows": len(rows), "threshold": THRESHOLD}

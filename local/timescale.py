"""One time-scale factor for the whole stand-in: AWS seconds -> drill (wall-clock) seconds.

Every interval, wait and bake that AWS measures in seconds or minutes is divided by ``factor``. Network
timeouts (probe, idle, client) are scaled too but never below ``floor`` seconds, so loopback HTTP still fits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TimeScale:
    factor: float = 120.0
    floor: float = 0.5
    epoch: float = field(default_factory=time.monotonic)

    def drill(self, aws_seconds: float) -> float:
        """Wall-clock seconds for a duration of `aws_seconds` in AWS time."""
        return aws_seconds / self.factor

    def network(self, aws_seconds: float) -> float:
        """A scaled network timeout, never below the floor."""
        return max(self.floor, aws_seconds / self.factor)

    def aws(self, drill_seconds: float) -> float:
        """AWS-equivalent seconds for `drill_seconds` of wall clock."""
        return drill_seconds * self.factor

    def now(self) -> float:
        """Drill seconds since the epoch of this scale."""
        return time.monotonic() - self.epoch

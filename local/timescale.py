"""The stand-in's one clock: AWS time, run `factor` times faster than the wall clock.

Every AWS duration (an interval, a wait, a bake, a task's start) goes through `drill()` (AWS seconds -> drill
seconds) and every figure back through `aws()`. Network timeouts are scaled too but never below `floor` wall
seconds, so loopback HTTP still fits (the excess makes a timed-out request cost more AWS time, never less).

The clock can be *held* (`with scale.hold("why"):`) while the stand-in itself is late with something AWS
would have finished by now, for example a task process that takes longer to boot than the Fargate start time
the stand-in models: held wall time is not AWS time, so nothing (traffic, alarms, deployments) moves on it,
and a figure does not depend on how busy the machine was. Each hold is recorded in `holds`.

`now()` is drill seconds since the epoch without the held time; waits that must follow it use `sleep_until`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Hold:
    reason: str
    at: float  # drill seconds when the hold began
    wall_seconds: float


class TimeScale:
    def __init__(self, factor: float = 120.0, floor: float = 0.5) -> None:
        if factor <= 0:
            raise ValueError(f"time-scale factor must be positive, not {factor}")
        self.factor = factor
        self.floor = floor
        self.epoch = time.monotonic()
        self.wall_epoch = time.time()
        self._lock = threading.Lock()
        self._held = 0.0  # wall seconds held by finished holds
        self._holding = 0  # holds in progress
        self._hold_began = 0.0
        self.holds: list[Hold] = []
        self.held_by_reason: dict[str, float] = {}  # wall seconds per reason, recorded holds or not

    # ------------------------------------------------------------------ conversions
    def drill(self, aws_seconds: float) -> float:
        """Drill seconds for a duration of `aws_seconds` in AWS time."""
        return aws_seconds / self.factor

    def network(self, aws_seconds: float, floor: float | None = None) -> float:
        """A scaled network timeout, never below the floor (`floor` wall seconds when given: the stand-in's
        in-process probes of loopback targets need less than a Lambda's requests from another process)."""
        return max(self.floor if floor is None else floor, aws_seconds / self.factor)

    def aws(self, drill_seconds: float) -> float:
        """AWS-equivalent seconds for `drill_seconds`."""
        return drill_seconds * self.factor

    # ------------------------------------------------------------------ the clock
    def now(self) -> float:
        """Drill seconds since the epoch, held time excluded."""
        with self._lock:
            wall = time.monotonic()
            held = self._held + (wall - self._hold_began if self._holding else 0.0)
            return wall - self.epoch - held

    def aws_now(self) -> float:
        """AWS seconds since the epoch."""
        return self.aws(self.now())

    def timestamp(self, drill_seconds: float | None = None) -> float:
        """An epoch timestamp on the drill clock (for CloudWatch datapoints and alarm periods)."""
        return self.wall_epoch + (self.now() if drill_seconds is None else drill_seconds)

    def held_seconds(self) -> float:
        with self._lock:
            return self._held + (time.monotonic() - self._hold_began if self._holding else 0.0)

    def sleep_until(self, deadline: float, stop: threading.Event | None = None, tick: float = 0.05) -> bool:
        """Wait until `now()` reaches `deadline` (drill seconds); False when `stop` was set first."""
        while True:
            left = deadline - self.now()
            if left <= 0:
                return True
            step = min(tick, left)
            if stop is not None:
                if stop.wait(step):
                    return False
            else:
                time.sleep(step)

    def sleep(self, drill_seconds: float, stop: threading.Event | None = None) -> bool:
        return self.sleep_until(self.now() + drill_seconds, stop)

    @contextmanager
    def hold(self, reason: str, *, record: bool = True) -> Iterator[None]:
        """Stop the clock while the stand-in catches up with what AWS would already have done. `record`:
        listed in `holds` (frequent short holds are only summed in `held_by_reason`)."""
        with self._lock:
            began = time.monotonic()
            if self._holding == 0:
                self._hold_began = began
            self._holding += 1
            at = began - self.epoch - self._held
        try:
            yield
        finally:
            with self._lock:
                ended = time.monotonic()
                self._holding -= 1
                if self._holding == 0:
                    self._held += ended - self._hold_began
                self.held_by_reason[reason] = self.held_by_reason.get(reason, 0.0) + ended - began
                if record:
                    self.holds.append(Hold(reason, round(at, 3), round(ended - began, 3)))

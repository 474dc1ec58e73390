"""Simulated users: a steady arrival rate of requests through the production listener, each accounted for.

The load is stated in AWS terms, requests per AWS minute, and arrives on the stand-in's AWS clock (none while
the clock is held). Open loop, like real users: requests keep arriving whether or not earlier ones were
answered, so a hanging release costs what it would cost (a closed loop of users would slow down and hide it).
Each request's start and end are drill seconds on the same clock.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit

from local.background import Lifecycle, Loop
from local.timescale import TimeScale


@dataclass
class UserRequest:
    started: float
    ended: float
    request_id: str
    outcome: str  # answered | failed | timed_out
    status: int | None


class Users(Lifecycle):
    """GET / at `per_minute` requests per AWS minute (each on its own connection, at most `timeout` wall
    seconds)."""

    def __init__(self, url: str, scale: TimeScale, *, per_minute: float, timeout: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"the user load must be positive, not {per_minute} requests per AWS minute")
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._timeout = timeout
        self._lock = threading.Lock()
        self.requests: list[UserRequest] = []
        self._in_flight: dict[int, float] = {}
        self._serial = 0
        self._scale = scale
        self.per_minute = per_minute
        every = scale.drill(60.0 / per_minute)
        self._pool = ThreadPoolExecutor(max_workers=int(timeout / every) + 16, thread_name_prefix="user")
        self._arrivals = Loop("users", self._arrive, every=every, fixed_rate=True, clock=scale.now)

    def start(self) -> Self:
        self._arrivals.start()
        return self

    def stop(self) -> None:
        self._arrivals.stop()
        self._pool.shutdown(wait=True)

    def one(self) -> UserRequest:
        request_id = uuid.uuid4().hex
        started = self._scale.now()
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.request("GET", "/", headers={"X-Request-Id": request_id, "User-Agent": "phoenix-drill-user"})
            response = conn.getresponse()
            response.read()
            outcome = "answered" if response.status < 500 else "failed"
            status: int | None = response.status
        except TimeoutError:
            outcome, status = "timed_out", None
        except (OSError, http.client.HTTPException):
            outcome, status = "failed", None
        finally:
            conn.close()
        return UserRequest(started, self._scale.now(), request_id, outcome, status)

    def _record(self) -> None:
        with self._lock:
            self._serial += 1
            serial = self._serial
            self._in_flight[serial] = self._scale.now()
        result = self.one()
        with self._lock:
            self.requests.append(result)
            del self._in_flight[serial]

    def wait_settled(self, cutoff: float, timeout: float) -> None:
        """Wait until every request started before `cutoff` (drill seconds) has its outcome (at most `timeout`
        wall seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(started >= cutoff for started in self._in_flight.values()):
                    return
            time.sleep(0.02)

    def _arrive(self) -> None:
        self._pool.submit(self._record)

    def window(self, start: float, end: float) -> list[UserRequest]:
        with self._lock:
            return [r for r in self.requests if start <= r.started < end]

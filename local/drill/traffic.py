"""Simulated users: a steady arrival rate of requests through the production listener, each accounted for.

Open loop, like real users: requests keep arriving at `rate` per second whether or not earlier ones were
answered, so a hanging release costs what it would cost (a closed loop of users would slow down and hide it).
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


@dataclass
class UserRequest:
    started: float
    ended: float
    request_id: str
    outcome: str  # answered | failed | timed_out
    status: int | None


class Users(Lifecycle):
    """GET / at `rate` requests per second (each on its own connection, at most `timeout` seconds)."""

    def __init__(self, url: str, *, rate: float = 40.0, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._timeout = timeout
        self._lock = threading.Lock()
        self.requests: list[UserRequest] = []
        self._in_flight: dict[int, float] = {}
        self._serial = 0
        self._pool = ThreadPoolExecutor(max_workers=int(rate * timeout) + 16, thread_name_prefix="user")
        self._arrivals = Loop("users", self._arrive, every=1.0 / rate, fixed_rate=True)

    def start(self) -> Self:
        self._arrivals.start()
        return self

    def stop(self) -> None:
        self._arrivals.stop()
        self._pool.shutdown(wait=True)

    def one(self) -> UserRequest:
        request_id = uuid.uuid4().hex
        started = time.monotonic()
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
        return UserRequest(started, time.monotonic(), request_id, outcome, status)

    def _record(self) -> None:
        with self._lock:
            self._serial += 1
            serial = self._serial
            self._in_flight[serial] = time.monotonic()
        result = self.one()
        with self._lock:
            self.requests.append(result)
            del self._in_flight[serial]

    def wait_settled(self, cutoff: float, timeout: float) -> None:
        """Wait until every request started before `cutoff` has its outcome (at most `timeout` seconds)."""
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

"""Simulated users: steady HTTP requests through the production listener, every one accounted for."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit


@dataclass
class UserRequest:
    started: float
    ended: float
    request_id: str
    outcome: str  # answered | failed | timed_out
    status: int | None


class Users:
    """`count` users, each sending GET / one after the other with a think time; a context manager."""

    def __init__(self, url: str, *, count: int = 4, think: float = 0.02, timeout: float = 0.3) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._count = count
        self._think = think
        self._timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.requests: list[UserRequest] = []
        self._threads = [
            threading.Thread(target=self._user, name=f"user-{n}", daemon=True) for n in range(count)
        ]

    def __enter__(self) -> Users:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

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

    def _user(self) -> None:
        while not self._stop.is_set():
            result = self.one()
            with self._lock:
                self.requests.append(result)
            self._stop.wait(self._think)

    def window(self, start: float, end: float) -> list[UserRequest]:
        with self._lock:
            return [r for r in self.requests if start <= r.started < end]

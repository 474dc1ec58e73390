"""One lifecycle for the stand-in's and the drill's servers, processes and background loops.

`Lifecycle`: `with thing:` calls `thing.start()` (which returns it) and, whatever happens, `thing.stop()`;
every piece that runs something in the background has these two and nothing else to remember. `Loop` is a
periodic background step, `ServerThread` a loopback HTTP server on its own thread.

    with Loop("cloudwatch-alarms", evaluator.evaluate_all, every=0.125):   # started, stopped and joined
        ...

A `Loop` calls `step` on its own daemon thread every `every` seconds until it is stopped: after a pause of
`every` from the end of the previous step, or, with `fixed_rate`, on a fixed schedule (an open-loop arrival
process keeps its rate even when a step runs late). `clock` is what `every` is measured on: the monotonic
clock, or the stand-in's AWS clock (`TimeScale.now`), which stands still while it is held. An exception in a
step is logged with its traceback and the loop goes on: one failed evaluation, publication or poll does not
end a stand-in's loop. `final` runs once after the last step (a last flush). `stop()` asks the thread to end,
waits at most `timeout` seconds for it and may be called more than once.
"""

from __future__ import annotations

import logging
import socketserver
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

LOG = logging.getLogger("local")


class Lifecycle:
    """A context manager made of `start()` (returns the object) and `stop()`."""

    def start(self) -> Self:
        return self

    def stop(self) -> None:
        """Stop whatever `start` (or the constructor) set running; safe to call more than once."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Loop(Lifecycle):
    """A daemon thread calling `step` every `every` seconds; a context manager that starts and stops it."""

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        every: float,
        *,
        fixed_rate: bool = False,
        final: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._step = step
        self._every = every
        self._fixed_rate = fixed_rate
        self._final = final
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        due = self._clock() + self._every
        # A held clock runs slower than the wall clock, never faster: waiting the clock's remaining time in
        # wall seconds may wake early (then it waits again), never late.
        while not self._stopping.wait(max(0.0, due - self._clock())):
            if self._clock() < due:
                continue
            self._call(self._step)
            due = due + self._every if self._fixed_rate else self._clock() + self._every
        if self._final is not None:
            self._call(self._final)

    def _call(self, function: Callable[[], object]) -> None:
        try:
            function()
        except Exception:
            LOG.exception("%s: background step failed", self.name)


class ServerThread(Lifecycle):
    """A socketserver (an HTTP server on 127.0.0.1) answering on its own daemon thread until stopped."""

    def __init__(self, server: socketserver.TCPServer, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

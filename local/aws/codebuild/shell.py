"""One shell instance for all of a build's commands, as buildspec version 0.2 runs them.

"In version 0.2, CodeBuild runs all build commands in the same instance of the default shell in the build
environment" (build-spec-ref.html, "Buildspec versions"; the 0.1 note under `phases` says why: a directory
changed or a variable set by one command is there for the next). So one shell process is started per build
and each command is written to it, followed by a line that prints a marker and the command's exit status:
`cd`, variables (exported or not), functions and shell options persist from command to command and from
phase to phase, as in one instance.

Each command reads /dev/null as its standard input (the commands after it are on the shell's). Its standard
output and error are the build's log, line by line, in the order written. A command that does not parse is
not written to the shell (the shell would wait for the rest of it); it fails with the shell's own message and
exit status 2, as running it would. A command that ends the shell (`exit 3`) fails with that status; the
runner starts a new shell for the commands after it (see the runner).

The shell runs in its own process group: a timeout or the end of the build kills it and everything it
started, as CodeBuild discards the build container.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

SYNTAX_ERROR_STATUS = 2  # what sh and bash exit with on a syntax error


@dataclass(frozen=True)
class CommandResult:
    exit_status: int | None  # None: the deadline came first (the command was killed)
    shell_ended: bool = False  # the command ended the shell (exit, exec, set -e)


class ShellSession:
    """A shell (`argv`) in `cwd` with exactly `env`, its output lines passed to `output`."""

    def __init__(
        self, argv: list[str], cwd: Path, env: Mapping[str, str], output: Callable[[str], None]
    ) -> None:
        self._argv = argv
        self._env = dict(env)
        self._cwd = cwd
        self._output = output
        self._marker = f"__codebuild_status_{uuid.uuid4().hex}__"
        self._statuses: queue.Queue[int | None] = queue.Queue()
        self._process = subprocess.Popen(  # noqa: S603 - the buildspec's shell, as CodeBuild runs it
            argv,
            cwd=cwd,
            env=self._env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="codebuild-shell-output", daemon=True)
        self._reader.start()
        self.alive = True

    # ------------------------------------------------------------------ output
    def _read(self) -> None:
        stream = self._process.stdout
        for raw in stream or ():
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            before, marker, status = line.partition(self._marker)
            if not marker:
                self._output(line)
                continue
            if before:
                self._output(before)
            try:
                self._statuses.put(int(status.strip()))
            except ValueError:
                self._statuses.put(SYNTAX_ERROR_STATUS)
        self._statuses.put(None)

    # ------------------------------------------------------------------ commands
    def _syntax_error(self, command: str) -> str | None:
        """The shell's message when `command` does not parse, None when it does."""
        checked = subprocess.run(  # noqa: S603 - the same shell, parse only (-n)
            [*self._argv, "-n", "-c", command],
            cwd=self._cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if checked.returncode == 0:
            return None
        return (checked.stderr or checked.stdout).strip() or "syntax error"

    def _write(self, text: str) -> bool:
        stdin = self._process.stdin
        if stdin is None:
            return False
        try:
            stdin.write(text.encode())
            stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def export(self, name: str, value: str) -> None:
        """Set and export a variable in the shell without a log line (CODEBUILD_BUILD_SUCCEEDING)."""
        quoted = "'" + value.replace("'", "'\\''") + "'"
        self._write(f"{name}={quoted}; export {name}\n")

    def run(self, command: str, remaining: Callable[[], float | None]) -> CommandResult:
        """Run `command`; `remaining()` is the wall seconds left before the build's timeout (None: none)."""
        error = self._syntax_error(command)
        if error is not None:
            for line in error.splitlines():
                self._output(line)
            return CommandResult(SYNTAX_ERROR_STATUS)
        script = f"{{ {command}\n}} </dev/null\nprintf '%s%s\\n' '{self._marker}' \"$?\"\n"
        if not self._write(script):
            return CommandResult(self._ended_status(), shell_ended=True)
        while True:
            left = remaining()
            try:
                status = self._statuses.get(timeout=0.1 if left is None else max(0.0, min(0.1, left)))
            except queue.Empty:
                left = remaining()
                if left is not None and left <= 0:
                    self.kill()
                    return CommandResult(None)
                continue
            if status is None:
                return CommandResult(self._ended_status(), shell_ended=True)
            return CommandResult(status)

    def _ended_status(self) -> int:
        self.alive = False
        code = self._process.wait()
        return 128 - code if code < 0 else code  # killed by a signal: 128 + its number, as a shell reports it

    # ------------------------------------------------------------------ the end
    def kill(self) -> None:
        """Kill the shell and every process it started (its process group)."""
        self.alive = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._reader.join(timeout=5)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """End the shell: `exit`, then whatever is still running in its process group is killed."""
        if self.alive:
            self._write("exit 0\n")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self.kill()

"""The GitHub side of a CodeStar (CodeConnections) connection: bare git repositories on disk, one per
`owner/name`, and a watcher that reports each push to a branch as the connection's webhook does.

A push is what moved a branch's ref: `watch(full_id, branch, on_push)` calls `on_push(commit)` once per ref
change (the new head; several commits pushed at once are one push, as GitHub's push event carries the new
head), polling the ref every `every` wall seconds: its file is read (loose, else packed-refs), which costs
no process per poll.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local.background import Lifecycle, Loop

FULL_ID = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class SourceError(Exception):
    """The repository or branch cannot be read (the Source action fails with this message)."""


@dataclass(frozen=True)
class Commit:
    commit_id: str
    message: str
    author_date: str  # ISO 8601, as the Source action's AuthorDate variable


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git; raise SourceError with its own message when it fails."""
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SourceError((done.stderr or done.stdout).strip() or f"git {args[0]} failed")
    return done.stdout.strip()


class GitHubStandIn(Lifecycle):
    """Repositories under `root` (`<owner>/<name>.git`), reached by the drill with `git push` to
    `remote_url(full_id)`."""

    def __init__(self, root: Path, *, every: float = 0.05) -> None:
        self.root = root
        self._every = every
        self._watches: list[Loop] = []
        self._lock = threading.Lock()

    def start(self) -> GitHubStandIn:
        return self

    def stop(self) -> None:
        with self._lock:
            watches, self._watches = self._watches, []
        for loop in watches:
            loop.stop()

    def create_repository(self, full_id: str) -> Path:
        if not FULL_ID.match(full_id):
            raise SourceError(f"{full_id!r} is not owner/repository")
        path = self.remote_url(full_id)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            git("init", "--quiet", "--bare", str(path))
        return path

    def remote_url(self, full_id: str) -> Path:
        return self.root / f"{full_id}.git"

    def head(self, full_id: str, branch: str) -> str | None:
        """The branch's commit id, None when the repository or branch does not exist."""
        path = self.remote_url(full_id)
        if not path.exists():
            return None
        try:
            return git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", cwd=path)
        except SourceError:
            return None

    def commit(self, full_id: str, commit_id: str) -> Commit:
        path = self.remote_url(full_id)
        if not path.exists():
            raise SourceError(f"repository {full_id} not found")
        out = git("show", "--no-patch", "--format=%H%n%aI%n%B", commit_id, cwd=path)
        sha, date, *message = out.split("\n")
        return Commit(sha, "\n".join(message).strip(), date)

    def archive(self, full_id: str, commit_id: str) -> bytes:
        """The tree at `commit_id` as a zip (a CODE_ZIP source artifact)."""
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "archive", "--format=zip", commit_id],  # noqa: S607 - git from PATH
            cwd=self.remote_url(full_id),
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise SourceError(done.stderr.decode(errors="replace").strip())
        return done.stdout

    def _ref(self, full_id: str, branch: str) -> str | None:
        """The branch's commit id from the repository's ref files (what `git push` updates)."""
        path = self.remote_url(full_id)
        try:
            return (path / "refs" / "heads" / branch).read_text().strip() or None
        except OSError:
            pass
        try:
            packed = (path / "packed-refs").read_text().splitlines()
        except OSError:
            return None
        wanted = f"refs/heads/{branch}"
        return next((line.split()[0] for line in packed if line.endswith(" " + wanted)), None)

    def watch(self, full_id: str, branch: str, on_push: Callable[[str], None]) -> None:
        """Call `on_push(commit)` whenever the branch's head changes from what it is now."""
        seen = self._ref(full_id, branch)

        def poll() -> None:
            nonlocal seen
            head = self._ref(full_id, branch)
            if head is not None and head != seen:
                seen = head
                on_push(head)

        loop = Loop(f"webhook {full_id}@{branch}", poll, every=self._every)
        with self._lock:
            self._watches.append(loop)
        loop.start()

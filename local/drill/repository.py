"""The developer's side of the drill: a clone of this project that releases are committed to and pushed from.

`WorkingCopy.create` copies the project as it is on disk (the files git tracks or would track: committed or
not, ignored files left out) into a new repository, commits it as the baseline and pushes it to the
GitHub stand-in's bare repository; `release` commits a change on top of the baseline (a release is the
baseline plus its own change, never the previous release's) and pushes it, as `git push` would.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from local.aws.codepipeline.connection import git
from scripts.stacks import ROOT

AUTHOR = ("-c", "user.name=Phoenix Drill", "-c", "user.email=drill@example.com")


def project_files(source: Path = ROOT) -> list[str]:
    """Tracked and untracked-but-not-ignored files of the project (what a commit of the work tree holds)."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=source)
    return sorted(p for p in listed.split("\0") if p and (source / p).is_file())


class WorkingCopy:
    def __init__(self, path: Path, remote: Path, branch: str) -> None:
        self.path = path
        self.remote = remote
        self.branch = branch
        self.baseline = ""

    @classmethod
    def create(
        cls, path: Path, remote: Path, branch: str, *, changes: Mapping[str, str], source: Path = ROOT
    ) -> WorkingCopy:
        """The baseline: the project's files, then `changes` (path -> content) on top."""
        path.mkdir(parents=True, exist_ok=True)
        for name in project_files(source):
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target)
        for name, content in changes.items():
            (path / name).write_text(content)
        copy = cls(path, remote, branch)
        git("init", "--quiet", "--initial-branch", branch, cwd=path)
        git("remote", "add", "origin", str(remote), cwd=path)
        copy.baseline = copy._commit("baseline: the project as it is on disk")
        return copy

    def read_baseline(self, name: str) -> str:
        return git("show", f"{self.baseline}:{name}", cwd=self.path) + "\n"

    def release(self, message: str, files: Mapping[str, str]) -> str:
        """Commit the baseline plus `files` (path -> content) and push it; the commit id."""
        added = git("diff", "--name-only", "--diff-filter=A", "-z", self.baseline, "HEAD", cwd=self.path)
        for name in filter(None, added.split("\0")):
            (self.path / name).unlink(missing_ok=True)
        git("checkout", "--quiet", self.baseline, "--", ".", cwd=self.path)
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        return self._commit(message)

    def _commit(self, message: str) -> str:
        git("add", "--all", cwd=self.path)
        git(*AUTHOR, "commit", "--quiet", "--allow-empty", "--no-verify", "-m", message, cwd=self.path)
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path)

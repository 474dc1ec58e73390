"""The sample app image against the task definition that runs it: mounts, user, read-only root, base image.

Docker is not needed: sample-app/Dockerfile is parsed here (instructions, line continuations, stages, ARG
defaults, JSON and shell forms of VOLUME, and the directories RUN creates with their owner and mode).

Why the mount rules: on Fargate an empty bind volume (a task `volumes` entry with no host) is mounted owned by
root with mode 0755 unless the image declares that path as a VOLUME, in which case the volume starts with the
image's directory, owner and mode included:
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/bind-mounts.html
A non-root user cannot write a root 0755 directory, so gunicorn's worker temp files fail and every task exits.
"""

from __future__ import annotations

import json
import posixpath
import re
import runpy
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "sample-app" / "Dockerfile"
GUNICORN_CONF = ROOT / "sample-app" / "gunicorn.conf.py"
TASKDEF = ROOT / "pipeline-config" / "taskdef.json"
PATCH_TAG = re.compile(r"(?P<version>\d+\.\d+\.\d+)(?:-[a-z0-9][a-z0-9.-]*)?")


# ---------------------------------------------------------------- the Dockerfile, read as data
@dataclass
class Directory:
    """A directory a RUN step made, as the image will hold it."""

    owner: str
    mode: int | None  # None: a mode this parser cannot read (symbolic); treated as not writable
    step: int  # index of the instruction in its stage that last set owner or mode


@dataclass
class Stage:
    base: str  # the FROM image with global ARG defaults substituted
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    @property
    def user(self) -> str | None:
        users = [args for keyword, args in self.steps if keyword == "USER"]
        return users[-1] if users else None

    def volumes(self) -> dict[str, int]:
        """Declared VOLUME path -> index of the declaring instruction."""
        declared: dict[str, int] = {}
        for index, (keyword, args) in enumerate(self.steps):
            if keyword == "VOLUME":
                paths = json.loads(args) if args.startswith("[") else args.split()
                for path in paths:
                    declared.setdefault(posixpath.normpath(path), index)
        return declared

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for keyword, args in self.steps:
            if keyword != "ENV":
                continue
            words = shlex.split(args)
            if words and "=" in words[0]:
                values.update(word.partition("=")[::2] for word in words)
            elif words:  # legacy `ENV KEY value with spaces`
                values[words[0]] = args.split(None, 1)[1] if len(words) > 1 else ""
        return values

    def uids(self) -> dict[str, str]:
        """User name -> uid for users a RUN step adds with an explicit uid (useradd/adduser -u/--uid)."""
        found: dict[str, str] = {"root": "0"}
        for command in self.commands():
            if command and command[0] in {"useradd", "adduser"}:
                uid = _option(command, "-u", "--uid")
                if uid is not None:
                    found[command[-1]] = uid
        return found

    def commands(self, upto: int | None = None) -> list[list[str]]:
        return [command for _, command in self._indexed_commands(upto)]

    def _indexed_commands(self, upto: int | None = None) -> list[tuple[int, list[str]]]:
        out: list[tuple[int, list[str]]] = []
        for index, (keyword, args) in enumerate(self.steps[:upto]):
            if keyword == "RUN":
                out += [(index, command) for command in shell_commands(args)]
        return out

    def directories(self) -> dict[str, Directory]:
        """Directories RUN steps create (mkdir, install -d) and re-own or re-mode (chown, chmod)."""
        made: dict[str, Directory] = {}
        user = "root"
        for index, (keyword, args) in enumerate(self.steps):
            if keyword == "USER":
                user = args
            if keyword != "RUN":
                continue
            for command in shell_commands(args):
                _apply(command, made, user, index)
        return made


@dataclass
class Image:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comment lines dropped, `\\` continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue  # Docker also drops comment lines inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    if pending.strip():
        keyword, _, args = pending.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def parse(text: str) -> Image:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            words = [word for word in args.split() if not word.startswith("--")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args.get(m[1] or m[2], m[0]), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword == "ARG":
                arg, _, default = args.partition("=")
                global_args[arg.strip()] = default.strip().strip('"')
        else:
            stages[-1].steps.append((keyword, args))
    if not stages:
        raise ValueError("no FROM instruction")
    return Image(global_args, stages)


def shell_commands(run_args: str) -> list[list[str]]:
    """A RUN's simple commands: its shell line split at ;, &&, || and |; exec form is one command."""
    if run_args.startswith("["):
        return [list(json.loads(run_args))]
    if "<<" in run_args:
        raise ValueError(f"heredoc RUN steps are not parsed here: {run_args[:60]}")
    lexer = shlex.shlex(run_args, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def _option(command: list[str], short: str, long: str) -> str | None:
    """The value of -x VALUE, -xVALUE, --long VALUE or --long=VALUE (the last one given)."""
    value = None
    for i, word in enumerate(command[1:], start=1):
        if word in {short, long} and i + 1 < len(command):
            value = command[i + 1]
        elif word.startswith(long + "="):
            value = word.split("=", 1)[1]
        elif word.startswith(short) and len(word) > len(short) and not word.startswith("--"):
            value = word[len(short) :]
    return value


def _operands(command: list[str], with_value: set[str]) -> list[str]:
    """Positional arguments: not options, and not the value that follows an option in `with_value`."""
    out: list[str] = []
    skip = False
    for word in command[1:]:
        if skip:
            skip = False
        elif word in with_value:
            skip = True
        elif not word.startswith("-"):
            out.append(posixpath.normpath(word))
    return out


def _mode(text: str | None) -> int | None:
    return int(text, 8) if text is not None and re.fullmatch(r"[0-7]{3,4}", text) else None


def _apply(command: list[str], made: dict[str, Directory], user: str, step: int) -> None:
    program = command[0]
    if program == "install" and any(
        w in {"-d", "--directory"} or re.fullmatch(r"-\w*d\w*", w) for w in command
    ):
        owner = _option(command, "-o", "--owner") or user
        mode = _option(command, "-m", "--mode")
        for path in _operands(command, {"-o", "--owner", "-g", "--group", "-m", "--mode"}):
            made[path] = Directory(owner=owner, mode=_mode(mode) if mode else 0o755, step=step)
    elif program == "mkdir":
        mode = _option(command, "-m", "--mode")
        for path in _operands(command, {"-m", "--mode"}):
            made[path] = Directory(owner=user, mode=_mode(mode) if mode else 0o755, step=step)
    elif program == "chmod":
        operands = _operands(command, set())
        for path in operands[1:]:
            if path in made:
                made[path] = Directory(made[path].owner, _mode(operands[0]), step)
    elif program == "chown":
        operands = _operands(command, set())
        for path in operands[1:]:
            if path in made:
                made[path] = Directory(operands[0].split(":", maxsplit=1)[0], made[path].mode, step)


# ---------------------------------------------------------------- the checks
def _uid(user: str, uids: dict[str, str]) -> str:
    name = user.split(":", maxsplit=1)[0]
    return uids.get(name, name)


def mount_problems(taskdef: dict[str, Any], dockerfile: str) -> list[str]:
    """Why a task from `taskdef` could not write a mount of the image `dockerfile` builds ([] if it can)."""
    final = parse(dockerfile).final
    volumes, made, uids = final.volumes(), final.directories(), final.uids()
    problems: list[str] = []
    for container in taskdef["containerDefinitions"]:
        user = _uid(container.get("user") or final.user or "root", uids)
        for mount in container.get("mountPoints", []):
            path = posixpath.normpath(mount["containerPath"])
            if path not in volumes:
                problems.append(f"{path} is mounted but not declared as a VOLUME in the final stage")
            directory = made.get(path)
            if directory is None:
                problems.append(f"{path} is not created in the final stage with an owner and mode")
                continue
            mode = directory.mode
            others_write = mode is not None and mode & 0o003 == 0o003
            owner_write = mode is not None and _uid(directory.owner, uids) == user and mode & 0o300 == 0o300
            if not (others_write or owner_write):
                shown = "an unreadable mode" if mode is None else f"mode {mode:04o}"
                problems.append(
                    f"{path} is owned by {directory.owner} with {shown}: user {user} cannot write it"
                )
            if path in volumes and volumes[path] < directory.step:
                problems.append(f"{path} gets its owner and mode after its VOLUME instruction")
    return problems


def base_image_problems(dockerfile: str) -> list[str]:
    """Why a FROM would pull from Docker Hub or a floating tag ([] if every base is ECR Public X.Y.Z)."""
    image = parse(dockerfile)
    problems: list[str] = []
    names: set[str] = set()
    for stage in image.stages:
        if stage.base in names:  # FROM an earlier stage: nothing is pulled
            continue
        if stage.name:
            names.add(stage.name)
        reference = stage.base.split("@")[0]
        tag = reference.rpartition(":")[2] if ":" in reference.split("/")[-1] else ""
        if not stage.base.startswith("public.ecr.aws/"):
            problems.append(f"{stage.base} is not pulled from public.ecr.aws")
        if not PATCH_TAG.fullmatch(tag):
            problems.append(f"{stage.base} does not name an exact X.Y.Z release")
    return problems


# ---------------------------------------------------------------- the real files
def _taskdef() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(TASKDEF.read_text())
    return loaded


def test_every_mount_of_the_task_is_a_volume_the_task_user_can_write() -> None:
    assert mount_problems(_taskdef(), DOCKERFILE.read_text()) == []


def test_the_task_runs_as_the_user_the_image_ends_with() -> None:
    final = parse(DOCKERFILE.read_text()).final
    for container in _taskdef()["containerDefinitions"]:
        assert container.get("user") == final.user, container["name"]


def test_with_a_read_only_root_every_path_the_app_writes_is_a_writable_mount() -> None:
    final = parse(DOCKERFILE.read_text()).final
    for container in _taskdef()["containerDefinitions"]:
        if not container.get("readonlyRootFilesystem"):
            continue
        # the container's environment: image ENV, then the task definition's (which wins)
        env = final.env() | {item["name"]: item["value"] for item in container.get("environment", [])}
        with mock.patch.dict("os.environ", env, clear=True):
            conf = runpy.run_path(str(GUNICORN_CONF))
        # tempfile's own order (TMPDIR, TEMP, TMP, then /tmp) and gunicorn's worker heartbeat files
        tmpdir = next((env[name] for name in ("TMPDIR", "TEMP", "TMP") if env.get(name)), "/tmp")  # noqa: S108
        writes = {posixpath.normpath(tmpdir), posixpath.normpath(conf["worker_tmp_dir"])}
        mounts = [
            posixpath.normpath(m["containerPath"])
            for m in container.get("mountPoints", [])
            if not m.get("readOnly")
        ]
        for path in writes:
            assert any(path == m or path.startswith(m + "/") for m in mounts), f"{path} is not on a mount"


def test_every_base_image_is_ecr_public_on_an_exact_patch_release_named_once() -> None:
    text = DOCKERFILE.read_text()
    assert base_image_problems(text) == []
    image = parse(text)
    stage_names = {stage.name for stage in image.stages if stage.name}
    pulled = {stage.base for stage in image.stages if stage.base not in stage_names}
    assert len(pulled) == 1, f"the stages use different base images: {sorted(pulled)}"
    (base,) = pulled
    version = base.split("@")[0].rpartition(":")[2].split("-")[0]
    assert text.count(version) == 1, f"{version} is written more than once; name it in one ARG"
    # the image runs a Python no older than the one the project is typed and tested against (3.11 code runs
    # on it; the reverse does not hold)
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"]
    minor = tuple(int(part) for part in version.split(".")[:2])
    assert minor >= tuple(int(part) for part in python.split(".")), f"{version} is older than Python {python}"


# ---------------------------------------------------------------- the checks, on small Dockerfiles
TASK = {
    "containerDefinitions": [{"name": "app", "user": "10001", "mountPoints": [{"containerPath": "/scratch"}]}]
}
GOOD_INSTALL = """
FROM public.ecr.aws/docker/library/python:3.11.9-slim AS build
RUN install -d -o 10001 -m 0700 /scratch
FROM public.ecr.aws/docker/library/python:3.11.9-slim
RUN install -d -o 10001 -g 10001 -m 0700 /scratch
VOLUME ["/scratch"]
USER 10001
"""


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        pytest.param(GOOD_INSTALL, [], id="install -d owned by the user, JSON VOLUME"),
        pytest.param(
            "FROM x\nRUN set -eux; \\\n  mkdir -p /data /scratch \\\n# a comment inside the continuation\n"
            "  && chmod 1777 /scratch\nVOLUME /data /scratch\n",
            [],
            id="mkdir then chmod 1777 over a continuation, shell-form VOLUME",
        ),
        pytest.param(
            "FROM x\nRUN useradd --system --uid 10001 app && install -d -o app -g app /scratch\n"
            "VOLUME /scratch\n",
            [],
            id="owner named by a user the image adds with uid 10001",
        ),
        pytest.param(
            "FROM x\nUSER 10001\n",
            [
                "/scratch is mounted but not declared as a VOLUME in the final stage",
                "/scratch is not created in the final stage with an owner and mode",
            ],
            id="nothing declared (the Fargate failure)",
        ),
        pytest.param(
            "FROM x\nRUN mkdir -p /scratch\nVOLUME /scratch\n",
            ["/scratch is owned by root with mode 0755: user 10001 cannot write it"],
            id="root 0755",
        ),
        pytest.param(
            "FROM x\nVOLUME /scratch\nRUN install -d -m 1777 /scratch\n",
            ["/scratch gets its owner and mode after its VOLUME instruction"],
            id="VOLUME before the mode",
        ),
        pytest.param(
            "FROM x AS build\nRUN install -d -m 1777 /scratch\nVOLUME /scratch\nFROM x\nUSER 10001\n",
            [
                "/scratch is mounted but not declared as a VOLUME in the final stage",
                "/scratch is not created in the final stage with an owner and mode",
            ],
            id="only in an earlier stage",
        ),
        pytest.param(
            "FROM x\nRUN mkdir /scratch && chmod a+w /scratch\nVOLUME /scratch\n",
            ["/scratch is owned by root with an unreadable mode: user 10001 cannot write it"],
            id="symbolic mode is not trusted",
        ),
    ],
)
def test_mount_problems_table(dockerfile: str, expected: list[str]) -> None:
    assert mount_problems(TASK, dockerfile) == expected


@pytest.mark.parametrize(
    ("from_line", "expected"),
    [
        ("public.ecr.aws/docker/library/python:3.11.9-slim-bookworm", []),
        ("public.ecr.aws/docker/library/python:3.11.9@sha256:" + "0" * 64, []),
        ("python:3.11.9-slim-bookworm", ["python:3.11.9-slim-bookworm is not pulled from public.ecr.aws"]),
        (
            "docker.io/library/python:3.11.9",
            ["docker.io/library/python:3.11.9 is not pulled from public.ecr.aws"],
        ),
        (
            "public.ecr.aws/docker/library/python:3.11-slim",
            ["public.ecr.aws/docker/library/python:3.11-slim does not name an exact X.Y.Z release"],
        ),
        (
            "public.ecr.aws/docker/library/python",
            ["public.ecr.aws/docker/library/python does not name an exact X.Y.Z release"],
        ),
        (
            "public.ecr.aws/docker/library/python:latest",
            ["public.ecr.aws/docker/library/python:latest does not name an exact X.Y.Z release"],
        ),
    ],
)
def test_base_image_problems_table(from_line: str, expected: list[str]) -> None:
    assert base_image_problems(f"FROM {from_line}\n") == expected


def test_base_image_problems_resolve_global_args_and_skip_earlier_stages() -> None:
    dockerfile = (
        "ARG IMAGE=public.ecr.aws/docker/library/python:3.11.9-slim\n"
        "FROM ${IMAGE} AS build\nFROM build AS test\nFROM $IMAGE\n"
    )
    assert base_image_problems(dockerfile) == []
    assert base_image_problems(dockerfile.replace("public.ecr.aws/docker/library/", "")) == [
        "python:3.11.9-slim is not pulled from public.ecr.aws",
        "python:3.11.9-slim is not pulled from public.ecr.aws",
    ]

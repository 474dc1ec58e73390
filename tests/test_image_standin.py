"""The container runtime's stand-in (local/aws/images.py, local/aws/docker_cli.py) against moto's ECR, with
the TaskRunner (local/aws/ecs.py) running what was pushed.

What a user relies on: the Makefile's `docker login | build | push` against an ECR repository with IMMUTABLE
tags (as the cluster template creates it), then a task that serves the pushed commit's code. An image is its
build context less .dockerignore, content-addressed; a push needs a login with ECR's token; an immutable tag
is never overwritten; a build fails without a Dockerfile, or when requirements.txt pins what the tasks'
Python environment lacks; a task whose image is not in ECR stops at start with ECS's CannotPullContainerError.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import io
import itertools
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from local.aws.docker_cli import run, write_docker_cli
from local.aws.ecs import SAMPLE_APP, TaskFailedToStart, TaskRunner
from local.aws.images import Registry, build
from local.aws.moto_server import ACCOUNT_ID, REGION, Aws, moto_server
from local.timescale import TimeScale

HOST = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com"
MESSAGE = "Hello from Phoenix Pipeline"
_names = itertools.count(1)


@dataclass(frozen=True)
class Moto:
    aws: Aws
    ecr: Any
    ecs: Any
    elbv2: Any


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    with moto_server() as aws:
        yield Moto(aws, aws.client("ecr"), aws.client("ecs"), aws.client("elbv2"))


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Build:
    """One build's docker (its own daemon directory) and the stand-in's registry directory."""

    moto: Moto
    registry_dir: Path
    daemon_dir: Path

    def docker(self, *args: str, stdin: str = "") -> Result:
        out, err = io.StringIO(), io.StringIO()
        with (
            mock.patch("sys.stdin", io.StringIO(stdin)),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = run(
                list(args), registry_dir=self.registry_dir, daemon_dir=self.daemon_dir, ecr=self.moto.ecr
            )
        return Result(code, out.getvalue(), err.getvalue())

    def login(self) -> Result:
        return self.docker(
            "login", "--username", "AWS", "--password-stdin", HOST, stdin=password(self.moto) + "\n"
        )

    @property
    def registry(self) -> Registry:
        return Registry(self.registry_dir, self.moto.ecr)


def build_in(moto: Moto, tmp_path: Path, daemon: str = "daemon") -> Build:
    return Build(moto, tmp_path / "registry", tmp_path / daemon)


def password(moto: Moto) -> str:
    """What `aws ecr get-login-password` prints: ECR's token, decoded, less its "AWS:"."""
    token = moto.ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().removeprefix("AWS:")


def repository(moto: Moto, mutability: str = "IMMUTABLE") -> str:
    """A fresh ECR repository (IMMUTABLE tags, as ecs-cluster.yaml creates it); its URI."""
    name = f"sample-python-app-{next(_names)}"
    created = moto.ecr.create_repository(repositoryName=name, imageTagMutability=mutability)
    return str(created["repository"]["repositoryUri"])


def app(directory: Path, message: str = MESSAGE) -> Path:
    """A copy of sample-app/ (Dockerfile and .dockerignore included) whose GET / answers `message`."""
    shutil.copytree(SAMPLE_APP, directory, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    source = directory / "app.py"
    source.write_text(source.read_text().replace(MESSAGE, message))
    return directory


def name_of(uri: str) -> str:
    """The repository name of an image URI."""
    return uri.partition("/")[2].partition(":")[0]


def tags(moto: Moto, uri: str) -> dict[str, str]:
    """tag -> digest of the repository's images, from ECR."""
    images = moto.ecr.list_images(repositoryName=name_of(uri))["imageIds"]
    return {image["imageTag"]: image["imageDigest"] for image in images if "imageTag" in image}


def task_definition(moto: Moto, image: str, version: str) -> str:
    return str(
        moto.ecs.register_task_definition(
            family="phoenix-image-test",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            containerDefinitions=[
                {
                    "name": "sample-app",
                    "image": image,
                    "essential": True,
                    "environment": [{"name": "APP_VERSION", "value": version}],
                }
            ],
        )["taskDefinition"]["taskDefinitionArn"]
    )


def runner(
    moto: Moto, registry: Registry, emitted: list[str] | None = None, scale: TimeScale | None = None
) -> TaskRunner:
    """Tasks of images pulled from `registry`; a 5 AWS s start at x100."""
    notes = emitted if emitted is not None else []
    return TaskRunner(
        moto.ecs,
        moto.elbv2,
        scale or TimeScale(factor=100),
        start_seconds=5,
        images=registry.pull,
        emit=lambda _kind, text, **_data: notes.append(text),
    )


def get(address: str, path: str = "/") -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        return json.loads(response.read())


# ---------------------------------------------------------------------------------------------- the path
def test_a_task_serves_the_code_that_was_pushed(moto: Moto, tmp_path: Path) -> None:
    uri = f"{repository(moto)}:1234abcd"
    context = app(tmp_path / "checkout", message="Hello from commit 1234abcd")
    build_ = build_in(moto, tmp_path)
    assert build_.login() == Result(0, "Login Succeeded\n", "")
    built = build_.docker("build", "--tag", uri, str(context))
    assert built.code == 0, built.err
    assert built.out.endswith(f"Successfully tagged {uri}\n")
    pushed = build_.docker("push", uri)
    assert pushed.code == 0, pushed.err
    digest = tags(moto, uri)["1234abcd"]
    assert pushed.out.startswith(f"The push refers to repository [{uri.partition(':')[0]}]\n")
    assert f"\n1234abcd: digest: {digest} size: " in pushed.out

    registry = build_.registry
    arn = task_definition(moto, uri, "1234abcd")
    with runner(moto, registry) as tasks:
        (task,) = tasks.run(arn, 1, "blue")
        assert get(task.address) == {"message": "Hello from commit 1234abcd", "version": "1234abcd"}
        assert tasks.version_of(task.address) == "1234abcd"
    # By digest, the same image (unpacked once), which running it did not change.
    pulled = registry.pull(uri)
    assert registry.pull(f"{uri.partition(':')[0]}@{digest}") == pulled
    assert sorted(path.name for path in pulled.iterdir()) == [
        "app.py",
        "gunicorn.conf.py",
        "requirements.txt",
    ]


def test_an_image_is_its_context_less_what_dockerignore_excludes(moto: Moto, tmp_path: Path) -> None:
    uri = f"{repository(moto)}:ignored"
    context = app(tmp_path / "checkout")
    (context / "secrets.env").write_text("TOKEN=do-not-ship\n")
    (context / "tests").mkdir()
    (context / "tests" / "test_more.py").write_text("")
    build_ = build_in(moto, tmp_path)
    build_.login()
    assert build_.docker("build", "--tag", uri, str(context)).code == 0
    assert build_.docker("push", uri).code == 0
    pulled = build_.registry.pull(uri)
    # sample-app/.dockerignore: "*", then !app.py, !gunicorn.conf.py, !requirements.txt. The Dockerfile and
    # .dockerignore reach docker's daemon but are not in the image when ignored (COPY does not see them).
    assert sorted(path.name for path in pulled.rglob("*")) == [
        "app.py",
        "gunicorn.conf.py",
        "requirements.txt",
    ]
    assert (pulled / "app.py").read_bytes() == (context / "app.py").read_bytes()


def test_the_same_context_is_the_same_digest_and_a_changed_file_another(tmp_path: Path) -> None:
    first = build(app(tmp_path / "a"))
    copy = app(tmp_path / "b")
    os.utime(copy / "app.py", (1, 1))  # another checkout: other times, same content
    assert build(copy).digest == first.digest
    (copy / "test_app.py").write_text("# ignored by .dockerignore\n")
    assert build(copy).digest == first.digest
    (copy / "app.py").write_text((copy / "app.py").read_text() + "\n# a change\n")
    changed = build(copy)
    assert changed.digest != first.digest
    (copy / "Dockerfile").write_text((copy / "Dockerfile").read_text() + "\n# a change\n")
    assert build(copy).digest not in (first.digest, changed.digest)


# ---------------------------------------------------------------------------------------------- refusals
def test_a_push_without_login_fails_and_pushes_nothing(moto: Moto, tmp_path: Path) -> None:
    uri = f"{repository(moto)}:nologin"
    build_ = build_in(moto, tmp_path)
    assert build_.docker("build", "--tag", uri, str(app(tmp_path / "checkout"))).code == 0
    refused = build_.docker("push", uri)
    assert refused.code == 1
    assert refused.err == "no basic auth credentials\n"
    # A login with another password is refused too, and stores nothing.
    wrong = build_.docker("login", "--username", "AWS", "--password-stdin", HOST, stdin="not-the-token\n")
    assert wrong.code == 1
    assert "failed with status: 400 Bad Request" in wrong.err
    assert not (tmp_path / "daemon" / "config.json").exists()
    assert build_.docker("push", uri).err == "no basic auth credentials\n"
    assert tags(moto, uri) == {}
    assert not (tmp_path / "registry").exists()


def test_an_immutable_tag_keeps_its_first_image(moto: Moto, tmp_path: Path) -> None:
    uri = f"{repository(moto)}:abcd1234"
    first = build_in(moto, tmp_path, "daemon-1")
    first.login()
    assert first.docker("build", "--tag", uri, str(app(tmp_path / "one", message="first"))).code == 0
    assert first.docker("push", uri).code == 0
    digest = tags(moto, uri)["abcd1234"]

    second = build_in(moto, tmp_path, "daemon-2")
    second.login()
    assert second.docker("build", "--tag", uri, str(app(tmp_path / "two", message="second"))).code == 0
    refused = second.docker("push", uri)
    assert refused.code == 1
    assert refused.err == (
        f"tag invalid: The image tag 'abcd1234' already exists in the '{name_of(uri)}' repository and cannot "
        "be overwritten because the repository is immutable.\n"
    )
    # ECR refuses the same image again under its tag too: the Makefile's push checks describe-images first.
    assert first.docker("push", uri).code == 1
    assert tags(moto, uri) == {"abcd1234": digest}
    pulled = first.registry.pull(uri)
    assert '"first"' in (pulled / "app.py").read_text()


def test_a_mutable_repository_takes_the_same_image_again(moto: Moto, tmp_path: Path) -> None:
    uri = f"{repository(moto, 'MUTABLE')}:latest"
    build_ = build_in(moto, tmp_path)
    build_.login()
    assert build_.docker("build", "--tag", uri, str(app(tmp_path / "checkout"))).code == 0
    assert build_.docker("push", uri).code == 0
    again = build_.docker("push", uri)
    assert again.code == 0, again.err
    assert "Layer already exists" in again.out


def test_a_build_without_a_dockerfile_fails(moto: Moto, tmp_path: Path) -> None:
    uri = f"{repository(moto)}:nodockerfile"
    context = app(tmp_path / "checkout")
    (context / "Dockerfile").rename(tmp_path / "Dockerfile.elsewhere")
    build_ = build_in(moto, tmp_path)
    failed = build_.docker("build", "--tag", uri, str(context))
    assert failed.code == 1
    assert failed.err.endswith(f"lstat {context / 'Dockerfile'}: no such file or directory\n")
    assert (
        build_.docker("push", uri).err
        == f"An image does not exist locally with the tag: {uri.rpartition(':')[0]}\n"
    )
    # --file names a Dockerfile outside the context.
    assert (
        build_.docker(
            "build", "--tag", uri, "--file", str(tmp_path / "Dockerfile.elsewhere"), str(context)
        ).code
        == 0
    )


def test_a_requirement_the_tasks_python_environment_lacks_fails_the_build(moto: Moto, tmp_path: Path) -> None:
    context = app(tmp_path / "checkout")
    requirements = context / "requirements.txt"
    pinned = requirements.read_text()
    build_ = build_in(moto, tmp_path)
    uri = f"{HOST}/sample-python-app:deps"

    requirements.write_text(pinned.replace("Flask==", "Flask==0.0.1\n# was Flask=="))
    failed = build_.docker("build", "--tag", uri, str(context))
    assert failed.code == 1
    assert "wants Flask==0.0.1, but" in failed.err
    assert f"which has Flask {importlib.metadata.version('flask')}" in failed.err

    requirements.write_text(pinned + "phoenix-not-installed==1.0\n")
    failed = build_.docker("build", "--tag", uri, str(context))
    assert failed.code == 1
    assert "does not have phoenix-not-installed" in failed.err

    requirements.write_text(pinned)
    assert build_.docker("build", "--tag", uri, str(context)).code == 0


# ---------------------------------------------------------------------------------------------- pulls
@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (f"{HOST}/sample-python-app-missing:v1", "pull access denied, repository does not exist"),
        ("TAG", ": not found"),
        ("public.ecr.aws/docker/library/python:3.12-slim", "the stand-in reaches no registry but its ECR"),
    ],
)
def test_a_task_whose_image_cannot_be_pulled_stops_at_start(
    moto: Moto, tmp_path: Path, image: str, reason: str
) -> None:
    if image == "TAG":
        image = f"{repository(moto)}:never-pushed"
    registry = Registry(tmp_path / "registry", moto.ecr)
    arn = task_definition(moto, image, "v-missing")
    emitted: list[str] = []
    scale = TimeScale(factor=100)
    with runner(moto, registry, emitted, scale) as tasks:
        before = scale.now()
        with pytest.raises(TaskFailedToStart, match=r"^CannotPullContainerError: ") as failed:
            tasks.run(arn, 2, "green")
        # After the modelled start, as ECS stops it once provisioning and the pull have run their course.
        assert scale.aws(scale.now() - before) >= tasks.start_seconds
        assert tasks.tasks == []
    assert reason in str(failed.value)
    assert image in str(failed.value)
    assert emitted == [f"2 task(s) stopped at start: {failed.value}"]


# ---------------------------------------------------------------------------------------------- the command
def test_the_docker_script_works_from_any_directory(moto: Moto, tmp_path: Path) -> None:
    uri = f"{repository(moto)}:5678efab"
    script = write_docker_cli(
        tmp_path / "bin", registry_dir=tmp_path / "registry", daemon_dir=tmp_path / "daemon"
    )
    # The build runs in a checkout of this repository: its local/ must not replace the stand-in's code.
    checkout = tmp_path / "checkout"
    app(checkout / "sample-app")
    (checkout / "local").mkdir()
    (checkout / "local" / "__init__.py").write_text(
        "raise SystemExit('the checkout shadowed the stand-in')\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **moto.aws.env()}

    def docker(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args],
            input=stdin,
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    assert docker("login", "--username", "AWS", "--password-stdin", HOST, stdin=password(moto)).stdout == (
        "Login Succeeded\n"
    )
    assert docker("build", "--tag", uri, "sample-app").returncode == 0
    pushed = docker("push", uri)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.endswith(
        f"5678efab: digest: {tags(moto, uri)['5678efab']} size: {len(_manifest(moto, uri))}\n"
    )


def _manifest(moto: Moto, uri: str) -> bytes:
    images = moto.ecr.batch_get_image(
        repositoryName=name_of(uri), imageIds=[{"imageTag": uri.rpartition(":")[2]}]
    )["images"]
    return str(images[0]["imageManifest"]).encode()


@pytest.mark.parametrize(
    "args",
    [
        ("run", f"{HOST}/sample-python-app:v1"),
        ("push", "--all-tags", f"{HOST}/sample-python-app"),
        ("login", "--username", "AWS", "--password", "secret", HOST),
        ("build", "--tag", f"{HOST}/sample-python-app:v1", "--no-cache", "."),
        (),
    ],
)
def test_anything_else_is_refused(moto: Moto, tmp_path: Path, args: tuple[str, ...]) -> None:
    refused = build_in(moto, tmp_path).docker(*args)
    assert refused.code == 1
    assert refused.err.startswith("the stand-in's docker does not implement docker")

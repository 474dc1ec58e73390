"""Running the project's commands as a user does (`make <target>` or a script, in a clean AWS environment),
against a moto server of their own."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from local.aws.cloudformation import teach_moto

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """Test credentials and nothing from the developer's AWS configuration, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def run(command: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The command from the repository root, its output captured, its exit status left to the test."""
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def make(target: str, env: dict[str, str], **variables: str) -> subprocess.CompletedProcess[str]:
    """`make <target> NAME=value ...`."""
    return run(["make", "--no-print-directory", target, *(f"{k}={v}" for k, v in variables.items())], env)


def own_stderr(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The command's stderr lines without make's own ("make: *** ... Error 1")."""
    return [line for line in result.stderr.splitlines() if not line.startswith("make")]


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port; its process-wide backends are reset when it stops.

    Its CloudFormation answers Ref and Fn::GetAtt of the types it does not implement (alarms, CodeDeploy,
    CodeBuild, CodePipeline, SNS subscriptions) as AWS does, as the local stand-in's does: the templates refer
    to those resources rather than naming them. It does not create them. It evaluates what the templates use
    as written for AWS (Fn::Cidr, Fn::FindInMap keyed by a Number parameter, a list element that is
    !If [..., !Ref AWS::NoValue], the ELBv2 full-name attributes): `teach_moto()`, as in the stand-in.
    """
    teach_moto()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # moto's backends are global to the process: leave nothing behind for later tests.
        requests.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=10)
        server.stop()

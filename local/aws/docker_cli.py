"""The stand-in's `docker` command, for builds that have no Docker engine (local/aws/images.py).

It implements exactly what the Makefile runs, with docker's output and errors:

    docker login --username AWS --password-stdin REGISTRY
    docker build --tag URI [--file DOCKERFILE] CONTEXT
    docker push URI

and refuses anything else (exit 1). `write_docker_cli` writes a `docker` script that runs this module with one
build's daemon directory and the stand-in's registry directory baked in; the build's environment needs no
variable of its own, only the standard endpoint settings (AWS_ENDPOINT_URL...) boto3 reads for ECR.

    python -m local.aws.docker_cli --registry-dir DIR --daemon-dir DIR -- build --tag URI sample-app
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

from local.aws.account import REGION
from local.aws.images import Daemon, ImageError, Reference, Registry

ROOT = Path(__file__).resolve().parents[2]


class Unsupported(Exception):
    """A docker command or flag the stand-in does not implement."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Unsupported(message)


def _parsers() -> dict[str, _Parser]:
    login = _Parser(prog="docker login", add_help=False, allow_abbrev=False)
    login.add_argument("-u", "--username", required=True)
    login.add_argument("--password-stdin", action="store_true", required=True)
    login.add_argument("server")
    build = _Parser(prog="docker build", add_help=False, allow_abbrev=False)
    build.add_argument("-t", "--tag", required=True)
    build.add_argument("-f", "--file")
    build.add_argument("context")
    push = _Parser(prog="docker push", add_help=False, allow_abbrev=False)
    push.add_argument("name")
    return {"login": login, "build": build, "push": push}


def _ecr() -> Any:
    # Never the real ECR: without an endpoint setting boto3 would go to AWS.
    if not (os.environ.get("AWS_ENDPOINT_URL_ECR") or os.environ.get("AWS_ENDPOINT_URL")):
        raise ImageError(
            "the stand-in's docker talks to the stand-in's ECR only, and AWS_ENDPOINT_URL is not set"
        )
    import boto3  # noqa: PLC0415 - only login and push reach ECR

    return boto3.session.Session().client("ecr", region_name=REGION)


def run(args: list[str], *, registry_dir: Path, daemon_dir: Path, ecr: Any = None) -> int:
    """One docker command; its output on stdout, its errors on stderr; docker's exit code. `ecr`: the ECR
    client login and push use (by default boto3's, from the environment's endpoint settings)."""
    command = args[0] if args else ""
    parsers = _parsers()
    try:
        if command not in parsers:
            raise Unsupported(f"docker {command}".strip())
        options = parsers[command].parse_args(args[1:])
        daemon = Daemon(daemon_dir)
        if command == "login":
            # docker reads the whole of stdin and drops one trailing newline.
            password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
            Registry(registry_dir, ecr or _ecr()).authenticate(options.server, options.username, password)
            daemon.save_login(options.server, options.username, password)
            print("Login Succeeded")
        elif command == "build":
            context = Path(options.context)
            dockerfile = Path(options.file).absolute() if options.file else None
            if context.is_dir():
                print(f"Sending build context to Docker daemon (the stand-in's: {context})")
            image = daemon.build(options.tag, context, dockerfile)
            print("The stand-in does not run the Dockerfile: the image is the build context, as one layer")
            print(f"Successfully built {image.id.removeprefix('sha256:')[:12]}")
            print(f"Successfully tagged {options.tag}")
        else:
            reference = Reference.parse(options.name)
            image = daemon.image(reference)
            layer = image.layer_digest.removeprefix("sha256:")[:12]
            print(f"The push refers to repository [{reference.name}]")
            print(f"{layer}: Preparing", flush=True)
            pushed = Registry(registry_dir, ecr or _ecr()).push(
                reference, image, daemon.credentials(reference.registry)
            )
            print(f"{layer}: {'Layer already exists' if pushed.layer_existed else 'Pushed'}")
            print(f"{reference.tag}: digest: {pushed.digest} size: {pushed.size}")
    except Unsupported as exc:
        print(
            f"the stand-in's docker does not implement {shlex.join(['docker', *args])} ({exc})",
            file=sys.stderr,
        )
        return 1
    except ImageError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def write_docker_cli(bin_dir: Path, *, registry_dir: Path, daemon_dir: Path) -> Path:
    """Write an executable `docker` into `bin_dir` running this module for one build's daemon directory and
    the stand-in's registry directory; it works from any working directory."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "docker"
    # -P: the build's working directory (a checkout of this repository) must not shadow the stand-in's code.
    command = [
        sys.executable,
        "-P",
        "-m",
        "local.aws.docker_cli",
        "--registry-dir",
        str(registry_dir.absolute()),
        "--daemon-dir",
        str(daemon_dir.absolute()),
        "--",
    ]
    script.write_text(
        "#!/bin/sh\n"
        "# The stand-in's docker (local/aws/docker_cli.py): no Docker engine; images are build contexts.\n"
        f"PYTHONPATH={shlex.quote(str(ROOT))}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.join(command)} "$@"\n'
    )
    script.chmod(0o755)
    return script


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    split = args.index("--") if "--" in args else len(args)
    parser = argparse.ArgumentParser(prog="python -m local.aws.docker_cli")
    parser.add_argument("--registry-dir", type=Path, required=True)
    parser.add_argument("--daemon-dir", type=Path, required=True)
    paths = parser.parse_args(args[:split])
    return run(args[split + 1 :], registry_dir=paths.registry_dir, daemon_dir=paths.daemon_dir)


if __name__ == "__main__":
    sys.exit(main())

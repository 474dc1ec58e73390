"""Container images without a Docker engine: a build's image store, and ECR's layer storage beside moto.

An image here IS its build context. `build` makes a deterministic tar of the context directory, less what
`.dockerignore` excludes (docker's own pattern rules, from the docker SDK for Python), as the image's one
layer: the same context gives the same image and the same digest. The Dockerfile must exist, as docker
requires, and is not run: its hash is in the image config (a changed Dockerfile is another image); its
instructions are not exercised (the base image's OS and Python, pip install, USER, VOLUME, HEALTHCHECK). Tasks
run the image's files with the drill's own Python environment, so `build` fails when the context's
requirements.txt pins something that environment does not have: a commit that changes the app's dependencies
fails its build offline instead of running with the wrong ones.

`Daemon` is one build's docker daemon: its images and tags, and its docker logins (the build container's
~/.docker/config.json); CodeBuild gives every build a fresh one. `Registry` is ECR's registry side: a push
goes through moto's ECR API as the ECR proxy does (BatchCheckLayerAvailability, InitiateLayerUpload,
UploadLayerPart, CompleteLayerUpload, PutImage) with a Docker image manifest v2 schema 2, the blobs' bytes
kept in the registry directory (moto keeps only their sizes); a pull resolves the reference with
BatchGetImage and unpacks the layer. Where moto is kinder than ECR, `Registry` enforces ECR's rule itself.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from local.aws.account import ACCOUNT_ID, REGION

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# botocore ECR UploadLayerPart: "The maximum size of each image layer part can be 20971520 bytes".
PART_BYTES = 20_971_520
# The wording of a Fargate task's stoppedReason when containerd could not resolve its image.
PULL_FAILED = (
    "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref"
)

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    rf"(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


class ImageError(Exception):
    """A docker or registry failure; its message is what docker prints."""


class CannotPullContainerError(ImageError):
    """An image a task cannot start from; the message is ECS's stoppedReason."""


@dataclass(frozen=True)
class Reference:
    """A docker image reference: registry host, repository, tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        found = _REFERENCE.match(text)
        if not found or not found["registry"] or not _is_host(found["registry"]):
            # The stand-in has no default registry (docker.io): every image names its host.
            raise ImageError(f"invalid reference format: {text!r} (the stand-in needs a registry host in it)")
        tag = found["tag"] or (None if found["digest"] else "latest")
        return cls(found["registry"], found["repository"], tag, found["digest"])

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _is_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- build
@dataclass(frozen=True)
class Image:
    """A built image: its config and its one layer (the gzipped tar of the build context)."""

    config: bytes
    layer: bytes

    @property
    def id(self) -> str:
        """Docker's image ID: the config's digest."""
        return sha256(self.config)

    @property
    def layer_digest(self) -> str:
        return sha256(self.layer)

    @property
    def manifest(self) -> bytes:
        """The Docker image manifest v2 schema 2 a push puts in the registry."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "size": len(self.config), "digest": self.id},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "size": len(self.layer), "digest": self.layer_digest}],
        }
        return json.dumps(manifest, indent=3).encode()

    @property
    def digest(self) -> str:
        """The image digest ECR shows: the manifest's."""
        return sha256(self.manifest)


def build(context: Path, dockerfile: Path | None = None) -> Image:
    """The image of a build context (docker build's checks, then the context as one layer)."""
    if not context.is_dir():
        raise ImageError(f'unable to prepare context: path "{context}" not found')
    dockerfile = dockerfile or context / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageError(
            "unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
            f"lstat {dockerfile.absolute()}: no such file or directory"
        )
    requirements = context / "requirements.txt"
    if requirements.is_file():
        check_requirements(requirements)
    tar = _context_tar(context)
    layer = io.BytesIO()
    # mtime 0 and no file name in the gzip header: the same tar gives the same bytes.
    with gzip.GzipFile(fileobj=layer, mode="wb", filename="", mtime=0) as compressed:
        compressed.write(tar)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        "history": [
            {
                "created_by": "the stand-in's docker build: the build context as one layer; "
                f"Dockerfile {sha256(dockerfile.read_bytes())} not run"
            }
        ],
    }
    return Image(json.dumps(config, sort_keys=True, separators=(",", ":")).encode(), layer.getvalue())


def context_files(context: Path) -> list[str]:
    """The context's paths (files, directories, symlinks) that `.dockerignore` does not exclude, sorted."""
    from docker.utils.build import PatternMatcher  # noqa: PLC0415 - the SDK takes 0.15 s to import

    ignore = context / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    patterns = [line.strip() for line in lines]
    matcher = PatternMatcher([p for p in patterns if p and not p.startswith("#")])
    # The SDK keeps .dockerignore in what it sends to the daemon, as docker does; but COPY does not copy an
    # ignored .dockerignore (nor an ignored Dockerfile) into the image.
    forced = matcher.patterns[-1]
    if forced.exclusion and forced.cleaned_pattern == ".dockerignore":
        matcher.patterns.pop()
    return sorted(path.replace(os.sep, "/") for path in matcher.walk(str(context)))


def _context_tar(context: Path) -> bytes:
    """A reproducible tar: sorted entries, no times or owners, modes reduced to 644/755."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in context_files(context):
            path = context / name
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_symlink():
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
                tar.addfile(info)
            elif path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif path.is_file():
                data = path.read_bytes()
                info.size, info.mode = len(data), 0o755 if path.stat().st_mode & 0o111 else 0o644
                tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def check_requirements(requirements: Path) -> None:
    """Every requirement of the file is met by the running Python environment, the one tasks run with."""
    from packaging.requirements import InvalidRequirement, Requirement  # noqa: PLC0415

    for number, line in enumerate(requirements.read_text().splitlines(), start=1):
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        where = f"{requirements.name} line {number}"
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            raise ImageError(
                f"the stand-in's docker build: {where} ({text!r}) is not a requirement it can check "
                "against the Python environment the tasks run with"
            ) from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed: str | None = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            has = f"has {requirement.name} {installed}" if installed else f"does not have {requirement.name}"
            raise ImageError(
                f"the stand-in's docker build: {where} wants {text}, but the tasks run with this Python "
                f"environment ({sys.prefix}), which {has}; the image would not run what it pins. "
                "Install the new pins there (make venv) and build again."
            )


class Daemon:
    """One build's docker daemon: images, their tags, and docker logins (the build container's
    ~/.docker/config.json), all under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._images = root / "images"
        self._tags = root / "repositories.json"
        self._config = root / "config.json"

    def build(self, tag: str, context: Path, dockerfile: Path | None = None) -> Image:
        """`docker build --tag`: build the context and tag the image."""
        reference = Reference.parse(tag)
        image = build(context, dockerfile)
        directory = self._images / image.id.removeprefix("sha256:")
        directory.mkdir(parents=True, exist_ok=True)
        _write(directory / "config.json", image.config)
        _write(directory / "layer.tar.gz", image.layer)
        tags = self._read(self._tags)
        tags[str(reference)] = image.id
        _write(self._tags, json.dumps(tags, indent=2, sort_keys=True).encode())
        return image

    def image(self, reference: Reference) -> Image:
        """The image tagged `reference` here; docker's error when there is none."""
        image_id = self._read(self._tags).get(str(reference))
        if image_id is None:
            raise ImageError(f"An image does not exist locally with the tag: {reference.name}")
        directory = self._images / str(image_id).removeprefix("sha256:")
        return Image((directory / "config.json").read_bytes(), (directory / "layer.tar.gz").read_bytes())

    def save_login(self, host: str, username: str, password: str) -> None:
        config = self._read(self._config)
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        config.setdefault("auths", {})[host] = {"auth": auth}
        _write(self._config, json.dumps(config, indent=2, sort_keys=True).encode())

    def credentials(self, host: str) -> tuple[str, str] | None:
        """The username and password of the last `docker login` to `host`, if any."""
        auth = self._read(self._config).get("auths", {}).get(host, {}).get("auth")
        if not auth:
            return None
        username, _, password = base64.b64decode(auth).decode().partition(":")
        return username, password

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        return dict(json.loads(path.read_text())) if path.is_file() else {}


def _write(path: Path, data: bytes) -> None:
    """Write whole or not at all (another process may read it meanwhile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Pushed:
    digest: str
    size: int
    layer_existed: bool


class Registry:
    """ECR's registry side for the stand-in's account and region: moto's ECR API for repositories, images,
    tags and layer availability; the blobs' bytes in `root`/blobs; pulled images unpacked in `root`/pulled,
    once per manifest digest."""

    def __init__(self, root: Path, ecr: Any, *, account: str = ACCOUNT_ID, region: str = REGION) -> None:
        self.root = root
        self._ecr = ecr
        self.account = account
        self.host = f"{account}.dkr.ecr.{region}.amazonaws.com"
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ login
    def authenticate(self, host: str, username: str, password: str) -> None:
        """What the registry answers `docker login`: the password must be the one ECR's
        GetAuthorizationToken issues (its token is base64 "AWS:<password>")."""
        self._reachable(host)
        data = self._ecr.get_authorization_token(registryIds=[self.account])["authorizationData"][0]
        try:
            expected = base64.b64decode(data["authorizationToken"]).decode()
        except (binascii.Error, UnicodeDecodeError):
            expected = ""
        if f"{username}:{password}" != expected:
            raise ImageError(
                f"Error response from daemon: login attempted to https://{host}/v2/ failed with status: "
                "400 Bad Request"
            )

    def _reachable(self, host: str) -> None:
        if host != self.host:
            raise ImageError(
                f'Error response from daemon: Get "https://{host}/v2/": the stand-in reaches no registry but '
                f"its ECR, {self.host}"
            )

    # ------------------------------------------------------------------ push
    def push(self, reference: Reference, image: Image, credentials: tuple[str, str] | None) -> Pushed:
        """`docker push` to ECR: the blobs ECR does not have yet, then the manifest under the tag."""
        self._reachable(reference.registry)
        if credentials is None:
            raise ImageError("no basic auth credentials")
        try:
            self.authenticate(reference.registry, *credentials)
        except ImageError:
            raise ImageError("no basic auth credentials") from None
        if reference.tag is None:
            raise ImageError(f"the stand-in's docker push needs a tag: {reference}")
        repository = reference.repository
        try:
            mutability = self._ecr.describe_repositories(
                registryId=self.account, repositoryNames=[repository]
            )["repositories"][0]["imageTagMutability"]
        except ClientError as exc:
            raise ImageError(f"name unknown: {_message(exc)}") from None
        layer_existed = self._upload(repository, image.layer)
        self._upload(repository, image.config)
        # ECR refuses a tag already in an IMMUTABLE repository, even for the same digest (ECR User Guide,
        # image-tag-mutability.html: ImageTagAlreadyExistsException; aws/containers-roadmap#2179): enforced
        # here, since moto answers ImageAlreadyExistsException instead.
        immutable = mutability == "IMMUTABLE"
        if immutable and self._tagged(repository, reference.tag):
            raise ImageError(
                f"tag invalid: The image tag '{reference.tag}' already exists in the '{repository}' "
                "repository and cannot be overwritten because the repository is immutable."
            )
        manifest = image.manifest
        try:
            self._ecr.put_image(
                registryId=self.account,
                repositoryName=repository,
                imageManifest=manifest.decode(),
                imageManifestMediaType=MANIFEST_MEDIA_TYPE,
                imageTag=reference.tag,
                imageDigest=image.digest,
            )
        except ClientError as exc:
            # In a mutable repository a push of what the tag already names succeeds (the registry API is
            # idempotent); only the PutImage API calls it ImageAlreadyExistsException.
            if immutable or _code(exc) != "ImageAlreadyExistsException":
                raise ImageError(f"{_code(exc)}: {_message(exc)}") from None
        return Pushed(image.digest, len(manifest), layer_existed)

    def _tagged(self, repository: str, tag: str) -> bool:
        answer = self._ecr.batch_get_image(
            registryId=self.account, repositoryName=repository, imageIds=[{"imageTag": tag}]
        )
        return bool(answer["images"])

    def _upload(self, repository: str, blob: bytes) -> bool:
        """Upload one blob unless the repository has it; True when it had."""
        digest = sha256(blob)
        available = self._ecr.batch_check_layer_availability(
            registryId=self.account, repositoryName=repository, layerDigests=[digest]
        )["layers"]
        if any(layer.get("layerAvailability") == "AVAILABLE" for layer in available):
            return True
        upload = self._ecr.initiate_layer_upload(registryId=self.account, repositoryName=repository)
        for first in range(0, len(blob), PART_BYTES):
            part = blob[first : first + PART_BYTES]
            self._ecr.upload_layer_part(
                registryId=self.account,
                repositoryName=repository,
                uploadId=upload["uploadId"],
                partFirstByte=first,
                partLastByte=first + len(part) - 1,
                layerPartBlob=part,
            )
        # ECR stores the bytes on upload; so does the stand-in, before telling ECR the upload is complete.
        _write(self._blob_path(digest), blob)
        done = self._ecr.complete_layer_upload(
            registryId=self.account,
            repositoryName=repository,
            uploadId=upload["uploadId"],
            layerDigests=[digest],
        )
        if done["layerDigest"] != digest:  # ECR's InvalidLayerException; moto does not compare
            raise ImageError(f"blob upload invalid: ECR computed {done['layerDigest']}, not {digest}")
        return False

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    # ------------------------------------------------------------------ pull
    def pull(self, uri: str) -> Path:
        """The directory of the image `uri` (an ECR image of this account and region, by tag or digest),
        resolved with BatchGetImage; CannotPullContainerError otherwise, worded as ECS words it."""
        try:
            reference = Reference.parse(uri)
        except ImageError as exc:
            raise CannotPullContainerError(f"{PULL_FAILED} {uri}: {exc}") from None
        if reference.registry != self.host:
            raise CannotPullContainerError(
                f'{PULL_FAILED} {uri}: failed to do request: Head "https://{reference.registry}/v2/'
                f'{reference.repository}/manifests/{reference.digest or reference.tag}": the stand-in '
                f"reaches no registry but its ECR, {self.host}"
            )
        wanted = {"imageDigest": reference.digest} if reference.digest else {"imageTag": str(reference.tag)}
        try:
            answer = self._ecr.batch_get_image(
                registryId=self.account,
                repositoryName=reference.repository,
                imageIds=[wanted],
                acceptedMediaTypes=[MANIFEST_MEDIA_TYPE],
            )
        except ClientError as exc:
            raise CannotPullContainerError(
                f"{PULL_FAILED} {uri}: pull access denied, repository does not exist or may require "
                f"authorization: server message: name_unknown: {_message(exc)}"
            ) from None
        if not answer["images"]:
            raise CannotPullContainerError(f"{PULL_FAILED} {uri}: {uri}: not found")
        text = str(answer["images"][0]["imageManifest"])
        digest = sha256(text.encode())
        if reference.digest and digest != reference.digest:
            raise CannotPullContainerError(f"{PULL_FAILED} {uri}: manifest digest {digest} does not match")
        with self._lock:
            target = self.root / "pulled" / digest.removeprefix("sha256:")
            if not target.is_dir():
                self._unpack(reference, uri, json.loads(text), target)
        return target

    def _unpack(self, reference: Reference, uri: str, manifest: dict[str, Any], target: Path) -> None:
        if manifest.get("mediaType") != MANIFEST_MEDIA_TYPE:
            raise CannotPullContainerError(f"{PULL_FAILED} {uri}: unsupported manifest media type")
        digests = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        failures = self._ecr.batch_check_layer_availability(
            registryId=self.account, repositoryName=reference.repository, layerDigests=digests
        )["failures"]
        if failures:
            raise CannotPullContainerError(f"{PULL_FAILED} {uri}: {failures[0]['failureReason']}")
        target.parent.mkdir(parents=True, exist_ok=True)
        unpacking = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
        try:
            for layer in manifest["layers"]:
                blob = self._blob_path(layer["digest"]).read_bytes()
                if sha256(blob) != layer["digest"]:
                    raise CannotPullContainerError(f"{PULL_FAILED} {uri}: layer {layer['digest']} is corrupt")
                with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
                    tar.extractall(unpacking, filter="data")
            os.replace(unpacking, target)
        finally:
            shutil.rmtree(unpacking, ignore_errors=True)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Error"))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", exc))

"""A buildspec, version 0.2, read as CodeBuild reads it, into what the runner needs.

AWS reference: "Build specification reference for CodeBuild"
(https://docs.aws.amazon.com/codebuild/latest/userguide/build-spec-ref.html). What this reads:

- `version`: 0.2 only. In 0.1 every command runs in its own shell; the stand-in runs 0.2's one shell.
- `env/shell`: `bash` or `/bin/sh` (Linux tags); without it, `/bin/sh` (dash on CodeBuild's Ubuntu images).
- `env/variables`: literal values (no shell expansion), the lowest precedence: the project's variables, then
  the start-build overrides (CodePipeline's action variables) replace them.
- `phases/<install|pre_build|build|post_build>`: `commands`, `finally`, `on-failure` (`ABORT`, `CONTINUE`;
  RETRY is not modelled), and `runtime-versions` in `install`.
- `reports/<group name or ARN>`: `files`, `base-directory`, `discard-paths`, `file-format` (JUNITXML parsed).
- `artifacts`: `files`, `base-directory`, `discard-paths` (`name` is ignored for CODEPIPELINE artifacts).
- `cache/paths`: accepted and ignored, as CodeBuild ignores it for a project without a cache.

Anything else the reference defines (`run-as`, `proxy`, `batch`, `env/parameter-store`, `env/secrets-manager`,
`env/exported-variables`, `secondary-artifacts`, RETRY) fails the build with YAML_FILE_ERROR naming it: the
stand-in would otherwise silently do less than CodeBuild. Scalars are read as their text, as CodeBuild's
parser reads them into strings (`python: 3.10` is "3.10", not the float 3.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

PHASES = ("install", "pre_build", "build", "post_build")
SHELLS = {"bash": "/bin/bash", "/bin/sh": "/bin/sh"}
DEFAULT_SHELL = "/bin/sh"
ON_FAILURE = ("ABORT", "CONTINUE")
UNSUPPORTED = {
    "run-as": "run-as (commands run as this machine's user)",
    "proxy": "proxy",
    "batch": "batch builds",
}


class BuildspecError(ValueError):
    """The buildspec cannot be run: CodeBuild's YAML_FILE_ERROR, with this message."""


class _TextScalars(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except numbers, which stay the text they were written as."""


def _as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_TextScalars.add_constructor("tag:yaml.org,2002:int", _as_text)
_TextScalars.add_constructor("tag:yaml.org,2002:float", _as_text)


@dataclass(frozen=True)
class Phase:
    name: str  # install, pre_build, build, post_build
    commands: tuple[str, ...] = ()
    finally_: tuple[str, ...] = ()
    on_failure: str | None = None  # ABORT, CONTINUE, or None: the default phase transitions
    runtime_versions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FileSet:
    """`artifacts` or one `reports` group: which files, relative to the source directory."""

    files: tuple[str, ...]
    base_directory: str | None = None
    discard_paths: bool = False
    file_format: str = "JUNITXML"  # reports only


@dataclass(frozen=True)
class Buildspec:
    shell: str = DEFAULT_SHELL  # the interpreter's path
    variables: dict[str, str] = field(default_factory=dict)
    phases: dict[str, Phase] = field(default_factory=dict)
    reports: dict[str, FileSet] = field(default_factory=dict)
    artifacts: FileSet | None = None

    def phase(self, name: str) -> Phase:
        return self.phases.get(name, Phase(name))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BuildspecError(f"{where} must be a mapping")
    return {str(k): v for k, v in value.items()}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or any(isinstance(v, dict | list) for v in value):
        raise BuildspecError(f"{where} must be a sequence of strings")
    return tuple(str(v) for v in value if v is not None)


def _flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("yes", "true"):
        return True
    if str(value).lower() in ("no", "false"):
        return False
    raise BuildspecError(f"{where} must be yes or no")


def _unsupported(keys: set[str], known: set[str], where: str) -> None:
    unknown = sorted(keys - known)
    if unknown:
        raise BuildspecError(f"{where}: {', '.join(unknown)} is not run by the CodeBuild stand-in")


def _phase(name: str, body: Any) -> Phase:
    data = _mapping(body, f"phases/{name}")
    known = {"commands", "finally", "on-failure"} | ({"runtime-versions"} if name == "install" else set())
    _unsupported(set(data), known, f"phases/{name}")
    on_failure = data.get("on-failure")
    if on_failure is not None and str(on_failure) not in ON_FAILURE:
        raise BuildspecError(f"phases/{name}/on-failure: {on_failure} is not run by the CodeBuild stand-in")
    runtimes = _mapping(data.get("runtime-versions"), f"phases/{name}/runtime-versions")
    return Phase(
        name,
        _strings(data.get("commands"), f"phases/{name}/commands"),
        _strings(data.get("finally"), f"phases/{name}/finally"),
        None if on_failure is None else str(on_failure),
        tuple((str(k), str(v)) for k, v in runtimes.items()),
    )


def _file_set(body: Any, where: str, *, report: bool) -> FileSet:
    data = _mapping(body, where)
    known = {"files", "base-directory", "discard-paths"}
    known |= {"file-format"} if report else {"name", "secondary-artifacts"}
    _unsupported(set(data), known, where)
    if "secondary-artifacts" in data:
        raise BuildspecError(f"{where}/secondary-artifacts is not run by the CodeBuild stand-in")
    files = _strings(data.get("files"), f"{where}/files")
    if not files:
        raise BuildspecError(f"{where}/files is required")
    base = data.get("base-directory")
    return FileSet(
        files,
        None if base is None else str(base),
        _flag(data.get("discard-paths"), f"{where}/discard-paths"),
        str(data.get("file-format", "JUNITXML")).upper(),
    )


def parse(text: str) -> Buildspec:
    """The buildspec in `text`; BuildspecError says why it cannot run."""
    try:
        data = yaml.load(text, Loader=_TextScalars)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise BuildspecError(f"invalid YAML: {exc}") from exc
    spec = _mapping(data, "the buildspec")
    version = spec.get("version")
    if version is None:
        raise BuildspecError("version is required")
    if str(version) != "0.2":
        raise BuildspecError(f"version {version}: the CodeBuild stand-in runs version 0.2 only")
    for key, what in UNSUPPORTED.items():
        if key in spec:
            raise BuildspecError(f"{what} is not run by the CodeBuild stand-in")
    _unsupported(set(spec), {"version", "env", "phases", "reports", "artifacts", "cache"}, "the buildspec")

    env = _mapping(spec.get("env"), "env")
    _unsupported(set(env), {"shell", "variables", "git-credential-helper"}, "env")
    shell_tag = env.get("shell")
    if shell_tag is not None and str(shell_tag) not in SHELLS:
        raise BuildspecError(f"env/shell: {shell_tag} is not a Linux shell tag (bash, /bin/sh)")
    variables = {k: "" if v is None else str(v) for k, v in _mapping(env.get("variables"), "env").items()}

    phases_data = _mapping(spec.get("phases"), "phases")
    _unsupported(set(phases_data), set(PHASES), "phases")
    phases = {name: _phase(name, body) for name, body in phases_data.items()}

    reports = {
        name: _file_set(body, f"reports/{name}", report=True)
        for name, body in _mapping(spec.get("reports"), "reports").items()
    }
    artifacts = spec.get("artifacts")
    return Buildspec(
        SHELLS[str(shell_tag)] if shell_tag is not None else DEFAULT_SHELL,
        variables,
        phases,
        reports,
        None if artifacts is None else _file_set(artifacts, "artifacts", report=False),
    )

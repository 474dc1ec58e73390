"""One place names each Python: the functions' Lambda runtime in lambda-functions.yaml's LambdaRuntime
mapping, the sample app's base image in sample-app/Dockerfile's PYTHON_IMAGE. Every other file that names one
names the same; `make package` installs the functions' requirements for the runtime's Python."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import date
from pathlib import Path

import botocore.session
import cfnlint
import pytest

from scripts.stacks import LAMBDA, load_template

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = load_template(LAMBDA.template)["Mappings"]["LambdaRuntime"]["Python"]["Identifier"]
FROM_MAPPING = {"Fn::FindInMap": ["LambdaRuntime", "Python", "Identifier"]}
# Where a runtime or the image could be named: the Makefile, the templates, the docs, the stand-in, the code.
NAMING_FILES = sorted(
    {ROOT / "Makefile", ROOT / "README.md"}
    | {
        p
        for pattern in ("cloudformation/*.yaml", "docs/*.md", "local/**/*.py", "local/*.md")
        for p in ROOT.glob(pattern)
    }
    | {p for pattern in ("scripts/*.py", "lambdas/*.py", "pipeline-config/*") for p in ROOT.glob(pattern)}
)
LAMBDA_RUNTIME_NAME = re.compile(r"\bpython3\.\d+\b")
EXACT_PYTHON_IMAGE = re.compile(r"[\w./-]*python:\d+\.\d+\.\d+[\w.@:-]*")


def test_the_runtime_is_the_newest_python_lambda_supports() -> None:
    # botocore's Lambda model lists every identifier Lambda accepts; cfn-lint's lifecycle data (the "Lambda
    # runtimes" page of the developer guide) has each runtime's deprecation date and successor.
    model = botocore.session.get_session().get_service_model("lambda")
    assert RUNTIME in model.shape_for("Runtime").enum
    lifecycle = json.loads(
        (Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "LmbdRuntimeLifecycle.json").read_text()
    )
    assert lifecycle[RUNTIME]["successor"] is None, (
        f"{RUNTIME} has a successor: {lifecycle[RUNTIME]['successor']}"
    )
    assert date.today() < date.fromisoformat(lifecycle[RUNTIME]["deprecated"]), f"{RUNTIME} is deprecated"


def test_every_function_runs_on_the_mapped_runtime() -> None:
    for path in sorted((ROOT / "cloudformation").glob("*.yaml")):
        for logical, resource in load_template(path.name).get("Resources", {}).items():
            if resource["Type"] == "AWS::Lambda::Function":
                runtime = resource["Properties"]["Runtime"]
                expected = FROM_MAPPING if path.name == LAMBDA.template else RUNTIME
                assert runtime == expected, f"{path.name} {logical}: Runtime {runtime!r}, not the mapping's"


@pytest.mark.parametrize("path", NAMING_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_other_file_names_another_lambda_runtime(path: Path) -> None:
    text = path.read_text()
    others = {name for name in LAMBDA_RUNTIME_NAME.findall(text) if name != RUNTIME}
    others |= {f"--python-version {v}" for v in re.findall(r"--python-version\s+(\d\S*)", text)}
    assert others == set(), f"{path.relative_to(ROOT)} names {sorted(others)}; the runtime is {RUNTIME}"


def test_make_package_installs_the_requirements_for_the_runtimes_python() -> None:
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "build/health_check.zip"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert re.findall(r"--python-version (\S+)", dry_run) == [RUNTIME.removeprefix("python")]


def test_the_sample_apps_python_image_is_named_once_and_the_docs_name_that_one() -> None:
    dockerfile = (ROOT / "sample-app" / "Dockerfile").read_text()
    [image] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert bases, "no FROM"
    assert set(bases) == {"${PYTHON_IMAGE}"}, f"every stage starts from PYTHON_IMAGE: {bases}"
    for path in NAMING_FILES:
        others = set(EXACT_PYTHON_IMAGE.findall(path.read_text())) - {image}
        assert others == set(), f"{path.relative_to(ROOT)} names {sorted(others)}; the image is {image}"
    assert image in (ROOT / "docs" / "build.md").read_text()

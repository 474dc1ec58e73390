"""Lambda packages and the three Phoenix stacks: `make package`, `make deploy`, `make destroy`.

    python scripts/deploy.py package DEPS_DIR OUT_DIR   lambdas/<name>.py + DEPS_DIR -> OUT_DIR/<name>.zip
    python scripts/deploy.py validate                  check every stack parameter; touches nothing
    python scripts/deploy.py deploy                    validate, then the README's set-up steps in its order
    python scripts/deploy.py destroy                   delete the stacks in reverse order (PURGE=true: also
                                                       the retained ECR repository and the artifact bucket)

Stack parameters come from environment variables named after them in upper snake case - the spec's names:
ENVIRONMENT, HEALTH_CHECK_INTERVAL, ALARM_THRESHOLD, DEPLOYMENT_TIMEOUT, and PROJECT_NAME, SERVICE_NAME,
GITHUB_REPO, GITHUB_BRANCH, GITHUB_CONNECTION_ARN, NOTIFICATION_EMAIL, ENABLE_NAT_GATEWAY, ALLOWED_CIDR, ...
(any parameter of the three templates). Unset ones keep the template default. The stack wiring (stack
names, artifact bucket, code keys, HealthCheckInVpc = ENABLE_NAT_GATEWAY) is set here, as the README does.
Every value is checked against the templates' own constraints (AllowedValues, AllowedPattern, Min/Max)
before any AWS call, so a wrong or missing value stops here with its name.

boto3 honours AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>), so the same commands run against the local
stand-in. The stack names and order are the README's: ecs-cluster-stack, lambda-functions-stack,
cicd-pipeline-stack.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError, WaiterError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "cloudformation"
LAMBDAS = ("health_check", "auto_rollback")
CLUSTER_STACK = "ecs-cluster-stack"
LAMBDA_STACK = "lambda-functions-stack"
PIPELINE_STACK = "cicd-pipeline-stack"
# (stack name, template file) in the README's order.
STACKS = (
    (CLUSTER_STACK, "ecs-cluster.yaml"),
    (LAMBDA_STACK, "lambda-functions.yaml"),
    (PIPELINE_STACK, "cicd-pipeline.yaml"),
)
# Parameters this script sets itself (stack wiring, code keys): not read from the environment.
WIRED = frozenset(
    {
        "ClusterStackName",
        "LambdaStackName",
        "HealthCheckCodeKey",
        "AutoRollbackCodeKey",
        "HealthCheckInVpc",
        "ArtifactBucket",
    }
)
BUCKET_PLACEHOLDER = "cluster-stack-artifact-bucket"  # validated form; the real name is read after step 1
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same zip and the same S3 key
WAIT = {"Delay": 5, "MaxAttempts": 360}  # 30 minutes per stack


class DeployError(Exception):
    """Stops the command with its message (no stack trace)."""


# ---------------------------------------------------------------- templates and parameters
class _TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML, keeping intrinsic functions (!Ref, !Sub, ...) as opaque values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    """!Ref X -> {"Ref": "X"}, !Sub s -> {"Fn::Sub": s}, ... (the JSON form of the short form)."""
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {key: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {key: loader.construct_sequence(node, deep=True)}
    return {key: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((TEMPLATES / name).read_text(), Loader=_TemplateLoader)  # noqa: S506
    return loaded


def env_name(parameter: str) -> str:
    """GitHubConnectionArn -> GITHUB_CONNECTION_ARN, HealthCheckInterval -> HEALTH_CHECK_INTERVAL."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", parameter.replace("GitHub", "Github")).upper()


def check_value(name: str, spec: Mapping[str, Any], value: str) -> str | None:
    """The problem with `value` for parameter `name` under the template's constraints, or None."""
    hint = spec.get("ConstraintDescription", "")
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        return f"{name}={value!r} is not one of {', '.join(str(a) for a in allowed)}"
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        return f"{name}={value!r} does not match {pattern} ({hint})"
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return f"{name}={value!r} is not a number"
        if "MinValue" in spec and number < float(spec["MinValue"]):
            return f"{name}={value!r} is below {spec['MinValue']} ({hint})"
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            return f"{name}={value!r} is above {spec['MaxValue']} ({hint})"
    return None


@dataclass(frozen=True)
class Plan:
    """What `deploy` will do: the parameters of each stack and the code keys."""

    region: str | None  # None: boto3's own resolution (profile, instance metadata)
    code_keys: dict[str, str]
    parameters: dict[str, dict[str, str]]


def build_plan(env: Mapping[str, str], build_dir: Path) -> Plan:
    """Every stack's parameters from `env`; DeployError lists every wrong or missing value at once."""
    errors: list[str] = []
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    code_keys: dict[str, str] = {}
    for name in LAMBDAS:
        archive = build_dir / f"{name}.zip"
        if archive.is_file():
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
            code_keys[name] = f"lambda/{name}-{digest}.zip"
        else:
            errors.append(
                f"{archive.relative_to(ROOT) if archive.is_relative_to(ROOT) else archive} is missing: "
                "run make package"
            )
    nat = env.get("ENABLE_NAT_GATEWAY") or "true"
    wired = {
        "ClusterStackName": CLUSTER_STACK,
        "LambdaStackName": LAMBDA_STACK,
        "HealthCheckCodeKey": code_keys.get("health_check", "missing.zip"),
        "AutoRollbackCodeKey": code_keys.get("auto_rollback", "missing.zip"),
        "HealthCheckInVpc": nat,  # always equal to the cluster's EnableNatGateway (see the README)
        "ArtifactBucket": BUCKET_PLACEHOLDER,
    }
    parameters: dict[str, dict[str, str]] = {}
    for stack, template in STACKS:
        values: dict[str, str] = {}
        for name, spec in load_template(template).get("Parameters", {}).items():
            if name in WIRED:
                value: str | None = wired[name]
            else:
                value = env.get(env_name(name))
                if value is None and "Default" in spec:
                    continue  # the template default applies
            if value is None:
                errors.append(f"{env_name(name)} is required ({stack}: {spec.get('Description', name)})")
                continue
            problem = check_value(env_name(name), spec, value)
            if problem:
                errors.append(f"{problem} ({stack})")
            values[name] = value
        parameters[stack] = values
    if errors:
        unique = list(dict.fromkeys(errors))
        raise DeployError("nothing was deployed; fix these first:\n  - " + "\n  - ".join(unique))
    return Plan(region=region, code_keys=code_keys, parameters=parameters)


# ---------------------------------------------------------------- packaging
def package(deps_dir: Path, out_dir: Path) -> list[Path]:
    """lambdas/<name>.py plus the installed requirements -> OUT_DIR/<name>.zip, byte-for-byte reproducible."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dependencies = sorted(
        p
        for p in deps_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.relative_to(deps_dir).parts[0] != "bin"
    )
    written = []
    for name in LAMBDAS:
        target = out_dir / f"{name}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            entries = [(f"{name}.py", ROOT / "lambdas" / f"{name}.py")]
            entries += [(p.relative_to(deps_dir).as_posix(), p) for p in dependencies]
            for arcname, source in entries:
                info = zipfile.ZipInfo(arcname, ZIP_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, source.read_bytes())
        written.append(target)
    return written


# ---------------------------------------------------------------- AWS
def say(message: str) -> None:
    print(f"deploy: {message}", flush=True)


def stack_status(cfn: Any, stack: str) -> str | None:
    try:
        status: str = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise
    return None if status == "DELETE_COMPLETE" else status


def apply_stack(cfn: Any, stack: str, template: str, parameters: Mapping[str, str]) -> None:
    """Create the stack, or update it when it exists; wait until it is complete."""
    arguments = {
        "StackName": stack,
        "TemplateBody": (TEMPLATES / template).read_text(),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
        "Capabilities": ["CAPABILITY_IAM"],
    }
    status = stack_status(cfn, stack)
    if status == "ROLLBACK_COMPLETE":  # a failed first create cannot be updated, only replaced
        say(f"{stack} is ROLLBACK_COMPLETE from an earlier failed create: deleting it first")
        cfn.delete_stack(StackName=stack)
        cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig=WAIT)
        status = None
    try:
        if status is None:
            say(f"creating {stack} from cloudformation/{template}")
            cfn.create_stack(**arguments, Tags=[{"Key": "Project", "Value": "phoenix"}])
            waiter = "stack_create_complete"
        else:
            say(f"updating {stack} ({status})")
            cfn.update_stack(**arguments)
            waiter = "stack_update_complete"
        cfn.get_waiter(waiter).wait(StackName=stack, WaiterConfig=WAIT)
    except ClientError as err:
        if "No updates are to be performed" in str(err):
            say(f"{stack} is up to date")
            return
        raise DeployError(f"{stack}: {err}") from None
    except WaiterError as err:
        raise DeployError(
            f"{stack} did not complete: {err}; see its events in the CloudFormation console"
        ) from None
    say(f"{stack} complete")


def stack_output(cfn: Any, stack: str, key: str) -> str | None:
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    return next((str(o["OutputValue"]) for o in outputs if o["OutputKey"] == key), None)


def deploy(env: Mapping[str, str]) -> None:
    plan = build_plan(env, ROOT / "build")
    session = boto3.session.Session(region_name=plan.region)
    s3 = session.client("s3")
    cfn = session.client("cloudformation")
    say(f"region {session.region_name}")
    # README step 1: network, ALB, ECR repository, artifact bucket, ECS service.
    apply_stack(cfn, CLUSTER_STACK, "ecs-cluster.yaml", plan.parameters[CLUSTER_STACK])
    bucket = stack_output(cfn, CLUSTER_STACK, "ArtifactBucketName")
    if not bucket:
        raise DeployError(f"{CLUSTER_STACK} has no ArtifactBucketName output")
    # README step 2: the Lambda code, then the Lambda stack.
    for name, key in plan.code_keys.items():
        say(f"uploading build/{name}.zip to s3://{bucket}/{key}")
        s3.upload_file(str(ROOT / "build" / f"{name}.zip"), bucket, key)
    apply_stack(
        cfn,
        LAMBDA_STACK,
        "lambda-functions.yaml",
        {**plan.parameters[LAMBDA_STACK], "ArtifactBucket": bucket},
    )
    # README step 4 (step 3, the GitHub connection, is done by hand once).
    apply_stack(
        cfn,
        PIPELINE_STACK,
        "cicd-pipeline.yaml",
        {**plan.parameters[PIPELINE_STACK], "ArtifactBucket": bucket},
    )
    url = stack_output(cfn, CLUSTER_STACK, "ProductionUrl")
    say(f"done: the application answers on {url}; push to the GitHub branch to run the pipeline")


def destroy(env: Mapping[str, str]) -> None:
    session = boto3.session.Session(
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    )
    cfn = session.client("cloudformation")
    bucket = (
        stack_output(cfn, CLUSTER_STACK, "ArtifactBucketName") if stack_status(cfn, CLUSTER_STACK) else None
    )
    for stack, _ in reversed(STACKS):
        if stack_status(cfn, stack) is None:
            say(f"{stack} does not exist")
            continue
        say(f"deleting {stack}")
        cfn.delete_stack(StackName=stack)
        try:
            cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig=WAIT)
        except WaiterError as err:
            raise DeployError(f"{stack} was not deleted: {err}") from None
    if env.get("PURGE", "").lower() not in ("1", "true", "yes"):
        say("stacks deleted; the ECR repository and the artifact bucket are kept (PURGE=true removes them)")
        return
    purge(session, env, bucket)


def purge(session: Any, env: Mapping[str, str], bucket: str | None) -> None:
    """What the stacks retain on purpose: the ECR repository (images), the artifact bucket (all versions)."""
    project = env.get("PROJECT_NAME") or "phoenix"
    environment = env.get("ENVIRONMENT") or "dev"
    service = env.get("SERVICE_NAME") or "sample-app"
    repository = f"{project}-{environment}-{service}"
    ecr = session.client("ecr")
    try:
        ecr.delete_repository(repositoryName=repository, force=True)
        say(f"deleted ECR repository {repository}")
    except ClientError as err:
        say(f"ECR repository {repository}: {err.response['Error']['Code']}")
    if not bucket:
        say("no artifact bucket known (the cluster stack was already gone)")
        return
    s3 = session.resource("s3")
    try:
        s3.Bucket(bucket).object_versions.delete()
        s3.Bucket(bucket).delete()
        say(f"deleted artifact bucket {bucket}")
    except ClientError as err:
        say(f"artifact bucket {bucket}: {err.response['Error']['Code']}")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    try:
        if command == "package" and len(argv) == 4:
            for path in package(Path(argv[2]), Path(argv[3])):
                print(f"package: {path}")
        elif command == "validate":
            plan = build_plan(os.environ, ROOT / "build")
            for stack, values in plan.parameters.items():
                print(f"{stack}: " + " ".join(f"{k}={v}" for k, v in sorted(values.items())))
        elif command == "deploy":
            deploy(os.environ)
        elif command == "destroy":
            destroy(os.environ)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except DeployError as err:
        print(f"{command}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

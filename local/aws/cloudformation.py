"""CloudFormation: the README's stacks created in moto from the cloudformation/ files, and what moto skips.

moto's CloudFormation creates what it implements (VPC, ALB, listeners, target groups, ECS, Lambda functions,
the schedule rule, SNS topics, SQS, ...) and resolves every intrinsic function of the templates. Some types
it does not implement (SKIPPED below): the CloudWatch alarms, the SNS subscriptions, the CodeDeploy
application and deployment group, the CodeBuild project and report group, the pipeline, the chat channel
configurations (answered, never created: there is no chat service here to deliver to). Left alone, moto
answers a Ref or Fn::GetAtt of one of them with nothing, so a template would have to name them instead of
referring to them. This module teaches moto's CloudFormation those types (`teach_moto()`; importing the
module does it too):

- each one gets its physical id as on AWS (the name property, or a generated name) and answers Ref and
  Fn::GetAtt (Arn) with AWS's values (the "Return values" of each type's CloudFormation reference page), so
  references to it resolve, in the resources moto creates (a Lambda environment naming the alarms) and in the
  outputs and exports, and it is listed by DescribeStackResources;
- moto resolves its properties like any other resource's and records them (`skipped_resources`).

`Stacks.create` then creates the recorded resources through their APIs from those properties, in the order
moto met them (a resource after the ones it refers to): the alarms (PutMetricAlarm) and subscriptions
(Subscribe) in moto, the CodeDeploy application and deployment group in the CodeDeploy stand-in
(AWS_ENDPOINT_URL_CODEDEPLOY), the build project and the pipeline in the CodeBuild and CodePipeline
stand-ins (AWS_ENDPOINT_URL_CODEBUILD, _CODEPIPELINE: the drill runs them) or, without those, in moto.
One source of truth: the template files the README deploys. moto still skips the bucket and topic policies,
which nothing refers to and the drill does not need.

The templates are written as a CloudFormation author writes them for AWS, and where moto's CloudFormation
falls short of AWS's, `teach_moto()` teaches it rather than the templates bending (each with AWS's
documentation as the reference):

- `!Condition Name`, the short form of a condition reference ({"Condition": "Name"}, CloudFormation User
  Guide "Condition functions"): moto's YAML reading made it {"Fn::Condition": ...}, which its conditions do
  not recognise (a condition made of other conditions was always false) (`condition_tag`);
- intrinsic functions (`resolve`, in place of moto's `clean_json`): `Fn::Cidr` (the "Fn::Cidr" page of the
  CloudFormation User Guide); `Fn::FindInMap` keyed by a Number parameter, whose value CloudFormation passes
  on as a string ("Parameters": "when you use the parameter elsewhere in your template ... the parameter
  value becomes a string"); and a list element that is `Fn::If` resolving to `AWS::NoValue`, which
  CloudFormation removes from the list;
- `Fn::GetAtt` attributes moto's models do not answer (`ATTRIBUTES`): the load balancer's
  `LoadBalancerFullName` and the target group's `TargetGroupFullName`, `TargetGroupName` and
  `LoadBalancerArns`, in the formats of the "Return values" of their CloudFormation reference pages;
- a template's `Rules`, which moto ignores (`check_rules`): as CloudFormation checks them before it creates
  anything ("Template Rules" in the CloudFormation User Guide), a failed assertion refuses CreateStack with
  its AssertDescription (moto's UpdateStack re-evaluates neither conditions nor rules);
- the checks PutDashboard makes, which moto's `AWS::CloudWatch::Dashboard` skips (it stores any body):
  `dashboard_body_problems`, after the API Reference's "Dashboard Body Structure and Syntax"; a dashboard
  PutDashboard refuses fails the stack, its problems named as PutDashboard's DashboardValidationMessages.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import threading
import types
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from moto.cloudformation import models as cloudformation_models
from moto.cloudformation import parsing
from moto.cloudformation import responses as cloudformation_responses
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException, ValidationError
from moto.cloudformation.utils import yaml_tag_constructor
from moto.cloudwatch.models import Dashboard as CloudWatchDashboard
from moto.core.common_models import CloudFormationModel
from moto.elbv2.models import FakeLoadBalancer, FakeTargetGroup
from moto.utilities.utils import get_partition

from local.aws.moto_server import Aws
from scripts.stacks import StackSpec


@dataclass(frozen=True)
class SkippedType:
    """A resource type moto's CloudFormation does not implement, and what Ref / Fn::GetAtt return for it."""

    type: str
    name_property: str  # "" when the type has none (CloudFormation generates the name)
    arn: str  # format: {partition} {region} {account} {name} {id} and the resource's string properties
    ref: str = "name"  # what Ref returns: "name" or "arn"
    # Fn::GetAtt attributes of the type (its CloudFormation "Return values"; only Arn is modelled): a template
    # asking for one the type does not have fails here as it fails on AWS.
    attributes: tuple[str, ...] = ("Arn",)


SKIPPED = (
    SkippedType(
        "AWS::CloudWatch::Alarm", "AlarmName", "arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}"
    ),
    SkippedType("AWS::SNS::Subscription", "", "{TopicArn}:{id}", ref="arn", attributes=()),
    SkippedType(
        "AWS::CodeDeploy::Application",
        "ApplicationName",
        "arn:{partition}:codedeploy:{region}:{account}:application:{name}",
        attributes=(),
    ),
    SkippedType(
        "AWS::CodeDeploy::DeploymentGroup",
        "DeploymentGroupName",
        "arn:{partition}:codedeploy:{region}:{account}:deploymentgroup:{ApplicationName}/{name}",
        attributes=(),
    ),
    SkippedType(
        "AWS::CodeBuild::Project", "Name", "arn:{partition}:codebuild:{region}:{account}:project/{name}"
    ),
    SkippedType(
        "AWS::CodeBuild::ReportGroup",
        "Name",
        "arn:{partition}:codebuild:{region}:{account}:report-group/{name}",
        ref="arn",
    ),
    SkippedType(
        "AWS::CodePipeline::Pipeline",
        "Name",
        "arn:{partition}:codepipeline:{region}:{account}:{name}",
        attributes=(),  # only Version, not modelled
    ),
    # Chat channel configurations: Ref and Fn::GetAtt Arn answer the ARN, which has no region (the service is
    # global); nothing creates them here (no chat service to deliver to).
    SkippedType(
        "AWS::Chatbot::SlackChannelConfiguration",
        "ConfigurationName",
        "arn:{partition}:chatbot::{account}:chat-configuration/slack-channel/{name}",
        ref="arn",
    ),
    SkippedType(
        "AWS::Chatbot::MicrosoftTeamsChannelConfiguration",
        "ConfigurationName",
        "arn:{partition}:chatbot::{account}:chat-configuration/microsoft-teams-channel/{name}",
        ref="arn",
    ),
)


@dataclass
class SkippedResource:
    """One resource of a skipped type, as moto's CloudFormation resolved it."""

    stack_id: str
    logical_id: str
    type: str
    name: str
    arn: str
    properties: dict[str, Any] = field(default_factory=dict)


_recorded: dict[str, list[SkippedResource]] = {}
_recorded_lock = threading.Lock()


def skipped_resources(stack_id: str) -> list[SkippedResource]:
    """The skipped-type resources moto's CloudFormation met while creating the stack, in that order (once)."""
    with _recorded_lock:
        return _recorded.pop(stack_id, [])


class _Fields(dict[str, Any]):
    """ARN format fields: a property the resource does not set is empty."""

    def __missing__(self, key: str) -> str:
        return ""


class _Reference:
    """What moto's CloudFormation needs of a model: the physical id, Ref, Fn::GetAtt, create/update/delete."""

    SPEC: ClassVar[SkippedType]

    def __init__(self, resource: SkippedResource) -> None:
        self.resource = resource

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.SPEC.type

    @classmethod
    def cloudformation_name_type(cls) -> str:
        return cls.SPEC.name_property

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.SPEC.attributes

    @property
    def physical_resource_id(self) -> str:
        return self.resource.arn if self.SPEC.ref == "arn" else self.resource.name

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name in self.SPEC.attributes:
            return self.resource.arn
        raise UnformattedGetAttTemplateException()

    @classmethod
    def _build(
        cls, name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **ids: str
    ) -> _Reference:
        properties = dict(cloudformation_json.get("Properties") or {})
        fields = _Fields({k: v for k, v in properties.items() if isinstance(v, str)})
        fields.update(
            partition=get_partition(region_name),
            region=region_name,
            account=account_id,
            name=name,
            id=uuid.uuid4(),
        )
        arn = cls.SPEC.arn.format_map(fields)
        return cls(SkippedResource(ids["StackId"], ids["LogicalId"], cls.SPEC.type, name, arn, properties))

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _Reference:
        model = cls._build(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        with _recorded_lock:
            _recorded.setdefault(model.resource.stack_id, []).append(model.resource)
        return model

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> _Reference:
        ids = {
            "StackId": original_resource.resource.stack_id,
            "LogicalId": original_resource.resource.logical_id,
        }
        return cls._build(new_resource_name, cloudformation_json, account_id, region_name, **ids)

    def delete(self, account_id: str, region_name: str) -> None:
        """Nothing to delete in moto; the stand-in's own copies go with the drill."""

    def is_created(self) -> bool:
        return True


def _model(spec: SkippedType) -> type:
    """A direct subclass of moto's CloudFormationModel (moto looks only at direct subclasses)."""
    name = spec.type.replace("AWS::", "").replace("::", "")
    attributes = {"SPEC": spec, "__module__": __name__, "__doc__": f"{spec.type} for moto's CloudFormation."}
    return types.new_class(
        name, (_Reference, CloudFormationModel), exec_body=lambda ns: ns.update(attributes)
    )


MODELS = {spec.type: _model(spec) for spec in SKIPPED}


# ---------------------------------------------------------------- intrinsic functions moto does not evaluate
def cidr(ip_block: str, count: Any, cidr_bits: Any) -> list[str]:
    """Fn::Cidr: the first `count` address blocks with `cidr_bits` host bits in `ip_block`, in address order.

    As the CloudFormation User Guide's "Fn::Cidr" page has it: count from 1 to 256, cidrBits the subnet's host
    bits (8 -> a /24 for IPv4, 64 -> a /64 for IPv6); !Select [0, !Cidr ["10.0.0.0/16", 4, 8]] is 10.0.0.0/24.
    """
    network = ipaddress.ip_network(str(ip_block), strict=False)
    number, bits = int(count), int(cidr_bits)
    prefix = network.max_prefixlen - bits
    if not 1 <= number <= 256 or not network.prefixlen <= prefix <= network.max_prefixlen:
        raise ValidationError(message=f"Template error: invalid Fn::Cidr [{ip_block}, {count}, {cidr_bits}]")
    blocks = [str(block) for block in itertools.islice(network.subnets(new_prefix=prefix), number)]
    if len(blocks) < number:
        raise ValidationError(
            message=f"Template error: Fn::Cidr: {ip_block} holds fewer than {number} blocks of /{prefix}"
        )
    return blocks


def _map_key(value: Any) -> Any:
    """A Number parameter's value as CloudFormation passes it on: a string (60 -> "60")."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _no_value(element: Any) -> bool:
    """Whether a list element is one that resolves to AWS::NoValue when it resolves to nothing."""
    return isinstance(element, dict) and ("Fn::If" in element or element.get("Ref") == "AWS::NoValue")


_MOTO_CLEAN_JSON: Callable[[Any, parsing.ResourceMap], Any] = getattr(
    parsing.clean_json, "__wrapped__", parsing.clean_json
)


def resolve(resource_json: Any, resources_map: parsing.ResourceMap) -> Any:
    """moto's `clean_json` (which resolves a template value), plus what CloudFormation does and it does not.

    - `Fn::Cidr` returns the blocks `cidr()` computes;
    - `Fn::FindInMap` looks a Number parameter up by its string form (moto passes the number on, so
      !FindInMap [Schedule, !Ref HealthCheckInterval, Rate] missed the mapping's "60" key);
    - a list element that is `Fn::If` (or `Ref`) resolving to AWS::NoValue is removed from the list, as
      CloudFormation removes it (moto left a null in the list).
    moto's `clean_json` calls itself through the module's name, so nested values come back here.
    """
    if isinstance(resource_json, list):
        resolved = []
        for element in resource_json:
            value = resolve(element, resources_map)
            if value is None and _no_value(element):
                continue
            resolved.append(value)
        return resolved
    if isinstance(resource_json, dict) and "Fn::Cidr" in resource_json:
        ip_block, count, cidr_bits = (
            resolve(argument, resources_map) for argument in resource_json["Fn::Cidr"]
        )
        return cidr(ip_block, count, cidr_bits)
    if isinstance(resource_json, dict) and "Fn::FindInMap" in resource_json:
        name, *keys = resource_json["Fn::FindInMap"]
        keys = [_map_key(resolve(key, resources_map)) for key in keys]
        return _MOTO_CLEAN_JSON({"Fn::FindInMap": [resolve(name, resources_map), *keys]}, resources_map)
    return _MOTO_CLEAN_JSON(resource_json, resources_map)


resolve.__wrapped__ = _MOTO_CLEAN_JSON  # type: ignore[attr-defined]


_MOTO_YAML_TAG: Callable[[Any, str, Any], Any] = yaml_tag_constructor


def condition_tag(loader: Any, tag: str, node: Any) -> Any:
    """moto's YAML tag constructor, but `!Condition Name` is the condition reference {"Condition": "Name"}."""
    if tag == "!Condition":
        return {"Condition": loader.construct_scalar(node)}
    return _MOTO_YAML_TAG(loader, tag, node)


# ---------------------------------------------------------------- Fn::GetAtt attributes moto's models lack
def _arn_resource(arn: str) -> str:
    """The resource part of an ARN (after arn:partition:service:region:account:)."""
    return arn.split(":", 5)[5]


# Model -> Fn::GetAtt attribute -> its value, for what the model does not answer: the "Return values" of the
# type's CloudFormation reference page, in its formats.
ATTRIBUTES: dict[type, dict[str, Callable[[Any], Any]]] = {
    # AWS::ElasticLoadBalancingV2::LoadBalancer: LoadBalancerFullName is app/my-load-balancer/50dc6c495c0c9188
    # (the ARN's resource after "loadbalancer/", the AWS/ApplicationELB LoadBalancer dimension).
    FakeLoadBalancer: {
        "LoadBalancerFullName": lambda model: _arn_resource(model.arn).removeprefix("loadbalancer/"),
    },
    # AWS::ElasticLoadBalancingV2::TargetGroup: TargetGroupFullName is
    # targetgroup/my-target-group/cbf133c568e0d028 (the ARN's resource, the TargetGroup dimension),
    # TargetGroupName is my-target-group.
    FakeTargetGroup: {
        "LoadBalancerArns": lambda model: list(model.load_balancer_arns),
        "TargetGroupFullName": lambda model: _arn_resource(model.arn),
        "TargetGroupName": lambda model: model.name,
    },
}
# moto's own get_cfn_attribute / has_cfn_attr of each model above (None when the model has none).
_MOTO_ATTRIBUTE_METHODS: dict[type, tuple[Any, Any]] = {}


def _teach_attributes(model: type, attributes: Mapping[str, Callable[[Any], Any]]) -> None:
    """The model answers `attributes` too; an attribute neither knows is refused, as AWS refuses it."""
    if model not in _MOTO_ATTRIBUTE_METHODS:
        _MOTO_ATTRIBUTE_METHODS[model] = (
            model.__dict__.get("get_cfn_attribute"),
            model.__dict__.get("has_cfn_attr"),
        )
    moto_get, moto_has = _MOTO_ATTRIBUTE_METHODS[model]

    def get_cfn_attribute(self: Any, attribute_name: str) -> Any:
        if attribute_name in attributes:
            return attributes[attribute_name](self)
        if moto_get is None:
            raise UnformattedGetAttTemplateException()
        return moto_get(self, attribute_name)

    def has_cfn_attr(cls: type, attr: str) -> bool:
        return attr in attributes or (moto_has is not None and bool(moto_has.__func__(cls, attr)))

    setattr(model, "get_cfn_attribute", get_cfn_attribute)  # noqa: B010 - patching moto's class
    setattr(model, "has_cfn_attr", classmethod(has_cfn_attr))  # noqa: B010 - patching moto's class


def teach_moto() -> None:
    """Make moto's CloudFormation (in this process) do what the templates need of it, as AWS does.

    The models above for the types it skips: defining them registers them (moto lists CloudFormationModel's
    subclasses); moto caches its type -> model map once a stack has been created, so the caches are cleared.
    The intrinsic functions (`resolve`) and the Fn::GetAtt attributes (`ATTRIBUTES`) it lacks. Idempotent.
    """
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
    parsing.clean_json = resolve
    # moto's models and responses call the YAML tag constructor through their module's name.
    cloudformation_models.yaml_tag_constructor = condition_tag  # type: ignore[attr-defined]
    cloudformation_responses.yaml_tag_constructor = condition_tag  # type: ignore[attr-defined]
    for model, attributes in ATTRIBUTES.items():
        _teach_attributes(model, attributes)
    _teach_target_group_attributes()
    _teach_dashboard_validation()
    _teach_rules()


def _teach_target_group_attributes() -> None:
    """moto's TargetGroup from CloudFormation ignores TargetGroupAttributes (the deregistration delay the
    template sets would stay moto's 300 s): apply them, as CreateTargetGroup + ModifyTargetGroupAttributes."""
    create = FakeTargetGroup.create_from_cloudformation_json
    if getattr(create, "phoenix_taught", False):
        return

    def create_with_attributes(
        cls: type, name: str, cloudformation_json: Any, *args: Any, **kwargs: Any
    ) -> Any:
        group = create.__func__(cls, name, cloudformation_json, *args, **kwargs)  # type: ignore[attr-defined]
        for item in cloudformation_json.get("Properties", {}).get("TargetGroupAttributes") or []:
            group.attributes[str(item["Key"])] = str(item["Value"])
        return group

    create_with_attributes.phoenix_taught = True  # type: ignore[attr-defined]
    setattr(FakeTargetGroup, "create_from_cloudformation_json", classmethod(create_with_attributes))  # noqa: B010


# ---------------------------------------------------------------- AWS::CloudWatch::Dashboard
# What PutDashboard refuses (CloudFormation creates the dashboard with it). botocore's model: an invalid body
# is DashboardInvalidInputError (code InvalidParameterInput, "Some part of the dashboard data is invalid"),
# and its DashboardValidationMessages name each problem by DataPath and Message. The rules are the ones the
# API Reference's "Dashboard Body Structure and Syntax" marks Required or gives Valid Values for; the name is
# "at most 255 characters, A-Z, a-z, 0-9, "-" and "_"" (PutDashboard's DashboardName).
WIDGET_TYPES = ("metric", "text", "log", "alarm", "explorer")
DASHBOARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
STATISTIC = re.compile(r"SampleCount|Average|Sum|Minimum|Maximum|p\d{1,2}(\.\d+)?")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _widget_problems(path: str, widget: Any) -> list[tuple[str, str]]:
    if not isinstance(widget, dict):
        return [(path, "Should be object")]
    problems: list[tuple[str, str]] = []
    if widget.get("type") not in WIDGET_TYPES:
        problems.append(
            (f"{path}/type", f"Should be equal to one of the allowed values {list(WIDGET_TYPES)}")
        )
    for key, low, high in (("x", 0, 23), ("y", 0, None), ("width", 1, 24), ("height", 1, 1000)):
        if key not in widget:
            continue
        value = widget[key]
        if not _whole(value) or value < low or (high is not None and value > high):
            upper = f" and <= {high}" if high is not None else ""
            problems.append((f"{path}/{key}", f"Should be an integer >= {low}{upper}"))
    if ("x" in widget) != ("y" in widget):
        problems.append((path, "Should have both properties x and y, or neither"))
    properties = widget.get("properties")
    if not isinstance(properties, dict):
        return [*problems, (f"{path}/properties", "Should have required property 'properties' (an object)")]
    return problems + _properties_problems(f"{path}/properties", widget.get("type"), properties)


def _properties_problems(path: str, kind: Any, properties: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    required = {
        "text": ("markdown",),
        "log": ("region", "query"),
        "metric": ("region",),
        "alarm": ("alarms",),
    }
    for key in required.get(str(kind), ()):
        if properties.get(key) in (None, ""):
            problems.append((path, f"Should have required property '{key}'"))
    if (
        kind == "log"
        and isinstance(properties.get("query"), str)
        and not properties["query"].startswith("SOURCE '")
    ):
        problems.append((f"{path}/query", "Should start with the log groups, each as SOURCE '<name>'"))
    if kind == "alarm" and isinstance(properties.get("alarms"), list):
        alarms = properties["alarms"]
        if not 1 <= len(alarms) <= 100 or not all(isinstance(a, str) for a in alarms):
            problems.append((f"{path}/alarms", "Should be an array of 1 to 100 alarm ARNs"))
    if kind == "metric":
        metrics, annotations = properties.get("metrics"), properties.get("annotations")
        if metrics is None and not (isinstance(annotations, dict) and annotations.get("alarms")):
            problems.append((path, "Should have required property 'metrics' (or an alarm annotation)"))
        if metrics is not None and (not isinstance(metrics, list) or len(metrics) > 500):
            problems.append((f"{path}/metrics", "Should be an array of at most 500 metrics and expressions"))
        for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
            problems += _metric_problems(f"{path}/metrics/{index}", metric)
        problems += _rendering_problems(path, properties)
    return problems


def _metric_problems(path: str, metric: Any) -> list[tuple[str, str]]:
    """[Namespace, MetricName, DimensionName, DimensionValue, ..., {rendering}] or [{"expression": ...}]."""
    if not isinstance(metric, list) or not metric:
        return [(path, "Should be a non-empty array")]
    *names, last = metric
    options = last if isinstance(last, dict) else {}
    if not isinstance(last, dict):
        names.append(last)
    if not names:
        if not isinstance(options.get("expression"), str):
            return [(path, "Should have required property 'expression'")]
        return _rendering_problems(path, options)
    if not all(isinstance(name, str) for name in names) or len(names) < 2 or len(names) % 2:
        return [(path, "Should be [Namespace, MetricName, DimensionName, DimensionValue, ...] strings")]
    return _rendering_problems(path, options)


def _rendering_problems(path: str, options: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if "period" in options:
        period = options["period"]
        if not _whole(period) or period < 60 or period % 60:
            problems.append((f"{path}/period", "Should be a multiple of 60, with 60 as the minimum"))
    if "stat" in options and not (isinstance(options["stat"], str) and STATISTIC.fullmatch(options["stat"])):
        problems.append((f"{path}/stat", "Should be a valid CloudWatch statistic"))
    return problems


def dashboard_body_problems(body: Any) -> list[tuple[str, str]]:
    """(DataPath, Message) for each part of a DashboardBody PutDashboard refuses; [] when it accepts it."""
    try:
        parsed = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return [("", "The field DashboardBody must be a valid JSON object")]
    widgets = parsed.get("widgets")
    if not isinstance(widgets, list):
        return [("", "Should have required property 'widgets' (an array)")]
    if len(widgets) > 500:
        return [("/widgets", "Should NOT have more than 500 items")]
    return [
        problem
        for index, widget in enumerate(widgets)
        for problem in _widget_problems(f"/widgets/{index}", widget)
    ]


def _teach_dashboard_validation() -> None:
    """moto's Dashboard from CloudFormation stores any body (its PutDashboard only parses the JSON); refuse
    what PutDashboard refuses: CloudFormation's creation of the resource fails with PutDashboard's error."""
    create = CloudWatchDashboard.create_from_cloudformation_json
    if getattr(create, "phoenix_taught", False):
        return

    def create_validated(
        cls: type, /, name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        properties = cloudformation_json.get("Properties") or {}
        problems = dashboard_body_problems(properties.get("DashboardBody"))
        dashboard_name = properties.get("DashboardName")
        if dashboard_name is not None and not DASHBOARD_NAME.fullmatch(str(dashboard_name)):
            problems.insert(0, ("DashboardName", "Should be 1 to 255 of A-Z, a-z, 0-9, - and _"))
        if problems:
            messages = json.dumps([{"dataPath": path, "message": message} for path, message in problems])
            logical_id = kwargs.get("LogicalId", name)
            raise ValidationError(
                message=f"{logical_id}: InvalidParameterInput: The dashboard body is invalid, "
                f"there are {len(problems)} validation errors: {messages}"
            )
        return create.__func__(cls, name, cloudformation_json, account_id, region_name, **kwargs)  # type: ignore[attr-defined]

    create_validated.phoenix_taught = True  # type: ignore[attr-defined]
    setattr(CloudWatchDashboard, "create_from_cloudformation_json", classmethod(create_validated))  # noqa: B010


# ---------------------------------------------------------------- Rules
RULE_FUNCTIONS = ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or")


def _rule_functions(node: Any) -> set[str]:
    """The intrinsic functions a rule uses (Ref and Condition are no function here)."""
    if isinstance(node, list):
        return {name for item in node for name in _rule_functions(item)}
    if not isinstance(node, dict):
        return set()
    own = {key for key in node if key.startswith("Fn::")}
    return own | {name for value in node.values() for name in _rule_functions(value)}


def check_rules(resource_map: parsing.ResourceMap) -> None:
    """Each rule whose RuleCondition holds (or that has none) must have every assertion hold; the first that
    does not refuses the stack with its AssertDescription. moto evaluates the rules' functions as it evaluates
    conditions; a function it has no evaluation for is refused rather than guessed."""
    template: dict[str, Any] = getattr(resource_map, "_template", {}) or {}
    parsed, conditions = resource_map._parsed_resources, resource_map.lazy_condition_map

    def holds(expression: Any) -> bool:
        return bool(parsing.parse_condition(expression, parsed, conditions))  # type: ignore[arg-type]

    for name, rule in (template.get("Rules") or {}).items():
        unknown = _rule_functions(rule) - set(RULE_FUNCTIONS)
        if unknown:
            raise ValidationError(
                message=f"Template error: rule {name} uses {sorted(unknown)}, not evaluated here"
            )
        if "RuleCondition" in rule and not holds(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions") or []:
            if not holds(assertion["Assert"]):
                raise ValidationError(message=assertion.get("AssertDescription") or f"Rule {name} failed")


def _teach_rules() -> None:
    """After moto's ResourceMap.load (parameters, conditions), check the template's Rules."""
    load = parsing.ResourceMap.load
    if getattr(load, "phoenix_taught", False):
        return

    def load_and_check_rules(self: parsing.ResourceMap) -> None:
        load(self)
        check_rules(self)

    load_and_check_rules.phoenix_taught = True  # type: ignore[attr-defined]
    setattr(parsing.ResourceMap, "load", load_and_check_rules)  # noqa: B010 - patching moto's class


teach_moto()


# ---------------------------------------------------------------- the stacks
@dataclass
class Stack:
    """A created stack: its status and outputs."""

    spec: StackSpec
    status: str
    outputs: dict[str, str]


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
    """Creates the README's stacks in moto, then the resources of the types moto skips through their APIs."""

    def __init__(
        self, aws: Aws, *, tags: list[dict[str, str]] | None = None, log: Callable[[str], None] | None = None
    ) -> None:
        self._aws = aws
        self._cfn = aws.client("cloudformation")
        self._tags = tags or []
        self._log = log or (lambda _msg: None)
        self.stacks: dict[str, Stack] = {}
        self.exports: dict[str, str] = {}
        self._creators: dict[str, Callable[[dict[str, Any]], None]] = {
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::CodeDeploy::Application": self._codedeploy_application,
            "AWS::CodeDeploy::DeploymentGroup": self._codedeploy_group,
            "AWS::CodeBuild::Project": self._codebuild_project,
            "AWS::CodePipeline::Pipeline": self._pipeline,
        }

    def create(self, spec: StackSpec, parameters: Mapping[str, str]) -> Stack:
        """CreateStack as the README runs it (moto's CloudFormation), then the skipped types' resources."""
        stack_id = self._cfn.create_stack(
            StackName=spec.name,
            TemplateBody=spec.path.read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
            Tags=self._tags,
        )["StackId"]
        for resource in skipped_resources(stack_id):
            create = self._creators.get(resource.type)
            if create is None:
                continue
            try:
                create(resource.properties)
            except self._cfn.exceptions.ClientError as exc:
                # moto may not take every property AWS takes (the drill checks what it relies on exists).
                self._log(f"{spec.name}: {resource.type} {resource.logical_id} not created: {exc}")
                continue
            self._log(f"{spec.name}: {resource.type} {resource.logical_id} created from the template")
        described = self._cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        stack = Stack(spec, described["StackStatus"], outputs)
        self.stacks[spec.name] = stack
        for page in self._cfn.get_paginator("list_exports").paginate():
            self.exports.update({export["Name"]: export["Value"] for export in page["Exports"]})
        return stack

    # ------------------------------------------------------------ one creator per skipped type
    def _alarm(self, props: dict[str, Any]) -> None:
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

    def _subscription(self, props: dict[str, Any]) -> None:
        self._aws.client("sns").subscribe(
            TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"]
        )

    def _codedeploy_application(self, props: dict[str, Any]) -> None:
        self._aws.client("codedeploy").create_application(
            applicationName=props["ApplicationName"], computePlatform=props.get("ComputePlatform", "Server")
        )

    def _codedeploy_group(self, props: dict[str, Any]) -> None:
        params = camel_case(props)
        blue_green = params.get("blueGreenDeploymentConfiguration") or {}
        terminate = blue_green.get("terminateBlueInstancesOnDeploymentSuccess") or {}
        if "terminationWaitTimeInMinutes" in terminate:
            terminate["terminationWaitTimeInMinutes"] = int(terminate["terminationWaitTimeInMinutes"])
        self._aws.client("codedeploy").create_deployment_group(**params)

    def _codebuild_project(self, props: dict[str, Any]) -> None:
        params = camel_case(props)
        source = params.get("source") or {}
        if "buildSpec" in source:
            source["buildspec"] = source.pop("buildSpec")
        for variable in (params.get("environment") or {}).get("environmentVariables") or []:
            variable["value"] = str(variable.get("value", ""))
        if "timeoutInMinutes" in params:
            params["timeoutInMinutes"] = int(params["timeoutInMinutes"])
        self._aws.client("codebuild").create_project(**params)

    def _pipeline(self, props: dict[str, Any]) -> None:
        params = camel_case(props)
        for stage in params.get("stages") or []:
            for action in stage.get("actions") or []:
                action["configuration"] = {
                    k[:1].upper() + k[1:]: str(v) for k, v in (action.get("configuration") or {}).items()
                }
        params.pop("restartExecutionOnUpdate", None)
        self._aws.client("codepipeline").create_pipeline(pipeline=params)

"""The three CloudFormation templates, read as data: parameters, outputs, IAM, alarms and Lambda wiring.

No AWS and no server here (tests/test_deploy_moto.py deploys them); cfn-lint and checkov run in `make test`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from local.aws.cloudformation import SKIPPED
from local.aws.cloudwatch import evaluate_expression
from scripts import stacks
from scripts.deploy import check_value, env_name, lambda_sources
from scripts.stacks import CLUSTER, LAMBDA, PIPELINE, ROOT, STACKS

TEMPLATE_DIR = ROOT / "cloudformation"
TEMPLATES = [stack.template for stack in STACKS]
FUNCTIONS = {"HealthCheckFunction": "health_check", "AutoRollbackFunction": "auto_rollback"}
SPEC_VARIABLES = {
    "ENVIRONMENT": "Environment",
    "HEALTH_CHECK_INTERVAL": "HealthCheckInterval",
    "ALARM_THRESHOLD": "AlarmThreshold",
    "DEPLOYMENT_TIMEOUT": "DeploymentTimeout",
}
# Which stack parameter names the stack each template imports from.
IMPORT_SOURCES = {"ClusterStackName": CLUSTER.template, "LambdaStackName": LAMBDA.template}
IAM_TYPES = {"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
_LOADED: dict[str, dict[str, Any]] = {}


def load_template(name: str) -> dict[str, Any]:
    """The template as data (parsed once per session; tests only read it)."""
    if name not in _LOADED:
        _LOADED[name] = stacks.load_template(name)
    return _LOADED[name]


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar under `node`."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def references(template: dict[str, Any]) -> set[str]:
    """Names used through Ref, ${Name} in Fn::Sub, Fn::FindInMap keys and conditions."""
    used: set[str] = set()
    body = {k: v for k, v in template.items() if k != "Parameters"}
    for node in walk(body):
        if isinstance(node, dict):
            if isinstance(node.get("Ref"), str):
                used.add(node["Ref"])
            sub = node.get("Fn::Sub")
            text = sub[0] if isinstance(sub, list) else sub
            if isinstance(text, str):
                used.update(name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text))
    return used


NO_VALUE = {"Ref": "AWS::NoValue"}


def elements(items: list[Any]) -> Iterator[Any]:
    """The elements a list can hold on AWS: an `!If [Condition, a, b]` element is a or b, and AWS::NoValue
    (either branch) is no element at all."""
    for item in items:
        if isinstance(item, dict) and set(item) == {"Fn::If"}:
            yield from elements(item["Fn::If"][1:])
        elif item != NO_VALUE:
            yield item


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document.get("Statement", [])
    return found if isinstance(found, list) else [found]


def policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(resource, kind, policy document) for every identity and resource policy in the template."""
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in IAM_TYPES:
            for policy in elements(props.get("Policies", [])):
                yield name, "identity", policy["PolicyDocument"]
            if "PolicyDocument" in props:
                yield name, "identity", props["PolicyDocument"]
        elif "PolicyDocument" in props:
            yield name, "resource", props["PolicyDocument"]
        elif "KeyPolicy" in props:
            yield name, "key", props["KeyPolicy"]


def actions(statement: dict[str, Any]) -> list[str]:
    found = statement.get("Action", [])
    return [found] if isinstance(found, str) else list(found)


@pytest.fixture(scope="module", params=TEMPLATES)
def template(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, load_template(request.param)


def test_every_parameter_is_used(template: tuple[str, dict[str, Any]]) -> None:
    name, body = template
    unused = set(body["Parameters"]) - references(body)
    assert not unused, f"{name}: parameters nothing refers to: {sorted(unused)}"


def test_every_parameter_is_constrained_and_its_default_passes(template: tuple[str, dict[str, Any]]) -> None:
    name, body = template
    for parameter, spec in body["Parameters"].items():
        assert spec.get("Description"), f"{name}: {parameter} has no Description"
        assert {"AllowedValues", "AllowedPattern", "MinValue"} & set(spec), (
            f"{name}: {parameter} is unconstrained"
        )
        assert spec.get("ConstraintDescription"), f"{name}: {parameter} has no ConstraintDescription"
        if "Default" in spec:
            assert check_value(parameter, spec, str(spec["Default"])) is None, f"{name}: {parameter} default"


def test_the_spec_parameters_exist_with_the_spec_defaults() -> None:
    parameters = load_template(LAMBDA.template)["Parameters"]
    assert {k: str(parameters[v]["Default"]) for k, v in SPEC_VARIABLES.items()} == {
        "ENVIRONMENT": "dev",
        "HEALTH_CHECK_INTERVAL": "60",
        "ALARM_THRESHOLD": "2",
        "DEPLOYMENT_TIMEOUT": "900",
    }
    assert env_name("GitHubConnectionArn") == "GITHUB_CONNECTION_ARN"
    assert env_name("HealthCheckInterval") == "HEALTH_CHECK_INTERVAL"


def test_every_output_is_described_derived_and_exported_under_the_stack_name(
    template: tuple[str, dict[str, Any]],
) -> None:
    name, body = template
    for key, output in body["Outputs"].items():
        assert output.get("Description"), f"{name}: output {key} has no Description"
        value = output["Value"]
        assert isinstance(value, dict), f"{name}: output {key} is a constant, not derived from the stack"
        if "Fn::Sub" in value:
            assert "${" in str(value["Fn::Sub"]), f"{name}: output {key} is a constant string"
        if "Export" in output:
            assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{key}"}, (
                f"{name}: {key} export"
            )


def test_every_import_names_an_export_of_the_stack_it_comes_from(
    template: tuple[str, dict[str, Any]],
) -> None:
    name, body = template
    imports = [
        node["Fn::ImportValue"]
        for node in walk(body["Resources"])
        if isinstance(node, dict) and "Fn::ImportValue" in node
    ]
    for imported in imports:
        assert isinstance(imported, dict), f"{name}: use the long form Fn::ImportValue: !Sub ..."
        match = re.fullmatch(r"\$\{(\w+)\}-(\w+)", imported["Fn::Sub"])
        assert match, f"{name}: import {imported} is not ${{<StackParameter>}}-<Output>"
        source = load_template(IMPORT_SOURCES[match.group(1)])
        assert "Export" in source["Outputs"].get(match.group(2), {}), (
            f"{name}: {match.group(2)} is not exported"
        )


def test_no_allow_statement_has_a_wildcard_action(template: tuple[str, dict[str, Any]]) -> None:
    name, body = template
    for resource, kind, document in policy_documents(body):
        for statement in statements(document):
            wildcards = [a for a in actions(statement) if "*" in a]
            if statement["Effect"] == "Deny" or not wildcards:
                continue  # denying broadly (e.g. every non-TLS request) is the safe direction
            # The one exception: a key policy's delegation of the key to the account's IAM (AWS's default).
            root = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
            assert kind == "key", f"{name}: {resource} allows {wildcards}"
            assert statement.get("Principal") == root, f"{name}: {resource} allows {wildcards}"
            assert wildcards == ["kms:*"]


def test_identity_policies_use_resource_star_only_where_needed_and_say_why(
    template: tuple[str, dict[str, Any]],
) -> None:
    name, _ = template
    lines = (TEMPLATE_DIR / name).read_text().splitlines()
    for number, line in enumerate(lines):
        if re.fullmatch(r'\s*Resource: "\*"', line):
            above = lines[number - 1].strip()
            assert above.startswith("#"), f'{name}:{number + 1}: Resource "*" without a comment saying why'


def test_every_alarm_explains_its_missing_data_choice() -> None:
    name = LAMBDA.template
    body = load_template(name)
    alarms = [k for k, v in body["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"]
    assert len(alarms) == 8
    lines = (TEMPLATE_DIR / name).read_text().splitlines()
    treat = [n for n, line in enumerate(lines) if line.strip().startswith("TreatMissingData:")]
    assert len(treat) == len(alarms)
    for number in treat:
        assert lines[number - 1].strip().startswith("#"), f"{name}:{number + 1}: TreatMissingData unexplained"


def test_the_health_alarm_follows_the_spec_parameters() -> None:
    alarm = load_template(LAMBDA.template)["Resources"]["HealthCheckFailedAlarm"]["Properties"]
    assert alarm["Namespace"] == "Phoenix/Deployments"
    assert alarm["MetricName"] == "HealthCheckFailed"
    # One period per check: HEALTH_CHECK_INTERVAL, or ProductionCheckSeconds when a run checks several times
    # (then one period more to evaluate, so that a period a check missed does not reset the count).
    assert alarm["Period"] == {
        "Fn::If": ["SubMinuteChecks", {"Ref": "ProductionCheckSeconds"}, {"Ref": "HealthCheckInterval"}]
    }
    assert alarm["DatapointsToAlarm"] == {"Ref": "AlarmThreshold"}
    assert alarm["EvaluationPeriods"] == {
        "Fn::If": [
            "SubMinuteChecks",
            {"Fn::FindInMap": ["EvaluationPeriods", {"Ref": "AlarmThreshold"}, "WithSpare"]},
            {"Ref": "AlarmThreshold"},
        ]
    }
    assert alarm["Statistic"] == "Maximum"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_sub_minute_checks_are_a_high_resolution_period_and_fit_in_the_one_minute_run() -> None:
    body = load_template(LAMBDA.template)
    allowed = body["Parameters"]["ProductionCheckSeconds"]["AllowedValues"]
    spare = body["Mappings"]["EvaluationPeriods"]
    for seconds in allowed:
        checks = body["Mappings"]["ProductionChecks"][str(seconds)]["PerRun"]
        assert checks * seconds == 60  # the checks fill a one-minute run, one per alarm period
        assert seconds in (
            10,
            20,
            30,
            60,
        )  # botocore PutMetricAlarm.Period: "10, 20, 30, and any multiple of 60"
    for threshold in range(1, body["Parameters"]["AlarmThreshold"]["MaxValue"] + 1):
        assert spare[str(threshold)]["WithSpare"] == threshold + 1
    assert body["Conditions"]["SubMinuteChecks"] == {
        "Fn::And": [
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "ProductionCheckSeconds"}, 60]}]},
            {"Fn::Equals": [{"Ref": "HealthCheckInterval"}, 60]},
        ]
    }


def test_the_schedule_has_a_rate_for_every_allowed_interval() -> None:
    body = load_template(LAMBDA.template)
    allowed = body["Parameters"]["HealthCheckInterval"]["AllowedValues"]
    assert body["Parameters"]["HealthCheckInterval"]["Type"] == "Number"
    for seconds in allowed:
        # Fn::FindInMap takes the Number parameter's value as a string key.
        rate = body["Mappings"]["Schedule"][str(seconds)]["Rate"]
        minutes = int(seconds) // 60
        assert rate == f"rate({minutes} minute{'s' if minutes > 1 else ''})"


def lambda_variables(module: str) -> set[str]:
    """The environment variables a function's code reads (its load_config): its module and the shared modules
    of lambdas/ that its zip holds (scripts/deploy.py lambda_sources)."""
    source = "\n".join(path.read_text() for _, path in lambda_sources(module))
    return set(re.findall(r'env(?:\.get)?\(?\s*(?:env,\s*)?"([A-Z][A-Z0-9_]+)"', source)) | set(
        re.findall(r'_(?:required|integer|number|url|flag)\(\s*env,\s*"([A-Z][A-Z0-9_]+)"', source)
    )


@pytest.mark.parametrize(("resource", "module"), FUNCTIONS.items())
def test_each_function_gets_every_variable_its_module_reads(resource: str, module: str) -> None:
    function = load_template(LAMBDA.template)["Resources"][resource]["Properties"]
    variables = function["Environment"]["Variables"]
    read = lambda_variables(module)
    assert set(SPEC_VARIABLES) <= read
    assert read - set(variables) == set(), f"{module}: variables the template does not set"
    assert set(variables) - read == set(), f"{module}: variables the module does not read"
    assert function["Handler"] == f"{module}.lambda_handler"
    assert function["Runtime"] == {"Fn::FindInMap": ["LambdaRuntime", "Python", "Identifier"]}


def test_the_auto_rollback_function_is_serialised_and_has_a_dead_letter_queue() -> None:
    resources = load_template(LAMBDA.template)["Resources"]
    function = resources["AutoRollbackFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"] == 1
    assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": "DeadLetterQueue.Arn"}}
    assert resources["DeadLetterQueue"]["Properties"]["KmsMasterKeyId"]
    subscription = resources["AutoRollbackSubscription"]["Properties"]
    assert subscription["TopicArn"] == {"Ref": "AlarmsTopic"}


def test_codedeploy_may_invoke_the_hook_and_the_hook_may_answer() -> None:
    cicd = load_template(PIPELINE.template)["Resources"]
    invoke = [
        s
        for p in cicd["DeployRole"]["Properties"]["Policies"]
        for s in statements(p["PolicyDocument"])
        if "lambda:InvokeFunction" in actions(s)
    ]
    assert invoke == [
        {
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": {"Fn::ImportValue": {"Fn::Sub": "${LambdaStackName}-HealthCheckFunctionArn"}},
        }
    ]
    role = load_template(LAMBDA.template)["Resources"]["HealthCheckRole"]["Properties"]
    granted = {
        a for p in elements(role["Policies"]) for s in statements(p["PolicyDocument"]) for a in actions(s)
    }
    assert "codedeploy:PutLifecycleEventHookExecutionStatus" in granted


def test_the_deployment_group_rolls_back_on_failure_and_on_every_health_alarm() -> None:
    group = load_template(PIPELINE.template)["Resources"]["DeploymentGroup"]["Properties"]
    assert group["AutoRollbackConfiguration"] == {
        "Enabled": True,
        "Events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
    }
    alarm_exports = {a["Name"]["Fn::ImportValue"]["Fn::Sub"] for a in group["AlarmConfiguration"]["Alarms"]}
    lambda_outputs = load_template(LAMBDA.template)["Outputs"]
    # Every health alarm gates the deployment; the deployment-overdue alarm reaches the auto-rollback Lambda
    # only, which checks the deployment's age before stopping it.
    expected = {
        f"${{LambdaStackName}}-{k}"
        for k in lambda_outputs
        if k.endswith("AlarmName") and k != "DeploymentOverdueAlarmName"
    }
    assert alarm_exports == expected
    assert len(expected) == 6
    assert "${LambdaStackName}-CanaryJudgeAlarmName" in alarm_exports
    # "A maximum of 10 alarms can be added" (botocore codedeploy AlarmConfiguration.alarms).
    assert len(group["AlarmConfiguration"]["Alarms"]) <= 10
    config = group["BlueGreenDeploymentConfiguration"]["TerminateBlueInstancesOnDeploymentSuccess"]
    assert config["TerminationWaitTimeInMinutes"] == {"Ref": "TerminationWaitTimeInMinutes"}
    assert group["DeploymentStyle"] == {
        "DeploymentType": "BLUE_GREEN",
        "DeploymentOption": "WITH_TRAFFIC_CONTROL",
    }


def test_the_deployment_overdue_alarm_reaches_the_auto_rollback_function_as_its_timeout_alarm() -> None:
    resources = load_template(LAMBDA.template)["Resources"]
    alarm = resources["DeploymentOverdueAlarm"]["Properties"]
    variables = resources["AutoRollbackFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["DEPLOYMENT_TIMEOUT_ALARM_NAME"] == {"Ref": "DeploymentOverdueAlarm"}
    assert {"Ref": "DeploymentOverdueAlarm"} in variables["ALARM_NAMES"]["Fn::Join"][1]
    assert alarm["MetricName"] == "DeploymentOverdue"
    assert alarm["Period"] == {"Ref": "HealthCheckInterval"}
    assert alarm["AlarmActions"] == [{"Ref": "AlarmsTopic"}]


def test_the_canary_judge_alarm_fires_on_one_failed_judgement_of_the_health_check() -> None:
    resources = load_template(LAMBDA.template)["Resources"]
    alarm = resources["CanaryJudgeAlarm"]["Properties"]
    overdue = resources["DeploymentOverdueAlarm"]["Properties"]
    variables = resources["HealthCheckFunction"]["Properties"]["Environment"]["Variables"]
    assert alarm["AlarmName"] == {"Fn::Sub": "${ProjectName}-${Environment}-canary-judge"}
    assert (alarm["Namespace"], alarm["MetricName"]) == (variables["METRIC_NAMESPACE"], "CanaryJudgement")
    # The health check's own {Service, Environment} dimensions, as on its DeploymentOverdue datum.
    assert alarm["Dimensions"] == overdue["Dimensions"]
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Period"] == {"Ref": "HealthCheckInterval"}
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (1, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    # No canary in progress -> no datum -> not breaching.
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmsTopic"}]
    assert alarm["AlarmDescription"]
    output = load_template(LAMBDA.template)["Outputs"]["CanaryJudgeAlarmName"]
    assert output["Value"] == {"Ref": "CanaryJudgeAlarm"}
    assert output["Export"] == {"Name": {"Fn::Sub": "${AWS::StackName}-CanaryJudgeAlarmName"}}


@pytest.mark.parametrize("function", ["AutoRollbackFunction", "ReleaseReportFunction"])
def test_the_functions_watching_alarms_list_every_alarm_that_stops_a_release(function: str) -> None:
    resources = load_template(LAMBDA.template)["Resources"]
    variables = resources[function]["Properties"]["Environment"]["Variables"]
    separator, listed = variables["ALARM_NAMES"]["Fn::Join"]
    # Every alarm on the alarms topic (health-check-errors tells people on the notifications topic instead).
    on_alarms_topic = {
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"]["AlarmActions"] == [{"Ref": "AlarmsTopic"}]
    }
    names = [item["Ref"] for item in listed]
    assert separator == ","
    assert sorted(names) == sorted(on_alarms_topic)
    assert "CanaryJudgeAlarm" in names
    assert len(names) == 7


def test_the_health_check_gets_the_dimension_values_of_the_cluster_stacks_balancer_and_groups() -> None:
    variables = load_template(LAMBDA.template)["Resources"]["HealthCheckFunction"]["Properties"][
        "Environment"
    ]["Variables"]
    imported = {
        name: {"Fn::ImportValue": {"Fn::Sub": f"${{ClusterStackName}}-{name}"}}
        for name in ("LoadBalancerFullName", "BlueTargetGroupFullName", "GreenTargetGroupFullName")
    }
    assert variables["LOAD_BALANCER_DIMENSION"] == imported["LoadBalancerFullName"]
    assert variables["TARGET_GROUP_DIMENSIONS"] == {
        "Fn::Join": [",", [imported["BlueTargetGroupFullName"], imported["GreenTargetGroupFullName"]]]
    }
    # The exports are the CloudWatch dimension values of the cluster stack's own resources.
    outputs = load_template(CLUSTER.template)["Outputs"]
    assert outputs["LoadBalancerFullName"]["Value"] == {"Fn::GetAtt": "LoadBalancer.LoadBalancerFullName"}
    for group in ("BlueTargetGroup", "GreenTargetGroup"):
        assert outputs[f"{group}FullName"]["Value"] == {"Fn::GetAtt": f"{group}.TargetGroupFullName"}


def _error_rate_queries(alarm: str) -> dict[str, dict[str, Any]]:
    metrics = load_template(LAMBDA.template)["Resources"][alarm]["Properties"]["Metrics"]
    return {query["Id"]: query for query in metrics}


def _target_group(query: dict[str, Any]) -> str:
    dimensions = {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"]["Dimensions"]}
    return str(dimensions["TargetGroup"]["Fn::ImportValue"]["Fn::Sub"]).split("-", 1)[1]


GATED_RATE = "IF(requests >= FILL(others, 0), 100 * FILL(errors, 0) / requests, 0)"


@pytest.mark.parametrize(("alarm", "own", "other"), [
    ("BlueErrorRateAlarm", "BlueTargetGroupFullName", "GreenTargetGroupFullName"),
    ("GreenErrorRateAlarm", "GreenTargetGroupFullName", "BlueTargetGroupFullName"),
])  # fmt: skip
def test_each_error_rate_alarm_rates_its_group_only_while_it_serves_the_larger_share(
    alarm: str, own: str, other: str
) -> None:
    """A 10 % canary on ~20 requests a minute crosses a fixed 5 % on one failed request: the group with fewer
    requests than the other counts 0 here and is left to the canary judge's alarm."""
    queries = _error_rate_queries(alarm)
    assert list(queries) == ["errors", "requests", "others", "rate"]
    assert [_target_group(queries[q]) for q in ("errors", "requests", "others")] == [own, own, other]
    stats = {q: queries[q]["MetricStat"] for q in ("errors", "requests", "others")}
    assert (
        stats["others"]["Metric"]["MetricName"] == stats["requests"]["Metric"]["MetricName"] == "RequestCount"
    )
    assert stats["errors"]["Metric"]["MetricName"] == "HTTPCode_Target_5XX_Count"
    assert {(s["Stat"], json.dumps(s["Period"])) for s in stats.values()} == {
        ("Sum", json.dumps({"Ref": "HealthCheckInterval"}))
    }
    assert [queries[q]["ReturnData"] for q in queries] == [False, False, False, True]
    assert queries["rate"]["Expression"] == GATED_RATE


@pytest.mark.parametrize(("errors", "requests", "others", "expected"), [
    (1.0, 2.0, 18.0, 0.0),  # a 10 % canary with one failure: 0, not 50 %
    (3.0, 18.0, 2.0, 100 * 3 / 18),  # the group serving most requests: its rate
    (1.0, 10.0, 10.0, 10.0),  # an even split: both groups rated
    (None, 20.0, None, 0.0),  # no 5xx datapoint is no error
    (2.0, 20.0, None, 10.0),  # the other group idle (no RequestCount datapoint): rated
])  # fmt: skip
def test_the_stand_in_evaluates_the_gated_rate_as_cloudwatch_metric_math(
    errors: float | None, requests: float, others: float | None, expected: float
) -> None:
    values = {"errors": errors, "requests": requests, "others": others}
    assert evaluate_expression(GATED_RATE, values) == pytest.approx(expected)


@pytest.mark.parametrize("others", [None, 20.0])
def test_a_group_without_requests_never_breaches_the_gated_rate(others: float | None) -> None:
    """No RequestCount datapoint of its own: the stand-in gives no value; CloudWatch's metric math compares a
    value missing beside a present one as 0 and gives 0 where IF's chosen branch has no value ("Using metric
    math", comparison operators and "Using IF expressions"). Both are below every threshold the template
    accepts, so the alarm's state is the same."""
    value = evaluate_expression(GATED_RATE, {"errors": None, "requests": None, "others": others})
    lowest = load_template(LAMBDA.template)["Parameters"]["ErrorRateThresholdPercent"]["MinValue"]
    assert value is None or value < lowest


def _depends_on(resource: dict[str, Any]) -> set[str]:
    explicit = resource.get("DependsOn", [])
    named = {explicit} if isinstance(explicit, str) else set(explicit)
    return named | references({"Resources": {"r": resource}})


def test_both_listeners_depend_on_both_target_groups() -> None:
    """After an odd number of deployments a listener forwards to green, which nothing else references: without
    the dependency CloudFormation deletes green first and the stack deletion fails with ResourceInUse."""
    resources = load_template(CLUSTER.template)["Resources"]
    groups = {k for k, v in resources.items() if v["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup"}
    listeners = [k for k, v in resources.items() if v["Type"] == "AWS::ElasticLoadBalancingV2::Listener"]
    assert len(groups) == 2
    assert len(listeners) == 2
    for listener in listeners:
        assert groups <= _depends_on(resources[listener]), f"{listener} must depend on {sorted(groups)}"


def test_every_security_group_declares_its_egress_inline(template: tuple[str, dict[str, Any]]) -> None:
    """A group without inline SecurityGroupEgress keeps EC2's default allow-all egress rule; a separate
    AWS::EC2::SecurityGroupEgress adds to it rather than replacing it."""
    name, body = template
    for resource, spec in body["Resources"].items():
        if spec["Type"] == "AWS::EC2::SecurityGroup":
            assert spec["Properties"].get("SecurityGroupEgress"), f"{name}: {resource} allows all egress"


def test_the_registry_keeps_every_image_the_rollback_history_can_reach() -> None:
    repository = load_template(CLUSTER.template)["Resources"]["Repository"]["Properties"]
    rules = json.loads(repository["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    [keep] = [
        r["selection"]["countNumber"] for r in rules if r["selection"]["countType"] == "imageCountMoreThan"
    ]
    function = load_template(LAMBDA.template)["Resources"]["AutoRollbackFunction"]["Properties"]
    history = int(function["Environment"]["Variables"]["HISTORY_MAX_DEPLOYMENTS"])
    assert keep >= history, (
        f"ECR keeps {keep} images; the auto-rollback Lambda reaches back {history} deployments"
    )


def _sub_texts(node: Any) -> Iterator[str]:
    for found in walk(node):
        if isinstance(found, dict) and "Fn::Sub" in found:
            sub = found["Fn::Sub"]
            text = sub[0] if isinstance(sub, list) else sub
            if isinstance(text, str):
                yield text


@pytest.mark.parametrize("kind", [spec.type for spec in SKIPPED])
def test_resources_the_stand_in_creates_are_referred_to_not_named(kind: str) -> None:
    """Ref / Fn::GetAtt rather than a copy of the name, also for the types moto's CloudFormation skips
    (local/aws/cloudformation.py answers Ref and GetAtt of them): CloudFormation orders the creation by the
    references, and a renamed resource is followed."""
    name_property = next(spec.name_property for spec in SKIPPED if spec.type == kind)
    for template in TEMPLATES:
        body = load_template(template)
        for logical, resource in body["Resources"].items():
            name = resource.get("Properties", {}).get(name_property)
            if resource["Type"] != kind or not isinstance(name, dict) or "Fn::Sub" not in name:
                continue
            others = {**body, "Resources": {k: v for k, v in body["Resources"].items() if k != logical}}
            arn = re.compile(rf"^arn:.*[:/]{re.escape(name['Fn::Sub'])}(?:$|[:/])")
            copies = [text for text in _sub_texts(others) if text == name["Fn::Sub"] or arn.match(text)]
            assert copies == [], f"{template}: {logical} is named instead of referred to: {copies}"


def test_resources_carry_the_stack_tags_not_copies_of_them(template: tuple[str, dict[str, Any]]) -> None:
    name, body = template
    for resource, spec in body["Resources"].items():
        tags = spec.get("Properties", {}).get("Tags") or []
        keys = {tag.get("Key") for tag in tags if isinstance(tag, dict)}
        assert not keys & {"Project", "Environment"}, f"{name}: {resource} repeats the stack-level tags"


def test_the_vpc_permissions_exist_only_when_the_health_check_runs_in_the_vpc() -> None:
    resources = load_template(LAMBDA.template)["Resources"]
    policies = resources["HealthCheckRole"]["Properties"]["Policies"]
    conditional = [p["Fn::If"] for p in policies if isinstance(p, dict) and set(p) == {"Fn::If"}]
    assert [(c[0], c[1]["PolicyName"], c[2]) for c in conditional] == [
        ("InVpc", "vpc-network-interfaces", NO_VALUE)
    ]
    assert resources["HealthCheckFunction"]["Properties"]["VpcConfig"]["Fn::If"][0] == "InVpc"


# A template comment that explains a construct by the local stand-in or moto: the template bends to the
# stand-in instead of being written for AWS. Teach the stand-in the construct (local/aws/cloudformation.py).
STAND_IN_WORDS = re.compile(r"\b(moto|stand-in|local)\b", re.IGNORECASE)


def comments(text: str) -> Iterator[tuple[int, str]]:
    """(line number, comment) for every YAML comment: whole-line ones and those after a value (" #")."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith("#"):
            yield number, stripped
        elif " #" in line:
            yield number, line[line.index(" #") + 1 :]


def test_no_template_comment_justifies_a_construct_by_the_stand_in(
    template: tuple[str, dict[str, Any]],
) -> None:
    name, _ = template
    found = [
        f"{name}:{number}: {comment}"
        for number, comment in comments((TEMPLATE_DIR / name).read_text())
        if STAND_IN_WORDS.search(comment)
    ]
    assert found == [], "templates are written for AWS; teach the stand-in instead:\n" + "\n".join(found)


def test_the_stand_in_words_are_found_in_a_comment_and_only_there() -> None:
    text = "a: 1 # moto needs it\n  # The local stand-in cannot\nb: localhost # fine\nc: '#'\n"
    assert [n for n, c in comments(text) if STAND_IN_WORDS.search(c)] == [1, 2]

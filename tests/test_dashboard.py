"""The CloudWatch dashboard and the optional chat delivery of cloudformation/lambda-functions.yaml.

Read as data, the dashboard's body (its Fn::Sub resolved as CloudFormation resolves it, imports left as
`import:<export>`) is JSON of the structure of CloudWatch's "Dashboard Body Structure and Syntax", laid out on
its 24-column grid, and names only metrics the health-check Lambda publishes or that Elastic Load Balancing
publishes for the cluster stack's load balancer and target groups, and only alarms the stack creates.
Created in the stand-in, the dashboard is the one GetDashboard answers, holding the ARNs of the alarms and the
dimensions of the resources the stacks really created. The chat channel resources exist only with a
channel's ids.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from local.aws.account import ACCOUNT_ID, REGION
from local.aws.cloudformation import Stacks, dashboard_body_problems
from local.aws.moto_server import Aws, moto_server
from scripts.deploy import check_value
from scripts.stacks import CLUSTER, LAMBDA, ROOT, StackSpec, load_template, tags

TEMPLATE = load_template(LAMBDA.template)
CLUSTER_OUTPUTS = load_template(CLUSTER.template)["Outputs"]
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::StackName": LAMBDA.name,
}
# What Ref returns for the types the dashboard refers to: the name property (their CloudFormation pages).
NAME_PROPERTY = {
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
}
# "CloudWatch metrics for your Application Load Balancer" (Elastic Load Balancing User Guide): these target
# metrics are reported per target group with the dimensions LoadBalancer and TargetGroup.
ELB_TARGET_GROUP_METRICS = {"RequestCount", "HTTPCode_Target_5XX_Count", "TargetResponseTime"}
TARGET_GROUPS = {"blue": "BlueTargetGroup", "green": "GreenTargetGroup"}
LISTENERS = ("production", "test")
CHAT_RESOURCES = {
    "ChatNotificationsPolicy": "HasChat",
    "ChatRole": "HasChat",
    "SlackChannel": "HasSlack",
    "TeamsChannel": "HasTeams",
}
SLACK = {"SlackWorkspaceId": "T0123ABCD", "SlackChannelId": "C0123ABCD"}
TEAMS = {
    "TeamsTenantId": "a1b2c3d4-0000-4000-8000-0123456789ab",
    "TeamsTeamId": "b1b2c3d4-0000-4000-8000-0123456789ab",
    "TeamsChannelId": "19%3ab6ef35dc342d56ba5654e6fc6d25a071%40thread.tacv2",
}


# ---------------------------------------------------------------- the template, resolved
def parameters(**given: str) -> dict[str, str]:
    """Every parameter's value: its default, or the given one (as CloudFormation passes them: strings)."""
    values = {name: str(spec.get("Default", "")) for name, spec in TEMPLATE["Parameters"].items()}
    return {**values, **given}


def ref(name: str, values: dict[str, str]) -> str:
    """Ref (or ${Name} in Fn::Sub) of a parameter, a pseudo parameter, a named resource or Logical.Arn."""
    if name in values:
        return values[name]
    if name in PSEUDO:
        return PSEUDO[name]
    if name.endswith(".Arn"):
        alarm = name.removesuffix(".Arn")
        assert TEMPLATE["Resources"][alarm]["Type"] == "AWS::CloudWatch::Alarm", name
        return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{ref(alarm, values)}"
    resource = TEMPLATE["Resources"][name]
    return str(resolve(resource["Properties"][NAME_PROPERTY[resource["Type"]]], values))


def resolve(node: Any, values: dict[str, str]) -> Any:
    """A template value as CloudFormation resolves it; Fn::ImportValue becomes "import:<export name>"."""
    if isinstance(node, list):
        return [resolve(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if "Ref" in node:
        return ref(node["Ref"], values)
    if "Fn::ImportValue" in node:
        return f"import:{resolve(node['Fn::ImportValue'], values)}"
    if "Fn::Sub" in node:
        sub = node["Fn::Sub"]
        text, variables = (sub[0], sub[1]) if isinstance(sub, list) else (sub, {})
        own = {key: str(resolve(value, values)) for key, value in variables.items()}
        return re.sub(r"\$\{([^}!]+)\}", lambda m: own.get(m[1]) or ref(m[1], values), text)
    return {key: resolve(value, values) for key, value in node.items()}


def dashboard_body(values: dict[str, str]) -> str:
    return str(resolve(TEMPLATE["Resources"]["Dashboard"]["Properties"]["DashboardBody"], values))


def widgets(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [widget for widget in body["widgets"] if widget["type"] == kind]


def metrics(widget: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, name, dimensions, options) of each metric of a metric widget (expressions left out)."""
    for entry in widget["properties"]["metrics"]:
        has_options = isinstance(entry[-1], dict)
        options, names = (entry[-1], entry[:-1]) if has_options else ({}, entry)
        if names:
            namespace, name, *pairs = names
            yield namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)), options


def expressions(widget: dict[str, Any]) -> dict[str, str]:
    return {e[0]["id"]: e[0]["expression"] for e in widget["properties"]["metrics"] if len(e) == 1}


class CanaryAnswers:
    """A client for both services the canary judgement reads: CodeDeploy's targets of a deployment in its
    canary (both task sets with production traffic), and CloudWatch's counts (no datapoints yet)."""

    def list_deployment_targets(self, **_: Any) -> dict[str, Any]:
        return {"targetIds": ["phoenix-dev:sample-app"]}

    def batch_get_deployment_targets(self, **_: Any) -> dict[str, Any]:
        task_sets = [
            {"taskSetLabel": label, "trafficWeight": weight, "targetGroup": {"name": f"phoenix-dev-{color}"}}
            for label, weight, color in (("Blue", 90.0, "blue"), ("Green", 10.0, "green"))
        ]
        allow = {"lifecycleEventName": "AllowTraffic", "startTime": datetime.now(UTC) - timedelta(minutes=2)}
        return {"deploymentTargets": [{"ecsTarget": {"taskSetsInfo": task_sets, "lifecycleEvents": [allow]}}]}

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        return {"MetricDataResults": [{"Id": q["Id"], "Values": []} for q in kwargs["MetricDataQueries"]]}


def published_health_metrics(service: str, environment: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """(name, dimensions) of every datum the health-check Lambda's code puts (its metric_data for both
    listeners, the DeploymentOverdue datum and, during a canary, the CanaryJudgement datum), under its own
    configuration defaults."""
    health_check = importlib.import_module("health_check")
    config = health_check.load_config(
        {
            "ENVIRONMENT": environment,
            "SERVICE_NAME": service,
            "CODEDEPLOY_APPLICATION": "phoenix-dev",
            "CODEDEPLOY_DEPLOYMENT_GROUP": "phoenix-dev-sample-app",
            "PRODUCTION_URL": "http://alb.example.com",
            "TEST_URL": "http://alb.example.com:8080",
            "LOAD_BALANCER_DIMENSION": "app/phoenix-dev-alb/50dc6c495c0c9188",
            "TARGET_GROUP_DIMENSIONS": (
                "targetgroup/phoenix-dev-blue/73e2d6bc24d8a067,targetgroup/phoenix-dev-green/943f017f100becff"
            ),
        }
    )
    rounds = {
        listener: health_check.Round(listener, "http://alb.example.com", (), 0.0, 0.0, False)
        for listener in LISTENERS
    }
    answers = CanaryAnswers()
    with (
        mock.patch.object(health_check, "codedeploy", return_value=answers),
        mock.patch.object(health_check, "cloudwatch", return_value=answers),
    ):
        judged = health_check.canary_datum("d-CANARY0001", config)[0]
    assert judged, "a deployment in its canary gets a judgement"
    data = health_check.metric_data(rounds, config) + health_check.overdue_datum(None, config)[0] + judged
    return {(d["MetricName"], frozenset((x["Name"], x["Value"]) for x in d["Dimensions"])) for d in data}


@pytest.fixture(scope="module")
def body() -> dict[str, Any]:
    text = dashboard_body(parameters())
    assert dashboard_body_problems(text) == []
    parsed: dict[str, Any] = json.loads(text)
    return parsed


# ---------------------------------------------------------------- the body as CloudWatch reads it
@pytest.mark.parametrize("interval", TEMPLATE["Parameters"]["HealthCheckInterval"]["AllowedValues"])
@pytest.mark.parametrize(
    ("threshold", "latency"), [("5", "1"), ("1", "0.05"), ("100", "30"), ("07.50", "2.")]
)
def test_the_body_is_one_cloudwatch_accepts_for_every_accepted_parameter_value(
    interval: int, threshold: str, latency: str
) -> None:
    values = parameters(
        HealthCheckInterval=str(interval),
        ErrorRateThresholdPercent=threshold,
        LatencyThresholdSeconds=latency,
    )
    text = dashboard_body(values)
    assert dashboard_body_problems(text) == []
    periods = {w["properties"]["period"] for w in widgets(json.loads(text), "metric")}
    assert periods == {interval}, "every graph has HealthCheckInterval's period: a point is one run"


def test_the_widgets_tile_the_24_column_grid_without_overlapping(body: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], int] = {}
    for index, widget in enumerate(body["widgets"]):
        assert widget["x"] + widget["width"] <= 24, f"widget {index} runs off the grid"
        for x in range(widget["x"], widget["x"] + widget["width"]):
            for y in range(widget["y"], widget["y"] + widget["height"]):
                assert (x, y) not in cells, f"widgets {cells[(x, y)]} and {index} overlap at {(x, y)}"
                cells[(x, y)] = index
    assert [w["type"] for w in body["widgets"]][:2] == ["text", "alarm"], "what and why, then alarm states"
    assert all(w["properties"]["region"] == REGION for w in body["widgets"] if w["type"] in ("metric", "log"))


def test_health_metrics_are_the_ones_the_health_check_publishes_for_each_listener(
    body: dict[str, Any],
) -> None:
    variables = TEMPLATE["Resources"]["HealthCheckFunction"]["Properties"]["Environment"]["Variables"]
    published = published_health_metrics("sample-app", "dev")
    shown: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    for widget in widgets(body, "metric"):
        for namespace, name, dimensions, _ in metrics(widget):
            if namespace == "AWS/ApplicationELB":
                continue
            assert namespace == variables["METRIC_NAMESPACE"]
            key = (name, frozenset(dimensions.items()))
            assert key in published, f"{name} {dimensions}: the health check publishes no such metric"
            shown.add(key)
    for name in ("HealthCheckFailed", "ErrorRate", "LatencyP95"):
        for listener in LISTENERS:
            dimensions = {"Service": "sample-app", "Environment": "dev", "Listener": listener}
            assert (name, frozenset(dimensions.items())) in shown, f"{name} of the {listener} listener"
    for name in ("DeploymentOverdue", "CanaryJudgement"):
        assert (name, frozenset({("Service", "sample-app"), ("Environment", "dev")})) in shown, name


def test_load_balancer_metrics_are_elbs_for_the_cluster_stacks_target_groups(body: dict[str, Any]) -> None:
    balancer = f"import:{CLUSTER.export('LoadBalancerFullName')}"
    groups = {color: f"import:{CLUSTER.export(f'{name}FullName')}" for color, name in TARGET_GROUPS.items()}
    # The exports are the dimension values of the cluster stack's own load balancer and target groups.
    assert CLUSTER_OUTPUTS["LoadBalancerFullName"]["Value"] == {
        "Fn::GetAtt": "LoadBalancer.LoadBalancerFullName"
    }
    for name in TARGET_GROUPS.values():
        assert CLUSTER_OUTPUTS[f"{name}FullName"]["Value"] == {"Fn::GetAtt": f"{name}.TargetGroupFullName"}
    shown: set[tuple[str, str, str]] = set()
    for widget in widgets(body, "metric"):
        stat = widget["properties"]["stat"]
        for namespace, name, dimensions, options in metrics(widget):
            if namespace != "AWS/ApplicationELB":
                continue
            assert name in ELB_TARGET_GROUP_METRICS
            assert set(dimensions) == {"LoadBalancer", "TargetGroup"}
            assert dimensions["LoadBalancer"] == balancer
            color = next(c for c, group in groups.items() if dimensions["TargetGroup"] == group)
            shown.add((name, color, options.get("stat", stat)))
    for color in TARGET_GROUPS:
        assert {("TargetResponseTime", color, "p95"), ("RequestCount", color, "Sum")} <= shown
        assert ("HTTPCode_Target_5XX_Count", color, "Sum") in shown


def test_the_5xx_rate_is_the_alarms_rate_ungated_over_each_target_groups_own_counts(
    body: dict[str, Any],
) -> None:
    """The alarms rate a target group only while it serves at least as many requests as the other (a smaller
    share is the canary judge's); the graph shows each group's own rate always, so an operator also sees how
    often the canary fails: the rate of the alarm's IF, over the group's own counts."""
    alarm = TEMPLATE["Resources"]["BlueErrorRateAlarm"]["Properties"]["Metrics"]
    gated = next(query["Expression"] for query in alarm if "Expression" in query)
    gate = re.fullmatch(r"IF\(requests >= FILL\(others, 0\), (.+), 0\)", gated)
    assert gate, gated
    alarm_expression = gate[1]
    assert alarm_expression == "100 * FILL(errors, 0) / requests"
    (widget,) = [w for w in widgets(body, "metric") if expressions(w)]
    ids = {options["id"]: (name, dims["TargetGroup"]) for _, name, dims, options in metrics(widget)}
    rates = expressions(widget)
    assert set(rates) == {f"{color}_rate" for color in TARGET_GROUPS}
    for color, group in TARGET_GROUPS.items():
        expected = alarm_expression.replace("errors", f"{color}_errors").replace(
            "requests", f"{color}_requests"
        )
        assert rates[f"{color}_rate"] == expected
        target_group = f"import:{CLUSTER.export(f'{group}FullName')}"
        assert ids[f"{color}_errors"] == ("HTTPCode_Target_5XX_Count", target_group)
        assert ids[f"{color}_requests"] == ("RequestCount", target_group)


def test_the_alarm_widget_shows_every_alarm_of_the_stack_and_nothing_else(body: dict[str, Any]) -> None:
    values = parameters()
    created = {
        ref(f"{logical}.Arn", values)
        for logical, resource in TEMPLATE["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    (widget,) = widgets(body, "alarm")
    assert sorted(widget["properties"]["alarms"]) == sorted(created)
    assert len(created) == 8


def test_the_decisions_widget_queries_both_lambdas_log_groups_for_fields_they_log(
    body: dict[str, Any],
) -> None:
    (widget,) = widgets(body, "log")
    query = widget["properties"]["query"]
    sources = re.findall(r"SOURCE '([^']+)'", query)
    assert sources == [
        "/aws/lambda/phoenix-dev-health-check",
        "/aws/lambda/phoenix-dev-auto-rollback",
    ]
    # Lambda's JSON log record: the decision is `message`, the decision's fields are top-level keys, except
    # those named like Lambda's own keys (phoenix_common.DecisionLog renames them).
    assert "fields @timestamp, function, message as decision, " in query
    taken = importlib.import_module("phoenix_common")._TAKEN_KEYS
    code = "\n".join(path.read_text() for path in sorted((ROOT / "lambdas").glob("*.py")))
    used = {"function", "reason"} | {
        field for listed in re.findall(r"coalesce\(([^)]*)\)", query) for field in listed.split(", ")
    }
    assert {"deploymentId", "deployment", "deployment_in_flight", "serving_deployment", "verdict"} <= used
    for field in used:
        assert field not in taken, f"{field!r} is logged as {field}_"
        assert re.search(rf'\b{field}=|"{field}"', code), f"the Lambdas log no field {field!r}"
    assert query.endswith("| filter ispresent(deployment_id)\n| sort @timestamp desc\n| limit 20")


def test_the_text_widget_links_the_deployment_group_the_lambdas_watch(body: dict[str, Any]) -> None:
    values = parameters()
    variables = TEMPLATE["Resources"]["AutoRollbackFunction"]["Properties"]["Environment"]["Variables"]
    application = resolve(variables["CODEDEPLOY_APPLICATION"], values)
    group = resolve(variables["CODEDEPLOY_DEPLOYMENT_GROUP"], values)
    (widget,) = widgets(body, "text")
    assert (
        f"https://{REGION}.console.aws.amazon.com/codesuite/codedeploy/applications/{application}"
        f"/deployment-groups/{group}?region={REGION}"
    ) in widget["properties"]["markdown"]


def test_the_dashboard_url_output_opens_this_regions_dashboard() -> None:
    values = parameters()
    name = ref("Dashboard", values)
    assert name == f"phoenix-dev-{REGION}", "dashboards are global to the account: the name holds the region"
    assert resolve(TEMPLATE["Outputs"]["DashboardUrl"]["Value"], values) == (
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards:name={name}"
    )


# ---------------------------------------------------------------- what PutDashboard refuses (the stand-in)
WIDGET = {"type": "text", "x": 0, "y": 0, "width": 6, "height": 3, "properties": {"markdown": "hi"}}


def _body(**changes: Any) -> str:
    return json.dumps({"widgets": [{**WIDGET, **changes}]})


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ("{not json", ""),
        ("[]", ""),
        ("{}", ""),
        (_body(type="graph"), "/widgets/0/type"),
        (_body(width=25), "/widgets/0/width"),
        (_body(x=24), "/widgets/0/x"),
        (_body(height=0), "/widgets/0/height"),
        (_body(y=-1), "/widgets/0/y"),
        (json.dumps({"widgets": [{"type": "text", "x": 0, "properties": {"markdown": "a"}}]}), "/widgets/0"),
        (_body(properties={}), "/widgets/0/properties"),
        (
            _body(type="metric", properties={"metrics": [["AWS/EC2", "CPUUtilization"]]}),
            "/widgets/0/properties",
        ),
        (
            _body(type="metric", properties={"region": REGION, "period": 90, "metrics": [["A", "B"]]}),
            "/widgets/0/properties/period",
        ),
        (
            _body(type="metric", properties={"region": REGION, "metrics": [["A", "B", "Dimension"]]}),
            "/widgets/0/properties/metrics/0",
        ),
        (
            _body(type="log", properties={"region": REGION, "query": "fields @message"}),
            "/widgets/0/properties/query",
        ),
        (_body(type="alarm", properties={"alarms": []}), "/widgets/0/properties/alarms"),
        (_body(type="alarm", properties={"title": "no alarms"}), "/widgets/0/properties"),
    ],
)
def test_the_stand_in_refuses_what_putdashboard_refuses_and_names_where(body: str, path: str) -> None:
    problems = dashboard_body_problems(body)
    assert [found for found, _ in problems] == [path]


def test_the_stand_in_accepts_an_empty_dashboard_and_the_documentations_examples() -> None:
    assert dashboard_body_problems('{"widgets": []}') == []
    example = {
        "widgets": [
            {
                "type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
                "properties": {
                    "metrics": [
                        ["AWS/EC2", "DiskReadBytes", "InstanceId", "i-123", {"id": "m1"}],
                        [".", ".", ".", "i-abc", {"id": "m2"}],
                        [{"expression": "SUM(METRICS())", "label": "Sum of DiskReadbytes", "id": "e3"}],
                    ],
                    "view": "timeSeries", "stacked": False, "period": 300, "stat": "Average",
                    "region": "us-east-1", "title": "EC2 Instance CPU",
                },
            },
            {"type": "text", "x": 0, "y": 7, "width": 3, "height": 3, "properties": {"markdown": "Hello"}},
        ]
    }  # fmt: skip
    assert dashboard_body_problems(json.dumps(example)) == []


# ---------------------------------------------------------------- the stacks in the stand-in
CHAT_STACK = StackSpec("chat-lambda-functions-stack", LAMBDA.template)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[Aws]:
    """moto with the cluster stack, the Lambda stack with its defaults, and a second Lambda stack (project
    "chat") with a Slack channel."""
    with moto_server() as aws:
        stacks = Stacks(aws, tags=tags("phoenix", "dev"))
        stacks.create(CLUSTER, {})
        bucket = stacks.exports[CLUSTER.export("ArtifactBucketName")]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "")
        for key in ("health_check.zip", "auto_rollback.zip"):
            aws.client("s3").put_object(Bucket=bucket, Key=key, Body=code.getvalue())
        assert stacks.create(LAMBDA, {"ArtifactBucket": bucket}).status == "CREATE_COMPLETE"
        chat = stacks.create(CHAT_STACK, {"ArtifactBucket": bucket, "ProjectName": "chat", **SLACK})
        assert chat.status == "CREATE_COMPLETE"
        yield aws


def _stack_dashboard(aws: Aws, stack: str) -> tuple[str, dict[str, Any]]:
    outputs = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    url = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "DashboardUrl")
    name = url.rsplit("#dashboards:name=", 1)[1]
    answer = aws.client("cloudwatch").get_dashboard(DashboardName=name)
    return name, json.loads(answer["DashboardBody"])


def test_the_stack_creates_the_dashboard_over_what_the_stacks_created(stand_in: Aws) -> None:
    name, body = _stack_dashboard(stand_in, LAMBDA.name)
    assert name == f"phoenix-dev-{REGION}"
    cloudwatch, logs = stand_in.client("cloudwatch"), stand_in.client("logs")
    alarms = {
        a["AlarmArn"] for a in cloudwatch.describe_alarms(AlarmNamePrefix="phoenix-dev-")["MetricAlarms"]
    }
    (alarm_widget,) = widgets(body, "alarm")
    assert set(alarm_widget["properties"]["alarms"]) == alarms
    assert len(alarms) == 8
    exports = {e["Name"]: e["Value"] for e in stand_in.client("cloudformation").list_exports()["Exports"]}
    balancer = exports[CLUSTER.export("LoadBalancerFullName")]
    groups = {exports[CLUSTER.export(f"{name}FullName")] for name in TARGET_GROUPS.values()}
    elb = [
        dims for w in widgets(body, "metric") for ns, _, dims, _ in metrics(w) if ns == "AWS/ApplicationELB"
    ]
    assert {d["LoadBalancer"] for d in elb} == {balancer}
    assert {d["TargetGroup"] for d in elb} == groups
    (log_widget,) = widgets(body, "log")
    groups_created = {
        g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]
    }
    assert set(re.findall(r"SOURCE '([^']+)'", log_widget["properties"]["query"])) <= groups_created


def _logical_ids(aws: Aws, stack: str) -> set[str]:
    resources = aws.client("cloudformation").describe_stack_resources(StackName=stack)["StackResources"]
    return {r.get("LogicalResourceId", "") for r in resources}


def test_chat_delivery_is_off_by_default_and_a_slack_channel_creates_its_role_and_guardrail(
    stand_in: Aws,
) -> None:
    assert _logical_ids(stand_in, LAMBDA.name) & set(CHAT_RESOURCES) == set()
    assert _logical_ids(stand_in, CHAT_STACK.name) & set(CHAT_RESOURCES) == {
        "ChatNotificationsPolicy", "ChatRole", "SlackChannel"
    }  # fmt: skip
    resources = stand_in.client("cloudformation").describe_stack_resources(StackName=CHAT_STACK.name)
    by_id = {r.get("LogicalResourceId"): r.get("PhysicalResourceId") for r in resources["StackResources"]}
    assert by_id["SlackChannel"] == (
        f"arn:aws:chatbot::{ACCOUNT_ID}:chat-configuration/slack-channel/chat-dev-{REGION}-slack"
    )
    role = stand_in.client("iam").get_role(RoleName=by_id["ChatRole"])["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "chatbot.amazonaws.com"}


def test_a_partial_channel_refuses_the_stack_before_anything_is_created(stand_in: Aws) -> None:
    cloudformation = stand_in.client("cloudformation")
    given = {"ArtifactBucket": "any-bucket", "ProjectName": "partial", "SlackChannelId": "C0123ABCD"}
    with pytest.raises(ClientError) as refused:
        cloudformation.create_stack(
            StackName="partial-chat-stack",
            TemplateBody=LAMBDA.path.read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert refused.value.response["Error"]["Message"] == (
        "Set SlackWorkspaceId and SlackChannelId together, or leave both empty (no Slack delivery)."
    )
    stacks = [s["StackName"] for s in cloudformation.list_stacks()["StackSummaries"]]
    assert "partial-chat-stack" not in stacks


def test_a_dashboard_putdashboard_refuses_fails_the_stack_and_creates_nothing(stand_in: Aws) -> None:
    cloudformation = stand_in.client("cloudformation")

    def template(widget: dict[str, Any]) -> str:
        dashboard = {"DashboardName": "probe", "DashboardBody": json.dumps({"widgets": [widget]})}
        return json.dumps(
            {"Resources": {"Board": {"Type": "AWS::CloudWatch::Dashboard", "Properties": dashboard}}}
        )

    with pytest.raises(ClientError) as refused:
        cloudformation.create_stack(StackName="bad-dashboard", TemplateBody=template({**WIDGET, "width": 25}))
    message = refused.value.response["Error"]["Message"]
    assert "Board: InvalidParameterInput: The dashboard body is invalid" in message
    assert "/widgets/0/width" in message
    names = [d["DashboardName"] for d in stand_in.client("cloudwatch").list_dashboards()["DashboardEntries"]]
    assert "probe" not in names
    cloudformation.create_stack(StackName="good-dashboard", TemplateBody=template(WIDGET))
    assert json.loads(
        stand_in.client("cloudwatch").get_dashboard(DashboardName="probe")["DashboardBody"]
    ) == {"widgets": [WIDGET]}


# ---------------------------------------------------------------- chat delivery, read as data
def evaluate(node: Any, values: dict[str, str]) -> bool:
    """A condition (or a rule's assertion) of the template for these parameter values."""
    ((function, arguments),) = node.items()
    match function:
        case "Fn::Equals":  # CloudFormation passes every parameter value on as a string
            return str(resolve(arguments[0], values)) == str(resolve(arguments[1], values))
        case "Fn::Not":
            return not evaluate(arguments[0], values)
        case "Fn::And":
            return all(evaluate(argument, values) for argument in arguments)
        case "Fn::Or":
            return any(evaluate(argument, values) for argument in arguments)
        case "Condition":
            return evaluate(TEMPLATE["Conditions"][arguments], values)
    raise AssertionError(f"no evaluation for {function}")


def chat_resources(values: dict[str, str]) -> set[str]:
    return {
        logical
        for logical, resource in TEMPLATE["Resources"].items()
        if "Condition" in resource
        and evaluate({"Condition": resource["Condition"]}, values)
        and resource["Condition"] in {"HasChat", "HasSlack", "HasTeams"}
    }


def rules_broken(values: dict[str, str]) -> list[str]:
    """The AssertDescription of each rule whose assertion fails (CloudFormation then creates nothing)."""
    return [
        assertion["AssertDescription"]
        for rule in TEMPLATE["Rules"].values()
        if "RuleCondition" not in rule or evaluate(rule["RuleCondition"], values)
        for assertion in rule["Assertions"]
        if not evaluate(assertion["Assert"], values)
    ]


@pytest.mark.parametrize(
    ("given", "created"),
    [
        ({}, set()),
        (SLACK, {"ChatNotificationsPolicy", "ChatRole", "SlackChannel"}),
        (TEAMS, {"ChatNotificationsPolicy", "ChatRole", "TeamsChannel"}),
        ({**SLACK, **TEAMS}, set(CHAT_RESOURCES)),
    ],
)
def test_chat_resources_follow_the_channel_parameters(given: dict[str, str], created: set[str]) -> None:
    values = parameters(**given)
    assert rules_broken(values) == []
    assert chat_resources(values) == created
    assert {
        logical: TEMPLATE["Resources"][logical]["Condition"] for logical in CHAT_RESOURCES
    } == CHAT_RESOURCES
    for name, value in given.items():
        assert check_value(name, TEMPLATE["Parameters"][name], value) is None


@pytest.mark.parametrize(
    "given",
    [
        {"SlackWorkspaceId": "T0123ABCD"},
        {"SlackChannelId": "C0123ABCD"},
        {"TeamsTenantId": TEAMS["TeamsTenantId"], "TeamsChannelId": TEAMS["TeamsChannelId"]},
    ],
)
def test_a_partial_channel_is_refused_before_anything_is_created(given: dict[str, str]) -> None:
    (broken,) = rules_broken(parameters(**given))
    assert "together" in broken


@pytest.mark.parametrize(
    ("name", "value"),
    [("SlackWorkspaceId", "t0123abcd"), ("SlackChannelId", "#deploys"), ("TeamsTenantId", "not-a-guid"),
     ("TeamsChannelId", "19:abc@thread.tacv2")],
)  # fmt: skip
def test_malformed_channel_ids_are_refused_by_their_parameter(name: str, value: str) -> None:
    assert check_value(name, TEMPLATE["Parameters"][name], value) is not None


def test_the_channel_reads_only_cloudwatch_and_is_its_own_guardrail_on_both_topics() -> None:
    resources = TEMPLATE["Resources"]
    policy = resources["ChatNotificationsPolicy"]["Properties"]["PolicyDocument"]
    granted = [action for statement in policy["Statement"] for action in statement["Action"]]
    assert all(re.fullmatch(r"cloudwatch:(Describe|Get|List)\w+", action) for action in granted), granted
    assert resources["ChatRole"]["Properties"]["ManagedPolicyArns"] == [{"Ref": "ChatNotificationsPolicy"}]
    for channel in ("SlackChannel", "TeamsChannel"):
        properties = resources[channel]["Properties"]
        # Without GuardrailPolicies the channel's guardrail is AdministratorAccess.
        assert properties["GuardrailPolicies"] == [{"Ref": "ChatNotificationsPolicy"}]
        assert properties["IamRoleArn"] == {"Fn::GetAtt": "ChatRole.Arn"}
        assert properties["SnsTopicArns"] == [{"Ref": "NotificationsTopic"}, {"Ref": "AlarmsTopic"}]
        assert properties["UserRoleRequired"] is False


def test_the_operator_page_is_linked_from_the_readme() -> None:
    assert Path(ROOT / "docs" / "dashboard.md").is_file()
    assert "(docs/dashboard.md)" in (ROOT / "README.md").read_text()

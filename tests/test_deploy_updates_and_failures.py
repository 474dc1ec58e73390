"""`make deploy` on stacks that exist, and how `make deploy` / `make destroy` fail.

- Updates of ecs-cluster-stack (moto server, `make deploy` run twice): a change CloudFormation cannot make to
  the CODE_DEPLOY service (a create-time parameter, or the template's Service / TaskDefinition definition) is
  refused before anything is touched, naming each parameter and what to do instead; other changes update.
- Progress and failures (botocore's Stubber: moto records only stack-level events and never fails a stack):
  each new event of the operation is printed once, in order, poll after poll, until botocore's waiter says the
  stack is done, then its time; a stack that fails to create or delete ends the command with one line - stack,
  status, the first failed resource's reason of that operation - and exit code 1; an unreachable endpoint and
  missing credentials are one line too; never a traceback.
- The GitHub connection check before the pipeline stack is created (Stubber; moto lacks the service).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from scripts import deploy, stacks
from tests.commands import clean_env, make, moto_endpoint, own_stderr, run

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS:UserWarning")

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
REGION = "eu-central-1"
CONNECTION_ARN = (
    "arn:aws:codestar-connections:us-east-1:123456789012:connection/0e1d2c3b-aaaa-bbbb-cccc-000000000001"
)
STACKS = tuple(stack.name for stack in stacks.STACKS)


def _client(endpoint: str, service: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client(service, endpoint_url=endpoint)


def _make_deploy(endpoint: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION)
    return make("deploy", env, GITHUB_REPO="me/repo", GITHUB_CONNECTION_ARN=CONNECTION_ARN, **variables)


def _snapshot(endpoint: str) -> dict[str, Any]:
    """Each stack's status, parameters and number of events: any stack operation changes one of them."""
    cfn = _client(endpoint, "cloudformation")
    state = {}
    for stack in STACKS:
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
        state[stack] = (described["StackStatus"], parameters, len(events))
    return state


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture(scope="module")
def deployed(endpoint: str) -> subprocess.CompletedProcess[str]:
    """The three stacks, created once by `make deploy` with the defaults."""
    result = _make_deploy(endpoint)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


# ---------------------------------------------------------------- stack updates of the CODE_DEPLOY service
def test_the_create_time_parameters_are_those_that_reach_the_service_or_its_task_definition() -> None:
    parameters, conditions = deploy.create_time_scope(stacks.load_template("ecs-cluster.yaml"))
    assert set(parameters) == {
        "ProjectName",
        "Environment",
        "ServiceName",
        "InitialImage",
        "DesiredCount",
        "EnableNatGateway",
        "VpcCidr",  # through the subnets and security group the service refers to (VPC replaced)
    }
    assert set(conditions) == {"UseNat", "UsePlaceholderImage"}


def test_make_deploy_says_it_skips_the_connection_check_where_the_endpoint_lacks_the_service(
    deployed: subprocess.CompletedProcess[str],
) -> None:
    assert "GitHub connection status not checked" in deployed.stdout
    assert "does not implement codestar-connections GetConnection" in deployed.stdout


def test_a_desired_count_change_is_refused_with_the_scaling_command_and_nothing_changes(
    deployed: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    before = _snapshot(endpoint)
    result = _make_deploy(endpoint, DESIRED_COUNT="3")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "nothing was deployed: updating ecs-cluster-stack" in result.stderr
    assert "DESIRED_COUNT='3' but the deployed DesiredCount is '2'" in result.stderr
    assert (
        "aws ecs update-service --cluster phoenix-dev-cluster --service phoenix-dev-sample-app "
        "--desired-count 3" in result.stderr
    )
    assert "updating" not in result.stdout  # no stack operation was started
    assert _snapshot(endpoint) == before


def test_every_create_time_parameter_that_differs_is_named_with_what_to_do(
    deployed: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    before = _snapshot(endpoint)
    result = _make_deploy(
        endpoint,
        ENABLE_NAT_GATEWAY="false",
        INITIAL_IMAGE="public.ecr.aws/nginx/nginx:stable",
        SERVICE_NAME="other-app",
        ALLOWED_CIDR="10.0.0.0/8",
    )
    assert result.returncode != 0
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 3, result.stderr
    text = "\n".join(problems)
    assert "ENABLE_NAT_GATEWAY='false' but the deployed EnableNatGateway is 'true'" in text
    assert "INITIAL_IMAGE='public.ecr.aws/nginx/nginx:stable'" in text
    assert "make ship-fix" in text
    assert "SERVICE_NAME='other-app'" in text
    assert "leave INITIAL_IMAGE unset" in text
    assert "ALLOWED_CIDR" not in result.stderr  # not create-time: it alone would update
    assert _snapshot(endpoint) == before


def test_a_changed_service_or_task_definition_in_the_template_is_refused(
    deployed: subprocess.CompletedProcess[str],
    endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The deployed templates, with the service's grace period and the task definition's memory edited.
    for template in (ROOT / "cloudformation").glob("*.yaml"):
        shutil.copy(template, tmp_path / template.name)
    cfn = _client(endpoint, "cloudformation")
    deployed_body = cfn.get_template(StackName="ecs-cluster-stack")["TemplateBody"]
    assert isinstance(deployed_body, str)
    assert "HealthCheckGracePeriodSeconds: 60" in deployed_body
    assert 'Memory: "512"' in deployed_body
    edited = deployed_body.replace("HealthCheckGracePeriodSeconds: 60", "HealthCheckGracePeriodSeconds: 120")
    (tmp_path / "ecs-cluster.yaml").write_text(edited.replace('Memory: "512"', 'Memory: "1024"'))
    monkeypatch.setattr(deploy, "TEMPLATES", tmp_path)
    for key, value in clean_env(AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GITHUB_REPO", "me/repo")
    monkeypatch.setenv("GITHUB_CONNECTION_ARN", CONNECTION_ARN)
    before = _snapshot(endpoint)

    assert deploy.main(["deploy.py", "deploy"]) == 1
    err = capsys.readouterr().err
    assert "the Service resource (AWS::ECS::Service) differs from the deployed template" in err
    assert "Properties.HealthCheckGracePeriodSeconds" in err
    assert "the TaskDefinition resource (AWS::ECS::TaskDefinition) differs" in err
    assert "Properties.Memory" in err
    assert "pipeline-config/taskdef.json" in err
    assert _snapshot(endpoint) == before
    # The deployed template itself (same definitions in the short or the long form) is no change.
    assert deploy.cluster_update_problems(cfn, {}, deployed_body) == []


def test_a_change_outside_the_service_still_updates_the_stack(
    deployed: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    result = _make_deploy(endpoint, ALLOWED_CIDR="10.0.0.0/8", LOG_RETENTION_DAYS="7")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "updating ecs-cluster-stack" in result.stdout
    cfn = _client(endpoint, "cloudformation")
    stack = cfn.describe_stacks(StackName="ecs-cluster-stack")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert parameters["AllowedCidr"] == "10.0.0.0/8"
    assert parameters["LogRetentionDays"] == "7"
    assert parameters["DesiredCount"] == "2"


# ---------------------------------------------------------------- failures: one line, no traceback
def _stack(status: str, outputs: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "ecs-cluster-stack",
                "StackId": "arn:aws:cloudformation:eu-central-1:123456789012:stack/ecs-cluster-stack/1",
                "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
                "StackStatus": status,
                "Outputs": outputs or [],
            }
        ]
    }


STACK_ID = "arn:aws:cloudformation:eu-central-1:123456789012:stack/ecs-cluster-stack/1"


def _events(*events: tuple[str, str, str, str], older: int = 0) -> dict[str, Any]:
    """(logical id, type, status, reason), newest first, as DescribeStackEvents answers; `older` events
    exist before these. An event's id and time follow its place counted from the oldest, so one event is
    the same in every answer that holds it."""
    start = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    count = len(events) + older
    return {
        "StackEvents": [
            {
                "StackId": STACK_ID,
                "EventId": f"e{count - index}",
                "StackName": "ecs-cluster-stack",
                "LogicalResourceId": logical,
                "ResourceType": kind,
                "Timestamp": start + timedelta(seconds=count - index),
                "ResourceStatus": status,
                **({"ResourceStatusReason": reason} if reason else {}),
            }
            for index, (logical, kind, status, reason) in enumerate(events)
        ]
    }


STACK = "AWS::CloudFormation::Stack"
MISSING = ("ValidationError", "Stack with id {} does not exist")


class _Session:
    """boto3.session.Session stand-in handing out the given (stubbed) clients."""

    def __init__(self, clients: dict[str, Any], region_name: str | None = REGION, **_: Any) -> None:
        self._clients = clients
        self.region_name = region_name

    def client(self, service: str, **_: Any) -> Any:
        return self._clients[service]


def _cfn() -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("cloudformation")


def test_a_stack_that_fails_to_delete_ends_make_destroy_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfn = _cfn()
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", _stack("CREATE_COMPLETE"))
        bucket = [{"OutputKey": "ArtifactBucketName", "OutputValue": "bucket-1"}]
        stub.add_response("describe_stacks", _stack("CREATE_COMPLETE", bucket))
        for stack in ("cicd-pipeline-stack", "lambda-functions-stack"):
            stub.add_client_error("describe_stacks", MISSING[0], MISSING[1].format(stack))
        stub.add_response("describe_stacks", _stack("CREATE_COMPLETE"))
        earlier = (
            ("ecs-cluster-stack", STACK, "UPDATE_COMPLETE", ""),
            ("Service", "AWS::ECS::Service", "UPDATE_FAILED", "an earlier operation's failure"),
            ("ecs-cluster-stack", STACK, "UPDATE_IN_PROGRESS", "User Initiated"),
        )
        stub.add_response("describe_stack_events", _events(*earlier), {"StackName": "ecs-cluster-stack"})
        stub.add_response("delete_stack", {})
        stub.add_response("describe_stacks", _stack("DELETE_FAILED"))  # the first poll: terminal
        stub.add_response(
            "describe_stack_events",
            _events(
                (
                    "ecs-cluster-stack",
                    STACK,
                    "DELETE_FAILED",
                    "The following resource(s) failed to delete: [A]",
                ),
                ("Vpc", "AWS::EC2::VPC", "DELETE_FAILED", "Resource deletion cancelled"),
                (
                    "ArtifactBucket",
                    "AWS::S3::Bucket",
                    "DELETE_FAILED",
                    "The bucket you tried to delete\nis not empty",
                ),
                ("Service", "AWS::ECS::Service", "DELETE_COMPLETE", ""),
                ("ecs-cluster-stack", STACK, "DELETE_IN_PROGRESS", "User Initiated"),
                *earlier,
            ),
            {"StackName": STACK_ID},  # the id: a deleted stack's events are read by its id
        )
        monkeypatch.setattr(boto3.session, "Session", lambda **kw: _Session({"cloudformation": cfn}, **kw))
        assert deploy.main(["deploy.py", "destroy"]) == 1
        stub.assert_no_pending_responses()
    captured = capsys.readouterr()
    assert captured.err == (
        "destroy: ecs-cluster-stack is DELETE_FAILED; first failure: ArtifactBucket (AWS::S3::Bucket) "
        "DELETE_FAILED: The bucket you tried to delete is not empty\n"
    )
    # The operation's events were streamed, oldest first; the earlier update's were not.
    streamed = [line for line in captured.out.splitlines() if line.startswith("deploy:   ")]
    assert [line.split("  ", 3)[-1] for line in streamed] == [
        "ecs-cluster-stack (AWS::CloudFormation::Stack) DELETE_IN_PROGRESS: User Initiated",
        "Service (AWS::ECS::Service) DELETE_COMPLETE",
        "ArtifactBucket (AWS::S3::Bucket) DELETE_FAILED: The bucket you tried to delete is not empty",
        "Vpc (AWS::EC2::VPC) DELETE_FAILED: Resource deletion cancelled",
        "ecs-cluster-stack (AWS::CloudFormation::Stack) DELETE_FAILED: The following resource(s) failed to "
        "delete: [A]",
    ]
    assert "deploy: ecs-cluster-stack DELETE_FAILED after 0s" in captured.out


def test_a_stack_that_fails_to_create_is_one_line_with_the_first_failed_resource() -> None:
    cfn = _cfn()
    with Stubber(cfn) as stub:
        stub.add_client_error("describe_stacks", MISSING[0], MISSING[1].format("ecs-cluster-stack"))
        stub.add_response("create_stack", {"StackId": STACK_ID})
        stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"))  # the first poll: terminal
        stub.add_response(
            "describe_stack_events",
            _events(
                ("ecs-cluster-stack", STACK, "ROLLBACK_COMPLETE", ""),
                ("Repository", "AWS::ECR::Repository", "DELETE_COMPLETE", ""),
                ("ecs-cluster-stack", STACK, "ROLLBACK_IN_PROGRESS", "The following resource(s) failed"),
                ("Cluster", "AWS::ECS::Cluster", "CREATE_FAILED", "Resource creation cancelled"),
                (
                    "Repository",
                    "AWS::ECR::Repository",
                    "CREATE_FAILED",
                    "phoenix-dev-sample-app already exists",
                ),
                ("Repository", "AWS::ECR::Repository", "CREATE_IN_PROGRESS", ""),
                ("ecs-cluster-stack", STACK, "CREATE_IN_PROGRESS", "User Initiated"),
            ),
        )
        with pytest.raises(deploy.DeployError) as raised:
            deploy.apply_stack(cfn, "ecs-cluster-stack", "ecs-cluster.yaml", {})
        stub.assert_no_pending_responses()
    assert str(raised.value) == (
        "ecs-cluster-stack is ROLLBACK_COMPLETE; first failure: Repository (AWS::ECR::Repository) "
        "CREATE_FAILED: phoenix-dev-sample-app already exists"
    )


class _Clock:
    """Polling's clock and sleep: no test waits; each sleep moves the clock on and is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def polling(self, timeout: float = 30 * 60.0) -> deploy.Polling:
        return deploy.Polling(interval=5.0, timeout=timeout, sleep=self.sleep, clock=lambda: self.now)


UPDATE_EARLIER = (
    ("ecs-cluster-stack", STACK, "CREATE_COMPLETE", ""),
    ("Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE", ""),
    ("ecs-cluster-stack", STACK, "CREATE_IN_PROGRESS", "User Initiated"),
)


def test_an_update_streams_each_new_event_once_in_order_until_the_waiter_says_complete(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfn, clock = _cfn(), _Clock()
    first = (
        ("AlbSecurityGroup", "AWS::EC2::SecurityGroup", "UPDATE_IN_PROGRESS", ""),
        ("ecs-cluster-stack", STACK, "UPDATE_IN_PROGRESS", "User Initiated"),
    )
    second = (
        ("ecs-cluster-stack", STACK, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", ""),
        ("AlbSecurityGroup", "AWS::EC2::SecurityGroup", "UPDATE_COMPLETE", ""),
    )
    last = (("ecs-cluster-stack", STACK, "UPDATE_COMPLETE", ""),)
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", _stack("CREATE_COMPLETE"))
        stub.add_response("describe_stack_events", _events(*UPDATE_EARLIER))
        stub.add_response("update_stack", {"StackId": STACK_ID})
        # Poll 1: in progress, two new events; poll 2: two more (the page still holds the earlier ones);
        # poll 3: nothing new, still in progress; poll 4: complete, with its event.
        stub.add_response("describe_stacks", _stack("UPDATE_IN_PROGRESS"))
        stub.add_response("describe_stack_events", _events(*first, *UPDATE_EARLIER))
        stub.add_response("describe_stacks", _stack("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"))
        stub.add_response("describe_stack_events", _events(*second, *first, *UPDATE_EARLIER))
        stub.add_response("describe_stacks", _stack("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"))
        stub.add_response("describe_stack_events", _events(*second, *first, *UPDATE_EARLIER))
        stub.add_response("describe_stacks", _stack("UPDATE_COMPLETE"))
        stub.add_response("describe_stack_events", _events(*last, *second, *first, *UPDATE_EARLIER))
        deploy.apply_stack(cfn, "ecs-cluster-stack", "ecs-cluster.yaml", {}, polling=clock.polling())
        stub.assert_no_pending_responses()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "deploy: updating ecs-cluster-stack (CREATE_COMPLETE)"
    stack, group = (
        "ecs-cluster-stack (AWS::CloudFormation::Stack)",
        "AlbSecurityGroup (AWS::EC2::SecurityGroup)",
    )
    assert out[1:] == [
        f"deploy:   10:00:04  {stack} UPDATE_IN_PROGRESS: User Initiated",
        f"deploy:   10:00:05  {group} UPDATE_IN_PROGRESS",
        f"deploy:   10:00:06  {group} UPDATE_COMPLETE",
        f"deploy:   10:00:07  {stack} UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        f"deploy:   10:00:08  {stack} UPDATE_COMPLETE",
        "deploy: ecs-cluster-stack UPDATE_COMPLETE in 15s",
    ]
    assert clock.slept == [5.0, 5.0, 5.0]


def test_a_stack_still_in_progress_after_the_timeout_is_one_line_with_what_failed_so_far() -> None:
    cfn, clock = _cfn(), _Clock()
    in_progress = (
        ("Service", "AWS::ECS::Service", "CREATE_FAILED", "Service did not stabilize"),
        ("ecs-cluster-stack", STACK, "CREATE_IN_PROGRESS", "User Initiated"),
    )
    with Stubber(cfn) as stub:
        stub.add_client_error("describe_stacks", MISSING[0], MISSING[1].format("ecs-cluster-stack"))
        stub.add_response("create_stack", {"StackId": STACK_ID})
        for _ in range(3):  # at 0, 5 and 10 s; the timeout is 10 s
            stub.add_response("describe_stacks", _stack("ROLLBACK_IN_PROGRESS"))
            stub.add_response("describe_stack_events", _events(*in_progress))
        with pytest.raises(deploy.DeployError) as raised:
            deploy.apply_stack(cfn, "ecs-cluster-stack", "ecs-cluster.yaml", {}, polling=clock.polling(10.0))
        stub.assert_no_pending_responses()
    assert str(raised.value) == (
        "ecs-cluster-stack is still ROLLBACK_IN_PROGRESS after 10s; first failure: "
        "Service (AWS::ECS::Service) CREATE_FAILED: Service did not stabilize"
    )


def test_an_error_the_waiter_does_not_expect_ends_the_wait_with_one_line() -> None:
    cfn, clock = _cfn(), _Clock()
    with Stubber(cfn) as stub:
        stub.add_client_error("describe_stacks", MISSING[0], MISSING[1].format("ecs-cluster-stack"))
        stub.add_response("create_stack", {"StackId": STACK_ID})
        stub.add_client_error("describe_stacks", "AccessDenied", "not authorized to DescribeStacks")
        stub.add_response(
            "describe_stack_events", _events(("ecs-cluster-stack", STACK, "CREATE_IN_PROGRESS", ""))
        )
        with pytest.raises(deploy.DeployError) as raised:
            deploy.apply_stack(cfn, "ecs-cluster-stack", "ecs-cluster.yaml", {}, polling=clock.polling())
        stub.assert_no_pending_responses()
    assert str(raised.value) == (
        "ecs-cluster-stack is unreadable (not authorized to DescribeStacks); no failed resource in its events"
    )
    assert clock.slept == []


def test_a_deleted_stack_counts_as_deleted_when_its_name_is_no_longer_known(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfn, clock = _cfn(), _Clock()
    with Stubber(cfn) as stub:
        stub.add_response("describe_stack_events", _events(*UPDATE_EARLIER))
        stub.add_response("delete_stack", {})
        stub.add_response("describe_stacks", _stack("DELETE_IN_PROGRESS"))
        deleting = (("ecs-cluster-stack", STACK, "DELETE_IN_PROGRESS", "User Initiated"),)
        stub.add_response("describe_stack_events", _events(*deleting, *UPDATE_EARLIER))
        # botocore's stack_delete_complete: ValidationError (the name is gone) is success.
        stub.add_client_error("describe_stacks", MISSING[0], MISSING[1].format("ecs-cluster-stack"))
        done = (("ecs-cluster-stack", STACK, "DELETE_COMPLETE", ""),)
        stub.add_response("describe_stack_events", _events(*done, *deleting, *UPDATE_EARLIER))
        deploy.delete_stack(cfn, "ecs-cluster-stack", clock.polling())
        stub.assert_no_pending_responses()
    out = capsys.readouterr().out
    assert out.count("DELETE_IN_PROGRESS") == 1
    assert out.endswith("deploy: ecs-cluster-stack DELETE_COMPLETE in 5s\n")


@pytest.mark.parametrize(
    "dashboard", ["https://console.aws.amazon.com/cloudwatch/home#dashboards:name=d", None]
)
def test_make_deploy_ends_with_the_dashboard_url_only_when_the_lambda_stack_has_one(
    dashboard: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    cfn = _cfn()
    production = [{"OutputKey": "ProductionUrl", "OutputValue": "http://alb.example"}]
    lambda_outputs = [{"OutputKey": "NotificationsTopicArn", "OutputValue": "arn:aws:sns:x"}]
    if dashboard:
        lambda_outputs.append({"OutputKey": "DashboardUrl", "OutputValue": dashboard})
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", _stack("CREATE_COMPLETE", production))
        stub.add_response(
            "describe_stacks",
            _stack("CREATE_COMPLETE", lambda_outputs),
            {"StackName": "lambda-functions-stack"},
        )
        deploy.say_done(cfn, deploy.Names())
    out = capsys.readouterr().out
    assert "deploy: done: the application answers on http://alb.example" in out
    if dashboard:
        assert f"deploy: dashboard: {dashboard}\n" in out
    else:
        assert "dashboard" not in out


def _run_script(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run([str(PYTHON), "scripts/deploy.py", command], env, timeout=120)


def test_an_unreachable_endpoint_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = _run_script(
        "destroy", **clean_env(AWS_ENDPOINT_URL=refused, AWS_REGION=REGION, AWS_MAX_ATTEMPTS="1")
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("destroy: Could not connect to the endpoint URL")
    assert result.stderr.count("\n") == 1
    assert "check AWS_REGION, AWS_ENDPOINT_URL and the network" in result.stderr


def test_missing_credentials_are_one_line_through_make() -> None:
    env = clean_env(AWS_REGION=REGION)
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    result = make("destroy", env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert own_stderr(result) == [
        "destroy: no AWS credentials found: configure the AWS CLI (aws configure, or AWS_PROFILE) or set "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ]


# ---------------------------------------------------------------- the GitHub connection before step 4
def _connection_clients(status: str, pipeline_exists: bool) -> tuple[Any, Any, Stubber, Stubber]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    connections = session.client("codestar-connections")
    cfn = session.client("cloudformation")
    connections_stub, cfn_stub = Stubber(connections), Stubber(cfn)
    connections_stub.add_response(
        "get_connection",
        {"Connection": {"ConnectionArn": CONNECTION_ARN, "ConnectionStatus": status}},
        {"ConnectionArn": CONNECTION_ARN},
    )
    if status != "AVAILABLE":
        if pipeline_exists:
            cfn_stub.add_response("describe_stacks", _stack("CREATE_COMPLETE"))
        else:
            cfn_stub.add_client_error("describe_stacks", MISSING[0], MISSING[1].format("cicd-pipeline-stack"))
    return connections, cfn, connections_stub, cfn_stub


def test_a_pending_connection_stops_make_deploy_before_the_pipeline_is_created() -> None:
    connections, cfn, connections_stub, cfn_stub = _connection_clients("PENDING", pipeline_exists=False)
    with connections_stub, cfn_stub, pytest.raises(deploy.DeployError) as raised:
        deploy.check_connection(
            _Session({"codestar-connections": connections}), cfn, CONNECTION_ARN, deploy.Names()
        )
    message = str(raised.value)
    assert message.startswith("nothing was deployed: the GitHub connection is PENDING, not AVAILABLE")
    assert (
        f'aws codestar-connections get-connection --connection-arn "{CONNECTION_ARN}" '
        "--query Connection.ConnectionStatus" in message
    )


def test_a_pending_connection_only_warns_when_the_pipeline_exists(capsys: pytest.CaptureFixture[str]) -> None:
    connections, cfn, connections_stub, cfn_stub = _connection_clients("PENDING", pipeline_exists=True)
    with connections_stub, cfn_stub:
        deploy.check_connection(
            _Session({"codestar-connections": connections}), cfn, CONNECTION_ARN, deploy.Names()
        )
    out = capsys.readouterr().out
    assert "warning: the GitHub connection is PENDING" in out
    assert "aws codepipeline start-pipeline-execution --name phoenix-dev-pipeline" in out


def test_an_available_connection_passes(capsys: pytest.CaptureFixture[str]) -> None:
    connections, cfn, connections_stub, cfn_stub = _connection_clients("AVAILABLE", pipeline_exists=False)
    with connections_stub, cfn_stub:
        deploy.check_connection(
            _Session({"codestar-connections": connections}), cfn, CONNECTION_ARN, deploy.Names()
        )
    assert "GitHub connection is AVAILABLE" in capsys.readouterr().out

"""The README's AWS set-up, `make deploy` and `make destroy`, run for real against one embedded moto server.

- The README test extracts the fenced `bash` blocks between `<!-- aws-setup:start -->` and
  `<!-- aws-setup:end -->` from README.md itself (blocks marked `<!-- by-hand -->` are skipped: the GitHub
  connection and the push), and runs them in order in one bash, with the real AWS CLI pointed at the server by
  `--endpoint-url`. README and test cannot drift: changing a command changes what is tested.
- `make deploy` / `make destroy` get only AWS_ENDPOINT_URL (boto3's standard setting) and run in other regions
  of the same server, so the flows do not see each other's stacks.

moto's CloudFormation does not create what moto does not implement (CodeDeploy, CodePipeline, CodeBuild,
alarms, SNS subscriptions, bucket and topic policies); everything else is asserted as created. Two gaps are
filled rather than bent around in the templates: moto's CloudFormation answers Ref and Fn::GetAtt of the
types it skips as AWS does (tests/commands.py: local/aws/cloudformation.py teaches it), so the templates refer
to their alarms, CodeDeploy and CodeBuild resources; and moto cannot delete a CloudFormation-created route
table, so its VPC could never be deleted: the fixture teaches moto to delete it, as AWS does.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.ec2.models import ec2_backends
from moto.ec2.models.route_tables import RouteTable

from scripts.deploy import LAMBDAS
from scripts.stacks import CLUSTER, LAMBDA, PIPELINE, STACKS
from tests.commands import clean_env, make, moto_endpoint

# moto says what it skips (CodeDeploy, CodePipeline, alarms, ...); the module docstring says it once.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS:UserWarning")

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
AWS_CLI = ROOT / ".venv" / "bin" / "aws"
ACCOUNT = "123456789012"
CONNECTION_ARN = (
    f"arn:aws:codestar-connections:us-east-1:{ACCOUNT}:connection/0e1d2c3b-aaaa-bbbb-cccc-000000000001"
)
SPEC_DEFAULTS = {
    "ENVIRONMENT": "dev",
    "HEALTH_CHECK_INTERVAL": "60",
    "ALARM_THRESHOLD": "2",
    "DEPLOYMENT_TIMEOUT": "900",
}
STACK_NAMES = {stack.name for stack in STACKS}


def _delete_route_table(
    cls: type[RouteTable], resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
) -> None:
    """What CloudFormation does on AWS when it deletes a stack's route table (moto 5.2.5 lacks it)."""
    backend = ec2_backends[account_id][region_name]
    table = backend.get_route_table(resource_name)
    table._associations.clear()  # the subnet associations went with their (already deleted) subnets
    backend.delete_route_table(resource_name)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            RouteTable, "delete_from_cloudformation_json", classmethod(_delete_route_table), raising=False
        )
        with moto_endpoint() as url:
            yield url


def _client(endpoint: str, service: str, region: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    ).client(service, endpoint_url=endpoint)


def readme_setup_blocks() -> list[tuple[bool, str]]:
    """(run by this test?, commands) for each bash block of the README's AWS set-up, in order."""
    text = README.read_text()
    section = text.split("<!-- aws-setup:start -->", 1)[1].split("<!-- aws-setup:end -->", 1)[0]
    blocks = re.findall(r"(<!-- by-hand -->\s*)?```bash\n(.*?)```", section, flags=re.S)
    return [(not marker, body) for marker, body in blocks]


def readme_block(marker: str) -> str:
    """The one bash block between <!-- <marker>:start --> and <!-- <marker>:end -->."""
    section = README.read_text().split(f"<!-- {marker}:start -->", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
    bodies: list[str] = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(bodies) == 1, f"{marker}: expected one bash block"
    return bodies[0]


def _readme_script(endpoint: str, bodies: list[str]) -> list[str]:
    return [
        "bash",
        "-c",
        "\n".join(
            [
                "set -euo pipefail",
                # The real AWS CLI, pointed at the stand-in (the README's commands stay as users type them).
                f'aws() {{ "{AWS_CLI}" --endpoint-url "{endpoint}" "$@"; }}',
                # What step 3 (by hand: authorise a GitHub connection in the console) gives the user.
                f"CONNECTION_ARN={CONNECTION_ARN}",
                *bodies,
            ]
        ),
    ]


def _make(target: str, endpoint: str, region: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """`make <target>` as a user runs it, with the endpoint given the standard way."""
    return make(target, clean_env(AWS_ENDPOINT_URL=endpoint, AWS_REGION=region), **variables)


def _stacks(endpoint: str, region: str) -> dict[str, str]:
    cfn = _client(endpoint, "cloudformation", region)
    return {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}


def _exports(endpoint: str, region: str) -> dict[str, str]:
    cfn = _client(endpoint, "cloudformation", region)
    return {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}


def _stack_outputs(endpoint: str, region: str, stack: str) -> dict[str, str]:
    cfn = _client(endpoint, "cloudformation", region)
    return {
        o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    }


def _streamed(stdout: str, stack: str) -> list[str]:
    """The statuses (and reasons) of the stack-level event lines `make deploy` printed for `stack`."""
    pattern = rf"^deploy:   \d\d:\d\d:\d\d  {stack} \(AWS::CloudFormation::Stack\) (.*)$"
    return re.findall(pattern, stdout, flags=re.M)


def _function_env(endpoint: str, region: str, name: str) -> dict[str, str]:
    config = _client(endpoint, "lambda", region).get_function_configuration(FunctionName=name)
    variables: dict[str, str] = config["Environment"]["Variables"]
    return variables


def _load_config(module: str, variables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Lambda module's own configuration check (`load_config(env)`), run on the environment the stack gave
    the function."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    spec = importlib.util.spec_from_file_location(f"deployed_{module}", ROOT / "lambdas" / f"{module}.py")
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    try:
        spec.loader.exec_module(loaded)
    finally:
        del sys.modules[spec.name]
    return loaded.load_config(variables)


# ---------------------------------------------------------------- the README, verbatim
@pytest.fixture(scope="module")
def readme_deployment(endpoint: str) -> subprocess.CompletedProcess[str]:
    """Runs the README's set-up blocks once; tests below inspect what they created (region us-east-1)."""
    blocks = readme_setup_blocks()
    script = _readme_script(endpoint, [body for run, body in blocks if run])
    return subprocess.run(
        script, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=300, check=False
    )


def test_the_readme_has_the_setup_steps_and_only_the_manual_ones_are_skipped() -> None:
    blocks = readme_setup_blocks()
    skipped = [body for run, body in blocks if not run]
    assert len(skipped) == 2
    assert "codestar-connections create-connection" in skipped[0]
    assert "git push" in skipped[1]
    commands = "\n".join(body for run, body in blocks if run)
    assert [m.group(1) for m in re.finditer(r"create-stack --stack-name (\S+)", commands)] == [
        stack.name for stack in STACKS
    ]
    assert commands.count("wait stack-create-complete") == 3
    assert commands.count("--tags Key=Project,Value=phoenix Key=Environment,Value=dev") == 3


def test_the_readme_commands_create_the_three_stacks(
    readme_deployment: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    assert readme_deployment.returncode == 0, readme_deployment.stderr[-3000:]
    assert _stacks(endpoint, "us-east-1") == dict.fromkeys(STACK_NAMES, "CREATE_COMPLETE")
    cfn = _client(endpoint, "cloudformation", "us-east-1")
    for stack in cfn.describe_stacks()["Stacks"]:
        assert {t["Key"]: t["Value"] for t in stack["Tags"]} == {"Project": "phoenix", "Environment": "dev"}


def test_every_imported_export_exists(
    readme_deployment: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    assert readme_deployment.returncode == 0
    exports = _exports(endpoint, "us-east-1")
    stacks = {"ClusterStackName": CLUSTER.name, "LambdaStackName": LAMBDA.name}
    for template in (LAMBDA.template, PIPELINE.template):
        text = (ROOT / "cloudformation" / template).read_text()
        for parameter, output in re.findall(r'Fn::ImportValue": !Sub "\$\{(\w+)\}-(\w+)"', text):
            name = f"{stacks[parameter]}-{output}"
            assert exports.get(name), f"{template} imports {name}, which no stack exports"
    assert exports[CLUSTER.export("LoadBalancerFullName")].startswith("app/phoenix-dev-alb/")
    assert exports[CLUSTER.export("BlueTargetGroupFullName")].startswith("targetgroup/phoenix-dev-blue/")
    # Outputs that refer to resources moto's CloudFormation does not implement: Ref as on AWS.
    assert exports[LAMBDA.export("HealthCheckAlarmName")] == "phoenix-dev-health-check-failed"
    assert exports[PIPELINE.export("DeploymentGroupName")] == "phoenix-dev-sample-app"
    assert exports[PIPELINE.export("PipelineName")] == "phoenix-dev-pipeline"


def test_listeners_forward_to_the_blue_target_group_and_both_groups_check_health(
    readme_deployment: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    assert readme_deployment.returncode == 0
    elb = _client(endpoint, "elbv2", "us-east-1")
    (alb,) = elb.describe_load_balancers(Names=["phoenix-dev-alb"])["LoadBalancers"]
    assert alb["Scheme"] == "internet-facing"
    groups = {g["TargetGroupName"]: g for g in elb.describe_target_groups()["TargetGroups"]}
    assert set(groups) == {"phoenix-dev-blue", "phoenix-dev-green"}
    for group in groups.values():
        assert (group["TargetType"], group["Protocol"], group["Port"]) == ("ip", "HTTP", 8080)
        assert group["HealthCheckPath"] == "/health"
    listeners = elb.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
    forward = {
        listener["Port"]: [a["TargetGroupArn"] for a in listener["DefaultActions"] if a["Type"] == "forward"]
        for listener in listeners
    }
    assert forward == {
        80: [groups["phoenix-dev-blue"]["TargetGroupArn"]],
        8080: [groups["phoenix-dev-blue"]["TargetGroupArn"]],
    }
    exports = _exports(endpoint, "us-east-1")
    by_port = {listener["Port"]: listener["ListenerArn"] for listener in listeners}
    assert exports[CLUSTER.export("ProductionListenerArn")] == by_port[80]
    assert exports[CLUSTER.export("TestListenerArn")] == by_port[8080]


def test_the_service_runs_the_first_task_definition_in_the_cluster(
    readme_deployment: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    assert readme_deployment.returncode == 0
    ecs = _client(endpoint, "ecs", "us-east-1")
    (service,) = ecs.describe_services(cluster="phoenix-dev-cluster", services=["phoenix-dev-sample-app"])[
        "services"
    ]
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    assert definition["family"] == "phoenix-dev-sample-app"
    (container,) = definition["containerDefinitions"]
    assert container["name"] == "sample-app"
    assert container["image"].startswith("public.ecr.aws/")  # the placeholder: ECR is still empty
    repository = _client(endpoint, "ecr", "us-east-1").describe_repositories(
        repositoryNames=["phoenix-dev-sample-app"]
    )
    assert repository["repositories"][0]["imageTagMutability"] == "IMMUTABLE"


@pytest.mark.parametrize(
    ("function", "module"),
    [("phoenix-dev-health-check", "health_check"), ("phoenix-dev-auto-rollback", "auto_rollback")],
)
def test_functions_carry_the_four_parameters_and_a_configuration_their_code_accepts(
    readme_deployment: subprocess.CompletedProcess[str],
    endpoint: str,
    function: str,
    module: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert readme_deployment.returncode == 0
    variables = _function_env(endpoint, "us-east-1", function)
    assert {k: variables[k] for k in SPEC_DEFAULTS} == SPEC_DEFAULTS
    config = _load_config(module, variables, monkeypatch)
    assert config.service.environment == "dev"
    assert config.service.health_check_interval == 60
    assert config.service.deployment_group == "phoenix-dev-sample-app"
    code = _client(endpoint, "lambda", "us-east-1").get_function(FunctionName=function)
    assert code["Configuration"]["Handler"] == f"{module}.lambda_handler"


def test_the_health_check_is_scheduled_and_probes_the_stack_listeners_from_the_private_subnets(
    readme_deployment: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    assert readme_deployment.returncode == 0
    variables = _function_env(endpoint, "us-east-1", "phoenix-dev-health-check")
    exports = _exports(endpoint, "us-east-1")
    assert variables["PRODUCTION_URL"] == exports[CLUSTER.export("ProductionUrl")]
    assert variables["TEST_URL"] == exports[CLUSTER.export("TestUrl")]
    assert variables["TEST_URL"].endswith(":8080")
    config = _client(endpoint, "lambda", "us-east-1").get_function_configuration(
        FunctionName="phoenix-dev-health-check"
    )
    assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(
        exports[CLUSTER.export("PrivateSubnetIds")].split(",")
    )
    events = _client(endpoint, "events", "us-east-1")
    rule = events.describe_rule(Name="phoenix-dev-health-check")
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    (target,) = events.list_targets_by_rule(Rule="phoenix-dev-health-check")["Targets"]
    assert target["Arn"] == config["FunctionArn"]


def test_the_auto_rollback_function_is_serialised_and_knows_its_alarms_and_topic(
    readme_deployment: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    assert readme_deployment.returncode == 0
    lam = _client(endpoint, "lambda", "us-east-1")
    variables = _function_env(endpoint, "us-east-1", "phoenix-dev-auto-rollback")
    assert variables["ALARM_NAMES"].split(",") == [
        "phoenix-dev-health-check-failed",
        "phoenix-dev-blue-5xx-rate",
        "phoenix-dev-green-5xx-rate",
        "phoenix-dev-blue-latency-p95",
        "phoenix-dev-green-latency-p95",
        "phoenix-dev-deployment-overdue",
        "phoenix-dev-canary-judge",
    ]
    assert variables["DEPLOYMENT_TIMEOUT_ALARM_NAME"] == "phoenix-dev-deployment-overdue"
    topics = [t["TopicArn"] for t in _client(endpoint, "sns", "us-east-1").list_topics()["Topics"]]
    assert variables["NOTIFICATIONS_TOPIC_ARN"] in topics
    assert any(t.endswith(":phoenix-dev-alarms") for t in topics)
    # moto does not keep DeadLetterConfig (tests/test_templates.py checks it); the queue itself exists.
    sqs = _client(endpoint, "sqs", "us-east-1")
    queue = sqs.get_queue_url(QueueName="phoenix-dev-lambda-dlq")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["KmsMasterKeyId"] == "alias/aws/sqs"
    assert (
        lam.get_function_concurrency(FunctionName="phoenix-dev-auto-rollback")["ReservedConcurrentExecutions"]
        == 1
    )


def test_the_lambda_code_is_in_the_cluster_stacks_artifact_bucket(
    readme_deployment: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    assert readme_deployment.returncode == 0
    outputs = _stack_outputs(endpoint, "us-east-1", CLUSTER.name)
    s3 = _client(endpoint, "s3", "us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=outputs["ArtifactBucketName"])["Contents"]}
    assert keys == {f"{name}.zip" for name in LAMBDAS}  # every function's code, as the README uploads it
    pipeline = _stack_outputs(endpoint, "us-east-1", PIPELINE.name)
    assert pipeline["ArtifactBucketName"] == outputs["ArtifactBucketName"]
    assert pipeline["DeploymentGroupName"] == "phoenix-dev-sample-app"


# ---------------------------------------------------------------- make deploy / make destroy
def test_make_deploy_stops_on_wrong_or_missing_parameters_before_touching_anything(endpoint: str) -> None:
    s3 = _client(endpoint, "s3", "eu-west-1")
    buckets_before = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    result = _make(
        "deploy", endpoint, "eu-west-1", ENVIRONMENT="qa", HEALTH_CHECK_INTERVAL="45", GITHUB_REPO="me/repo"
    )
    assert result.returncode != 0
    assert "nothing was deployed" in result.stderr
    assert "ENVIRONMENT='qa' is not one of dev, staging, prod" in result.stderr
    assert "HEALTH_CHECK_INTERVAL='45' is not one of 60, 120, 180, 300, 600" in result.stderr
    assert "GITHUB_CONNECTION_ARN is required" in result.stderr
    assert _stacks(endpoint, "eu-west-1") == {}
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == buckets_before


def test_make_deploy_then_make_destroy_against_the_endpoint(endpoint: str) -> None:
    region = "us-west-2"
    deployed = _make(
        "deploy",
        endpoint,
        region,
        ENVIRONMENT="staging",
        HEALTH_CHECK_INTERVAL="120",
        ALARM_THRESHOLD="3",
        GITHUB_REPO="me/repo",
        GITHUB_CONNECTION_ARN=CONNECTION_ARN,
    )
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-3000:]
    assert _stacks(endpoint, region) == dict.fromkeys(STACK_NAMES, "CREATE_COMPLETE")
    for stack in _client(endpoint, "cloudformation", region).describe_stacks()["Stacks"]:
        tags = {t["Key"]: t["Value"] for t in stack["Tags"]}
        assert tags == {"Project": "phoenix", "Environment": "staging"}
    variables = _function_env(endpoint, region, "phoenix-staging-health-check")
    assert {k: variables[k] for k in SPEC_DEFAULTS} == {
        "ENVIRONMENT": "staging",
        "HEALTH_CHECK_INTERVAL": "120",
        "ALARM_THRESHOLD": "3",
        "DEPLOYMENT_TIMEOUT": "900",
    }
    rule = _client(endpoint, "events", region).describe_rule(Name="phoenix-staging-health-check")
    assert rule["ScheduleExpression"] == "rate(2 minutes)"
    # Each stack's events streamed once, in order (moto records the stack-level ones), then its time.
    for stack in STACK_NAMES:
        assert _streamed(deployed.stdout, stack) == [
            "CREATE_IN_PROGRESS: User Initiated",
            "CREATE_COMPLETE",
        ]
        assert re.search(rf"^deploy: {stack} CREATE_COMPLETE in \d+s$", deployed.stdout, flags=re.M)
    dashboard = _stack_outputs(endpoint, region, LAMBDA.name).get("DashboardUrl")
    if dashboard:  # the lambda stack's output, printed at the end when the template has it
        assert f"deploy: dashboard: {dashboard}" in deployed.stdout
    else:
        assert "dashboard" not in deployed.stdout

    destroyed = _make("destroy", endpoint, region, ENVIRONMENT="staging", PURGE="true")
    assert destroyed.returncode == 0, destroyed.stdout[-2000:] + destroyed.stderr[-3000:]
    for stack in STACK_NAMES:  # a deleted stack's events are read by its id: the last one is shown too
        assert _streamed(destroyed.stdout, stack) == ["DELETE_IN_PROGRESS: User Initiated", "DELETE_COMPLETE"]
        assert re.search(rf"^deploy: {stack} DELETE_COMPLETE in \d+s$", destroyed.stdout, flags=re.M)
    assert _stacks(endpoint, region) == {}
    ecr = _client(endpoint, "ecr", region)
    assert ecr.describe_repositories()["repositories"] == []
    assert "deleted artifact bucket" in destroyed.stdout


# ---------------------------------------------------------------- the README's cleanup (last: it deletes)
def test_the_readme_cleanup_removes_the_stacks_and_what_they_retain(
    readme_deployment: subprocess.CompletedProcess[str], endpoint: str
) -> None:
    assert readme_deployment.returncode == 0
    settings = readme_setup_blocks()[0][1]  # step 0: AWS_REGION and friends
    script = _readme_script(endpoint, [settings, readme_block("aws-cleanup")])
    # The block's one-line python (emptying the versioned bucket) is boto3: it reads AWS_ENDPOINT_URL.
    result = subprocess.run(
        script,
        cwd=ROOT,
        env=clean_env(AWS_ENDPOINT_URL=endpoint),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _stacks(endpoint, "us-east-1") == {}
    assert _client(endpoint, "ecr", "us-east-1").describe_repositories()["repositories"] == []
    buckets = [b["Name"] for b in _client(endpoint, "s3", "us-east-1").list_buckets()["Buckets"]]
    assert not [b for b in buckets if b.startswith(f"{CLUSTER.name}-artifactbucket")]

"""The CodePipeline stand-in: stages in order, QUEUED executions one at a time, a failed action stops the
execution, pushes start executions (the connection's webhook), the API answers in botocore's shapes, and a
failed stage reaches the notifications topic through the template's EventBridge rule."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.aws.codepipeline import CodePipelineServer, CodePipelineService
from local.aws.codepipeline.actions import connect_webhooks, source_connection
from local.aws.codepipeline.connection import GitHubStandIn, git
from local.aws.codepipeline.service import ActionResult, ActionRun
from local.aws.events import EventBus
from local.aws.moto_server import Aws, moto_server
from scripts.stacks import PIPELINE, load_template

REPO = "example/app"
CONNECTION = (
    "arn:aws:codestar-connections:us-east-1:123456789012:connection/00000000-0000-4000-8000-000000000001"
)
WAIT = 20.0


def declaration(name: str = "p", bucket: str = "artifacts") -> dict[str, Any]:
    """Source (connection) -> Build -> Deploy, shaped as CloudFormation creates cicd-pipeline.yaml's."""

    def action(name: str, category: str, provider: str, inputs: list[str], outputs: list[str]) -> Any:
        return {
            "name": name,
            "actionTypeId": {"category": category, "owner": "AWS", "provider": provider, "version": "1"},
            "configuration": {
                "ConnectionArn": CONNECTION,
                "FullRepositoryId": REPO,
                "BranchName": "main",
                "OutputArtifactFormat": "CODEBUILD_CLONE_REF",
            }
            if category == "Source"
            else {"ProjectName": "build"},
            "inputArtifacts": [{"name": n} for n in inputs],
            "outputArtifacts": [{"name": n} for n in outputs],
        }

    return {
        "name": name,
        "roleArn": "arn:aws:iam::123456789012:role/pipeline",
        "pipelineType": "V2",
        "executionMode": "QUEUED",
        "artifactStore": {"type": "S3", "location": bucket},
        "stages": [
            {
                "name": "Source",
                "actions": [action("GitHub", "Source", "CodeStarSourceConnection", [], ["Src"])],
            },
            {"name": "Build", "actions": [action("Build", "Build", "CodeBuild", ["Src"], ["Out"])]},
            {"name": "Deploy", "actions": [action("Deploy", "Deploy", "CodeDeployToECS", ["Out"], [])]},
        ],
    }


class Recorder:
    """Fake Build and Deploy providers: they record their runs, and a Build can be held or failed."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, str]] = []  # (stage, execution, commit)
        self.release_build = threading.Event()
        self.release_build.set()
        self.fail_build = False

    def build(self, run: ActionRun) -> ActionResult:
        self.runs.append(("Build", run.execution_id, run.trigger.commit or ""))
        self.release_build.wait(WAIT)
        if self.fail_build:
            return ActionResult(
                "Failed", error_code="JobFailed", error_message="Build terminated with state: FAILED"
            )
        return ActionResult("Succeeded", external_id=f"build:{len(self.runs)}")

    def deploy(self, run: ActionRun) -> ActionResult:
        self.runs.append(("Deploy", run.execution_id, run.trigger.commit or ""))
        return ActionResult("Succeeded", external_id="d-TEST")


@pytest.fixture
def aws() -> Iterator[Aws]:
    with moto_server() as aws:
        aws.client("s3").create_bucket(Bucket="artifacts")
        yield aws


@pytest.fixture
def github(tmp_path: Path) -> Iterator[GitHubStandIn]:
    with GitHubStandIn(tmp_path / "github", every=0.02) as github:
        github.create_repository(REPO)
        yield github


def push(github: GitHubStandIn, work: Path, message: str) -> str:
    """Commit a change in a clone of REPO and push it; the commit id."""
    if not work.exists():
        git("clone", "--quiet", str(github.remote_url(REPO)), str(work))
    (work / "change.txt").write_text(message)
    git("add", "-A", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", message, cwd=work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


@pytest.fixture
def pipeline(aws: Aws, github: GitHubStandIn) -> Iterator[tuple[CodePipelineService, Recorder, Any]]:
    recorder = Recorder()
    service = CodePipelineService(
        {
            ("Source", "AWS", "CodeStarSourceConnection"): source_connection(github, aws.client("s3")),
            ("Build", "AWS", "CodeBuild"): recorder.build,
            ("Deploy", "AWS", "CodeDeployToECS"): recorder.deploy,
        },
        start_on_create=False,
    )
    connect_webhooks(service, github)
    with CodePipelineServer(service) as server:
        client = aws.with_endpoint("codepipeline", server.endpoint_url).client("codepipeline")
        client.create_pipeline(pipeline=declaration())
        yield service, recorder, client


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"waited {WAIT} s for {what}")


def test_a_push_starts_an_execution_that_runs_the_stages_in_order_with_the_pushed_commit(
    pipeline: tuple[CodePipelineService, Recorder, Any], github: GitHubStandIn, tmp_path: Path
) -> None:
    service, recorder, client = pipeline
    commit = push(github, tmp_path / "work", "first")
    wait_for(lambda: len(service.executions("p")) == 1, "the push's execution")
    execution = service.executions("p")[0]["pipelineExecutionId"]
    assert service.wait("p", execution, WAIT)["status"] == "Succeeded"

    summary = client.list_pipeline_executions(pipelineName="p")["pipelineExecutionSummaries"][0]
    assert summary["trigger"] == {"triggerType": "Webhook", "triggerDetail": CONNECTION}
    assert summary["sourceRevisions"][0]["revisionId"] == commit
    assert summary["sourceRevisions"][0]["actionName"] == "GitHub"
    assert json.loads(summary["sourceRevisions"][0]["revisionSummary"])["CommitMessage"] == "first"
    actions = client.list_action_executions(pipelineName="p", filter={"pipelineExecutionId": execution})
    ran = [(a["stageName"], a["status"]) for a in reversed(actions["actionExecutionDetails"])]
    assert ran == [("Source", "Succeeded"), ("Build", "Succeeded"), ("Deploy", "Succeeded")]
    assert [stage for stage, _e, _c in recorder.runs] == ["Build", "Deploy"]
    assert all(c == commit for _s, _e, c in recorder.runs)


def test_the_source_artifact_names_the_commit_for_codebuild_to_clone(
    pipeline: tuple[CodePipelineService, Recorder, Any], github: GitHubStandIn, tmp_path: Path, aws: Aws
) -> None:
    service, _recorder, client = pipeline
    commit = push(github, tmp_path / "work", "clone me")
    wait_for(lambda: len(service.executions("p")) == 1, "the execution")
    execution = service.executions("p")[0]["pipelineExecutionId"]
    service.wait("p", execution, WAIT)
    details = client.list_action_executions(pipelineName="p", filter={"pipelineExecutionId": execution})
    source = next(a for a in details["actionExecutionDetails"] if a["stageName"] == "Source")
    location = source["output"]["outputArtifacts"][0]["s3location"]
    assert location["bucket"] == "artifacts"
    assert location["key"].startswith("p/Src/")
    from local.aws.codepipeline.actions import CloneRef  # noqa: PLC0415 - the format under test

    body = aws.client("s3").get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read()
    ref = CloneRef.read(body)
    assert (ref.commit, ref.branch, ref.full_repository_id) == (commit, "main", REPO)
    assert source["output"]["outputVariables"]["CommitId"] == commit


def test_queued_executions_pass_each_stage_one_at_a_time_in_order(
    pipeline: tuple[CodePipelineService, Recorder, Any], github: GitHubStandIn, tmp_path: Path
) -> None:
    service, recorder, client = pipeline
    recorder.release_build.clear()
    first = push(github, tmp_path / "work", "one")
    wait_for(lambda: len(recorder.runs) == 1, "the first build")
    second = push(github, tmp_path / "work", "two")
    wait_for(lambda: len(service.executions("p")) == 2, "the second execution")
    time.sleep(0.2)
    assert len(recorder.runs) == 1, "the second build started while the first held the Build stage"
    state = client.get_pipeline_state(name="p")
    build = next(s for s in state["stageStates"] if s["stageName"] == "Build")
    waiting = [e["pipelineExecutionId"] for e in build["inboundExecutions"]]
    assert waiting == [service.executions("p")[1]["pipelineExecutionId"]]
    recorder.release_build.set()
    for execution in service.executions("p"):
        service.wait("p", execution["pipelineExecutionId"], WAIT)
    assert [c for stage, _e, c in recorder.runs if stage == "Build"] == [first, second]


def test_a_failed_build_fails_the_execution_and_nothing_after_it_runs(
    pipeline: tuple[CodePipelineService, Recorder, Any], github: GitHubStandIn, tmp_path: Path
) -> None:
    service, recorder, client = pipeline
    recorder.fail_build = True
    push(github, tmp_path / "work", "broken")
    wait_for(lambda: len(service.executions("p")) == 1, "the execution")
    execution = service.executions("p")[0]["pipelineExecutionId"]
    assert service.wait("p", execution, WAIT)["status"] == "Failed"
    assert [stage for stage, _e, _c in recorder.runs] == ["Build"]
    state = client.get_pipeline_state(name="p")
    stages = {s["stageName"]: s for s in state["stageStates"]}
    assert stages["Build"]["latestExecution"]["status"] == "Failed"
    assert "latestExecution" not in stages["Deploy"]
    error = stages["Build"]["actionStates"][0]["latestExecution"]["errorDetails"]
    assert error["code"] == "JobFailed"
    assert "FAILED" in error["message"]


def test_start_pipeline_execution_takes_the_branch_head(
    pipeline: tuple[CodePipelineService, Recorder, Any], github: GitHubStandIn, tmp_path: Path
) -> None:
    service, _recorder, client = pipeline
    commit = push(github, tmp_path / "work", "head")
    wait_for(lambda: len(service.executions("p")) == 1, "the push's execution")
    started = client.start_pipeline_execution(name="p")["pipelineExecutionId"]
    assert service.wait("p", started, WAIT)["status"] == "Succeeded"
    summary = client.get_pipeline_execution(pipelineName="p", pipelineExecutionId=started)[
        "pipelineExecution"
    ]
    assert summary["trigger"]["triggerType"] == "StartPipelineExecution"
    assert summary["artifactRevisions"][0]["revisionId"] == commit
    newest = client.list_pipeline_executions(pipelineName="p")["pipelineExecutionSummaries"][0]
    assert newest["pipelineExecutionId"] == started


def test_unknown_pipelines_and_executions_are_refused_as_aws_refuses_them(
    pipeline: tuple[CodePipelineService, Recorder, Any],
) -> None:
    _service, _recorder, client = pipeline
    with pytest.raises(client.exceptions.PipelineNotFoundException):
        client.get_pipeline_state(name="nope")
    with pytest.raises(client.exceptions.PipelineExecutionNotFoundException):
        client.get_pipeline_execution(
            pipelineName="p", pipelineExecutionId="00000000-0000-0000-0000-000000000000"
        )


def test_an_input_artifact_no_earlier_action_outputs_is_refused_at_create(aws: Aws) -> None:
    broken = declaration("q")
    broken["stages"][1]["actions"][0]["inputArtifacts"] = [{"name": "Nothing"}]
    with CodePipelineServer(CodePipelineService(start_on_create=False)) as server:
        client = aws.with_endpoint("codepipeline", server.endpoint_url).client("codepipeline")
        with pytest.raises(client.exceptions.InvalidStructureException):
            client.create_pipeline(pipeline=broken)


def test_a_failed_build_reaches_the_team_through_the_templates_eventbridge_rule(aws: Aws) -> None:
    """cicd-pipeline.yaml's PipelineFailedRule, as written (pattern and input transformer), on a Stage
    Execution State Change of a failed Build; a Deploy failure (CodeDeploy tells of it) does not match."""
    rule = load_template(PIPELINE.template)["Resources"]["PipelineFailedRule"]["Properties"]
    values = {"${ProjectName}": "phoenix", "${Environment}": "dev", "${AWS::Region}": "us-east-1"}

    def sub(value: Any) -> str:
        text = str(value["Fn::Sub"])
        for key, replacement in values.items():
            text = text.replace(key, replacement)
        return text

    pattern = {**rule["EventPattern"], "resources": ["arn:aws:codepipeline:us-east-1:123456789012:p"]}
    transformer = rule["Targets"][0]["InputTransformer"]
    sns, sqs, events = aws.client("sns"), aws.client("sqs"), aws.client("events")
    topic = sns.create_topic(Name="notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    events.put_rule(Name=sub(rule["Name"]), EventPattern=json.dumps(pattern), State=rule["State"])
    events.put_targets(
        Rule=sub(rule["Name"]),
        Targets=[
            {
                "Id": "notifications",
                "Arn": topic,
                "InputTransformer": {
                    "InputPathsMap": transformer["InputPathsMap"],
                    "InputTemplate": sub(transformer["InputTemplate"]),
                },
            }
        ],
    )
    bus = EventBus(events, sns)
    detail = {"pipeline": "p", "execution-id": "e-1", "stage": "Build", "state": "FAILED", "version": 1.0}
    resources = ["arn:aws:codepipeline:us-east-1:123456789012:p"]
    assert bus.put("aws.codepipeline", "CodePipeline Stage Execution State Change", detail, resources) == 1
    assert (
        bus.put(
            "aws.codepipeline",
            "CodePipeline Stage Execution State Change",
            {**detail, "stage": "Deploy"},
            resources,
        )
        == 0
    )
    assert (
        bus.put(
            "aws.codepipeline",
            "CodePipeline Stage Execution State Change",
            {**detail, "state": "SUCCEEDED"},
            resources,
        )
        == 0
    )
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    text = json.loads(json.loads(messages[0]["Body"])["Message"])
    assert text.startswith("FAILED - p: the Build stage failed, nothing was deployed (execution e-1).")
    assert "pipelines/p/executions/e-1/timeline" in text

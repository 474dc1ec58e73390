"""local/aws/codedeploy: the CodeDeploy stand-in through real boto3 clients (botocore parses every reply)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import pytest
import requests
from botocore.exceptions import ClientError
from botocore.model import Shape

from local.aws.codedeploy import CodeDeployError, CodeDeployServer, CodeDeployService
from local.aws.codedeploy.service import ECS_LIFECYCLE_EVENTS
from local.timescale import TimeScale
from tests.rollback_world import wait_until

APP = "phoenix-dev"
GROUP = "phoenix-dev-sample-app"
CLUSTER = "phoenix-dev-cluster"
SERVICE = "phoenix-dev-sample-app"
TARGET = f"{CLUSTER}:{SERVICE}"  # an ECS deployment's target ID: <clustername>:<servicename>
MODEL = botocore.session.get_session().get_service_model("codedeploy")


def revision(content: str) -> dict[str, Any]:
    return {"revisionType": "AppSpecContent", "appSpecContent": {"content": content}}


@pytest.fixture
def client(create_deployment_group: Callable[..., Any]) -> Any:
    return create_deployment_group(
        ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
        alarmConfiguration={"enabled": True, "alarms": [{"name": "phoenix-dev-health-check-failed"}]},
    )


def test_deployment_group_and_deployment_have_aws_shapes(client: Any, codedeploy: CodeDeployService) -> None:
    first = client.create_deployment(applicationName=APP, deploymentGroupName=GROUP, revision=revision("v1"))
    codedeploy.set_status(first["deploymentId"], "Succeeded")
    second = client.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision("v2"), description="release 2"
    )["deploymentId"]
    info = client.get_deployment(deploymentId=second)["deploymentInfo"]
    assert info["status"] == "Created"
    assert info["creator"] == "user"
    assert info["description"] == "release 2"
    assert info["revision"]["revisionType"] == "AppSpecContent"
    assert len(info["revision"]["appSpecContent"]["sha256"]) == 64
    # GetDeployment's documentation: appSpecContent.content is always null; GetApplicationRevision has it.
    for record in (info, *client.batch_get_deployments(deploymentIds=[second])["deploymentsInfo"]):
        assert "content" not in record["revision"]["appSpecContent"]
        assert "content" not in record["previousRevision"]["appSpecContent"]
    stored = client.get_application_revision(
        applicationName=APP,
        revision={
            "revisionType": "AppSpecContent",
            "appSpecContent": info["previousRevision"]["appSpecContent"],
        },
    )
    assert stored["revision"]["appSpecContent"]["content"] == "v1"
    assert stored["revisionInfo"]["deploymentGroups"] == [GROUP]
    with pytest.raises(client.exceptions.RevisionDoesNotExistException):
        client.get_application_revision(
            applicationName=APP,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"sha256": "0" * 64}},
        )
    assert isinstance(info["createTime"], datetime)
    assert info["computePlatform"] == "ECS"
    group = client.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)["deploymentGroupInfo"]
    assert group["lastSuccessfulDeployment"]["deploymentId"] == first["deploymentId"]
    assert group["lastAttemptedDeployment"]["deploymentId"] == second
    assert group["alarmConfiguration"]["alarms"] == [{"name": "phoenix-dev-health-check-failed"}]
    assert group["deploymentConfigName"] == "CodeDeployDefault.ECSAllAtOnce"


def test_errors_carry_aws_codes(client: Any) -> None:
    with pytest.raises(client.exceptions.DeploymentDoesNotExistException):
        client.get_deployment(deploymentId="d-NOTTHERE1")
    with pytest.raises(client.exceptions.DeploymentGroupDoesNotExistException):
        client.get_deployment_group(applicationName=APP, deploymentGroupName="nope")
    with pytest.raises(client.exceptions.ApplicationDoesNotExistException):
        client.list_deployments(applicationName="nope")
    with pytest.raises(client.exceptions.ApplicationAlreadyExistsException):
        client.create_application(applicationName=APP, computePlatform="ECS")
    with pytest.raises(client.exceptions.InvalidDeploymentStatusException):
        client.list_deployments(
            applicationName=APP, deploymentGroupName=GROUP, includeOnlyStatuses=["Sleeping"]
        )


def test_a_deployment_overrides_its_groups_config_and_alarms(client: Any) -> None:
    dep_id = client.create_deployment(
        applicationName=APP,
        deploymentGroupName=GROUP,
        revision=revision("v1"),
        deploymentConfigName="CodeDeployDefault.ECSCanary10Percent5Minutes",
        overrideAlarmConfiguration={"enabled": False, "alarms": []},
    )["deploymentId"]
    info = client.get_deployment(deploymentId=dep_id)["deploymentInfo"]
    assert info["deploymentConfigName"] == "CodeDeployDefault.ECSCanary10Percent5Minutes"
    assert info["overrideAlarmConfiguration"] == {"enabled": False, "alarms": []}
    with pytest.raises(client.exceptions.DeploymentConfigDoesNotExistException):
        client.create_deployment(
            applicationName=APP,
            deploymentGroupName=GROUP,
            revision=revision("v2"),
            deploymentConfigName="CodeDeployDefault.OneAtATime",
        )


def test_update_deployment_group_changes_the_alarm_configuration_and_keeps_the_rest(
    client: Any, codedeploy: CodeDeployService
) -> None:
    """The spec's literal rule turns the group's alarm polling off this way (local/drill/world.py)."""
    group = client.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)["deploymentGroupInfo"]
    answer = client.update_deployment_group(
        applicationName=APP,
        currentDeploymentGroupName=GROUP,
        alarmConfiguration={**group["alarmConfiguration"], "enabled": False},
    )
    assert answer["hooksNotCleanedUp"] == []
    updated = client.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)[
        "deploymentGroupInfo"
    ]
    assert updated["alarmConfiguration"] == {
        "enabled": False,
        "alarms": [{"name": "phoenix-dev-health-check-failed"}],
    }
    assert {k: v for k, v in updated.items() if k != "alarmConfiguration"} == {
        k: v for k, v in group.items() if k != "alarmConfiguration"
    }
    # A deployment created now carries no alarm to poll (the engine reads the group's configuration).
    deployment = client.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision("v1")
    )
    assert codedeploy.get(deployment["deploymentId"])["deploymentGroupName"] == GROUP


@pytest.mark.parametrize(
    ("alarm_configuration", "error"),
    [
        ({"enabled": True, "alarms": []}, "InvalidAlarmConfigException"),
        ({"enabled": True}, "InvalidAlarmConfigException"),
        ({"enabled": True, "alarms": [{"name": "a"}, {"name": "a"}]}, "InvalidAlarmConfigException"),
        ({"enabled": True, "alarms": [{"name": "x" * 256}]}, "InvalidAlarmConfigException"),
        ({"enabled": True, "alarms": [{}]}, "InvalidAlarmConfigException"),
        ({"enabled": True, "alarms": [{"name": f"a{n}"} for n in range(11)]}, "AlarmsLimitExceededException"),
    ],
)
def test_update_deployment_group_refuses_what_aws_documents_as_invalid(
    client: Any, alarm_configuration: dict[str, Any], error: str
) -> None:
    with pytest.raises(client.exceptions.ClientError) as raised:
        client.update_deployment_group(
            applicationName=APP, currentDeploymentGroupName=GROUP, alarmConfiguration=alarm_configuration
        )
    assert raised.value.response["Error"]["Code"] == error
    # Nothing changed.
    group = client.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)["deploymentGroupInfo"]
    assert group["alarmConfiguration"]["enabled"] is True


def test_update_deployment_group_names_and_renames_as_aws_does(client: Any) -> None:
    with pytest.raises(client.exceptions.DeploymentGroupDoesNotExistException):
        client.update_deployment_group(applicationName=APP, currentDeploymentGroupName="nope")
    with pytest.raises(client.exceptions.ApplicationDoesNotExistException):
        client.update_deployment_group(applicationName="nope", currentDeploymentGroupName=GROUP)
    with pytest.raises(client.exceptions.InvalidDeploymentGroupNameException):
        client.update_deployment_group(
            applicationName=APP, currentDeploymentGroupName=GROUP, newDeploymentGroupName="no spaces"
        )
    with pytest.raises(client.exceptions.DeploymentConfigDoesNotExistException):
        client.update_deployment_group(
            applicationName=APP,
            currentDeploymentGroupName=GROUP,
            deploymentConfigName="CodeDeployDefault.OneAtATime",
        )
    first = client.create_deployment(applicationName=APP, deploymentGroupName=GROUP, revision=revision("v1"))
    client.update_deployment_group(
        applicationName=APP, currentDeploymentGroupName=GROUP, newDeploymentGroupName="renamed"
    )
    with pytest.raises(client.exceptions.DeploymentGroupDoesNotExistException):
        client.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)
    renamed = client.get_deployment_group(applicationName=APP, deploymentGroupName="renamed")[
        "deploymentGroupInfo"
    ]
    assert renamed["deploymentGroupName"] == "renamed"
    assert client.list_deployments(applicationName=APP, deploymentGroupName="renamed")["deployments"] == [
        first["deploymentId"]
    ]
    with pytest.raises(client.exceptions.DeploymentGroupAlreadyExistsException):
        client.create_deployment_group(
            applicationName=APP, deploymentGroupName="renamed", serviceRoleArn="arn:aws:iam::1:role/x"
        )


def test_unknown_operation_is_refused_like_aws(codedeploy_server: CodeDeployServer, client: Any) -> None:
    response = requests.post(
        codedeploy_server.endpoint_url,
        headers={
            "X-Amz-Target": "CodeDeploy_20141006.LaunchRockets",
            "Content-Type": "application/x-amz-json-1.1",
        },
        data=b"{}",
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["__type"] == "UnknownOperationException"


def test_one_deployment_in_flight_per_group_even_when_requested_concurrently(client: Any) -> None:
    barrier = threading.Barrier(8)
    created: list[str] = []
    refused: list[str] = []

    def create(index: int) -> None:
        barrier.wait()
        try:
            created.append(
                client.create_deployment(
                    applicationName=APP, deploymentGroupName=GROUP, revision=revision(f"v{index}")
                )["deploymentId"]
            )
        except client.exceptions.DeploymentLimitExceededException as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == 1
    assert len(refused) == 7
    assert created[0] in refused[0]


def test_list_deployments_filters_and_pages_in_no_newest_first_order(
    client: Any, codedeploy: CodeDeployService
) -> None:
    """AWS documents no order for ListDeployments: the stand-in answers oldest first, so code that reads the
    first page as "the newest deployments" misses the one in flight here, as it can on AWS."""
    now = time.time()
    ids = [
        codedeploy.seed_deployment(APP, GROUP, f"v{i}", create_time=now - 1000 + i, status="Succeeded")
        for i in range(104)
    ]
    in_flight = codedeploy.seed_deployment(APP, GROUP, "v-new", create_time=now, status="InProgress")
    page = client.list_deployments(applicationName=APP, deploymentGroupName=GROUP)
    assert len(page["deployments"]) == 100
    assert in_flight not in page["deployments"]
    rest = client.list_deployments(
        applicationName=APP, deploymentGroupName=GROUP, nextToken=page["nextToken"]
    )
    assert "nextToken" not in rest
    assert sorted(page["deployments"] + rest["deployments"]) == sorted([*ids, in_flight])
    only = client.list_deployments(
        applicationName=APP, deploymentGroupName=GROUP, includeOnlyStatuses=["InProgress", "Ready"]
    )
    assert only["deployments"] == [in_flight]
    recent = client.list_deployments(
        applicationName=APP,
        deploymentGroupName=GROUP,
        createTimeRange={
            "start": datetime.fromtimestamp(now - 898.5, UTC),
            "end": datetime.fromtimestamp(now - 1, UTC),
        },
    )
    assert sorted(recent["deployments"]) == sorted(ids[102:])


def wait_status(client: Any, deployment: str, status: str) -> dict[str, Any]:
    wait_until(lambda: client.get_deployment(deploymentId=deployment)["deploymentInfo"]["status"] == status)
    info: dict[str, Any] = client.get_deployment(deploymentId=deployment)["deploymentInfo"]
    return info


def test_stop_with_auto_rollback_creates_the_rollback_deployment(
    client: Any, codedeploy: CodeDeployService
) -> None:
    good = codedeploy.seed_deployment(APP, GROUP, "v1", create_time=time.time() - 100)
    bad = client.create_deployment(applicationName=APP, deploymentGroupName=GROUP, revision=revision("v2"))[
        "deploymentId"
    ]
    answer = client.stop_deployment(deploymentId=bad, autoRollbackEnabled=True)
    # Asynchronous, as on AWS: Pending, the deployment still in flight, then Stopped.
    assert answer["status"] == "Pending"
    assert client.get_deployment(deploymentId=bad)["deploymentInfo"]["status"] == "Created"
    assert client.stop_deployment(deploymentId=bad, autoRollbackEnabled=True)["status"] == "Pending"
    stopped = wait_status(client, bad, "Stopped")
    assert stopped["status"] == "Stopped"
    rollback_id = stopped["rollbackInfo"]["rollbackDeploymentId"]
    [rollback] = client.batch_get_deployments(deploymentIds=[rollback_id, "d-NOTTHERE1"])["deploymentsInfo"]
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == bad
    assert (
        rollback["revision"]["appSpecContent"]["sha256"]
        == codedeploy.get(good)["revision"]["appSpecContent"]["sha256"]
    )
    assert codedeploy.get(rollback_id)["revision"] == codedeploy.get(good)["revision"]
    assert len(codedeploy.deployment_ids()) == 3  # the repeated stop made no second rollback
    with pytest.raises(client.exceptions.DeploymentAlreadyCompletedException):
        client.stop_deployment(deploymentId=bad, autoRollbackEnabled=True)


def test_stop_without_an_earlier_success_only_says_why(client: Any) -> None:
    only = client.create_deployment(applicationName=APP, deploymentGroupName=GROUP, revision=revision("v1"))[
        "deploymentId"
    ]
    client.stop_deployment(deploymentId=only, autoRollbackEnabled=True)
    info = wait_status(client, only, "Stopped")
    assert info["status"] == "Stopped"
    assert "rollbackDeploymentId" not in info["rollbackInfo"]
    assert "no previous successful deployment" in info["rollbackInfo"]["rollbackMessage"]


def test_lifecycle_hook_answers_are_checked_and_a_failed_hook_rolls_back(
    client: Any, codedeploy: CodeDeployService
) -> None:
    codedeploy.seed_deployment(APP, GROUP, "v1", create_time=time.time() - 100)
    deployment = client.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision("v2")
    )["deploymentId"]
    codedeploy.set_status(deployment, "InProgress")
    hook = codedeploy.register_hook(deployment, "AfterAllowTestTraffic")
    with pytest.raises(client.exceptions.InvalidLifecycleEventHookExecutionIdException):
        client.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment, lifecycleEventHookExecutionId="not-a-hook", status="Succeeded"
        )
    with pytest.raises(client.exceptions.InvalidLifecycleEventHookExecutionStatusException):
        client.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment, lifecycleEventHookExecutionId=hook, status="Pending"
        )
    answer = client.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment, lifecycleEventHookExecutionId=hook, status="Failed"
    )
    assert answer["lifecycleEventHookExecutionId"] == hook
    info = client.get_deployment(deploymentId=deployment)["deploymentInfo"]
    assert info["status"] == "Failed"
    assert info["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"
    assert (
        client.get_deployment(deploymentId=info["rollbackInfo"]["rollbackDeploymentId"])["deploymentInfo"][
            "creator"
        ]
        == "codeDeployRollback"
    )
    with pytest.raises(client.exceptions.LifecycleEventAlreadyCompletedException):
        client.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment, lifecycleEventHookExecutionId=hook, status="Succeeded"
        )


class RecordingEngine:
    """A DeploymentEngine that records its calls and starts deployments (calling back into the service)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def on_created(self, service: CodeDeployService, deployment_id: str) -> None:
        self.calls.append(("created", deployment_id))
        service.set_status(deployment_id, "InProgress")

    def on_stop(self, service: CodeDeployService, deployment_id: str, auto_rollback: bool) -> None:
        self.calls.append(("stop", deployment_id, str(auto_rollback)))

    def on_hook_status(
        self, service: CodeDeployService, deployment_id: str, execution_id: str, status: str
    ) -> None:
        self.calls.append(("hook", deployment_id, execution_id, status))


def test_an_engine_drives_the_lifecycle_and_hears_each_stop_once(
    codedeploy_server: CodeDeployServer, client: Any
) -> None:
    engine = RecordingEngine()
    service = codedeploy_server.use(CodeDeployService(engine=engine))
    service.call("CreateApplication", {"applicationName": APP, "computePlatform": "ECS"})
    service.call(
        "CreateDeploymentGroup",
        {"applicationName": APP, "deploymentGroupName": GROUP, "serviceRoleArn": "arn:aws:iam::1:role/x"},
    )
    deployment = client.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision("v1")
    )["deploymentId"]
    assert client.get_deployment(deploymentId=deployment)["deploymentInfo"]["status"] == "InProgress"
    hook = service.register_hook(deployment, "AfterAllowTestTraffic")
    client.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment, lifecycleEventHookExecutionId=hook, status="Failed"
    )
    assert client.get_deployment(deploymentId=deployment)["deploymentInfo"]["status"] == "InProgress"
    for _ in range(2):
        assert (
            client.stop_deployment(deploymentId=deployment, autoRollbackEnabled=True)["status"] == "Pending"
        )
    assert engine.calls == [
        ("created", deployment),
        ("hook", deployment, hook, "Failed"),
        ("stop", deployment, "True"),
    ]


def test_a_description_over_codedeploys_100_characters_is_refused(client: Any) -> None:
    """CodeDeploy quotas: at most 100 characters in a deployment description."""
    with pytest.raises(client.exceptions.DescriptionTooLongException):
        client.create_deployment(
            applicationName=APP, deploymentGroupName=GROUP, revision=revision("v1"), description="x" * 101
        )
    created = client.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision("v1"), description="x" * 100
    )
    assert (
        client.get_deployment(deploymentId=created["deploymentId"])["deploymentInfo"]["description"]
        == "x" * 100
    )


# ---------------------------------------------------------------------------------------------- targets
def assert_shape(value: Any, shape: Shape, path: str = "") -> None:
    """`value` (a JSON answer as sent) is what botocore's `shape` allows: only its members, the required ones
    present, each of its type, strings within their enum (botocore parses answers without checking them)."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        assert set(value) <= set(shape.members), (
            f"{path}: {set(value) - set(shape.members)} not in {shape.name}"
        )
        assert set(shape.required_members) <= set(value), f"{path}: {shape.name} lacks a required member"
        for name, item in value.items():
            assert_shape(item, shape.members[name], f"{path}.{name}")
    elif kind == "list":
        assert isinstance(value, list), path
        for n, item in enumerate(value):
            assert_shape(item, shape.member, f"{path}[{n}]")
    elif kind == "string":
        assert isinstance(value, str), path
        assert not shape.enum or value in shape.enum, f"{path}: {value!r} not in {shape.name} {shape.enum}"
    elif kind in ("long", "integer"):
        assert isinstance(value, int), path
        assert not isinstance(value, bool), path
    else:
        assert kind in ("timestamp", "double"), f"{path}: {kind} not checked"
        assert isinstance(value, int | float), path
        assert not isinstance(value, bool), path


def answer(server: CodeDeployServer, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the server sends for `operation`, checked against botocore's output shape."""
    response = requests.post(
        server.endpoint_url,
        headers={
            "X-Amz-Target": f"CodeDeploy_20141006.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        },
        json=params,
        timeout=5,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert_shape(body, MODEL.operation_model(operation).output_shape)
    return body


def error_code(operation: str, call: Callable[[], Any]) -> str:
    """The error code `call` fails with, which botocore's model must list for `operation`."""
    with pytest.raises(ClientError) as raised:
        call()
    code = str(raised.value.response["Error"]["Code"])
    assert code in {e.name for e in MODEL.operation_model(operation).error_shapes}, code
    return code


@pytest.fixture
def ecs_client(create_deployment_group: Callable[..., Any]) -> Any:
    """The codedeploy client; the group deploys ECS service phoenix-dev-sample-app of phoenix-dev-cluster."""
    return create_deployment_group(
        ["DEPLOYMENT_FAILURE"], ecsServices=[{"serviceName": SERVICE, "clusterName": CLUSTER}]
    )


def started(client: Any, codedeploy: CodeDeployService, content: str = "v1") -> str:
    deployment: str = client.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision(content)
    )["deploymentId"]
    codedeploy.set_status(deployment, "InProgress")
    return deployment


def ecs_target(client: Any, deployment: str) -> dict[str, Any]:
    [target] = client.batch_get_deployment_targets(deploymentId=deployment, targetIds=[TARGET])[
        "deploymentTargets"
    ]
    assert target["deploymentTargetType"] == "ECSTarget"
    ecs: dict[str, Any] = target["ecsTarget"]
    return ecs


def test_an_ecs_deployments_target_is_its_service_in_the_models_shapes(
    ecs_client: Any, codedeploy: CodeDeployService, codedeploy_server: CodeDeployServer
) -> None:
    client = ecs_client
    deployment = started(client, codedeploy)
    listed = answer(codedeploy_server, "ListDeploymentTargets", {"deploymentId": deployment})
    assert listed == {"targetIds": [TARGET]}
    codedeploy.lifecycle_event(deployment, "BeforeInstall", "Succeeded")  # no hook: passed at once
    codedeploy.lifecycle_event(deployment, "Install", "InProgress")
    task_set = {
        "identifer": "ecs-svc/1234567890123456789",
        "desiredCount": 2,
        "pendingCount": 0,
        "runningCount": 2,
        "status": "PRIMARY",
        "trafficWeight": 100.0,
        "targetGroup": {"name": "phoenix-dev-blue"},
        "taskSetLabel": "Blue",
    }
    codedeploy.set_task_sets(deployment, [task_set])
    body = answer(
        codedeploy_server, "BatchGetDeploymentTargets", {"deploymentId": deployment, "targetIds": [TARGET]}
    )
    [raw] = body["deploymentTargets"]
    assert set(raw) == {"deploymentTargetType", "ecsTarget"}
    target = ecs_target(client, deployment)
    assert target["deploymentId"] == deployment
    assert target["targetId"] == TARGET
    assert target["targetArn"] == f"arn:aws:ecs:us-east-1:123456789012:service/{CLUSTER}/{SERVICE}"
    assert target["status"] == "InProgress"
    assert target["taskSetsInfo"] == [task_set]
    events = target["lifecycleEvents"]
    assert [e["lifecycleEventName"] for e in events] == list(ECS_LIFECYCLE_EVENTS)
    assert [e["status"] for e in events] == ["Succeeded", "InProgress", *["Pending"] * 6]
    before_install, install = events[0], events[1]
    assert before_install["startTime"] == before_install["endTime"]
    assert install["startTime"] >= before_install["endTime"]
    assert "endTime" not in install
    assert all("startTime" not in e and "endTime" not in e for e in events[2:])
    created = client.get_deployment(deploymentId=deployment)["deploymentInfo"]["createTime"]
    assert created <= install["startTime"] <= target["lastUpdatedAt"]  # the task sets came last
    codedeploy.lifecycle_event(deployment, "Install", "Succeeded")
    with pytest.raises(ValueError, match="Install: Succeeded -> InProgress"):
        codedeploy.lifecycle_event(deployment, "Install", "InProgress")
    install = ecs_target(client, deployment)["lifecycleEvents"][1]
    assert install["status"] == "Succeeded"
    assert install["startTime"] <= install["endTime"]
    codedeploy.set_status(deployment, "Succeeded")
    done = ecs_target(client, deployment)
    assert done["status"] == "Succeeded"
    assert [e["status"] for e in done["lifecycleEvents"]][2:] == ["Pending"] * 6  # nothing recorded them
    codedeploy.lifecycle_event(deployment, "AfterInstall", "InProgress")  # ended: ignored
    assert ecs_target(client, deployment)["lifecycleEvents"][2]["status"] == "Pending"


def test_deployment_target_errors_carry_the_codes_the_model_lists(
    ecs_client: Any, codedeploy: CodeDeployService
) -> None:
    client = ecs_client
    created = client.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision("v1")
    )["deploymentId"]
    listing, batch = "ListDeploymentTargets", "BatchGetDeploymentTargets"

    def list_targets(**params: Any) -> Callable[[], Any]:
        return lambda: client.list_deployment_targets(**params)

    def get_targets(deployment: str, ids: list[str]) -> Callable[[], Any]:
        return lambda: client.batch_get_deployment_targets(deploymentId=deployment, targetIds=ids)

    # Created (and Queued): not started yet.
    assert error_code(listing, list_targets(deploymentId=created)) == "DeploymentNotStartedException"
    assert error_code(batch, get_targets(created, [TARGET])) == "DeploymentNotStartedException"
    for operation, call in (
        (listing, list_targets(deploymentId="")),
        (batch, get_targets("", [TARGET])),
    ):
        assert error_code(operation, call) == "DeploymentIdRequiredException"
    for operation, call in (
        (listing, list_targets(deploymentId="not-a-deployment")),
        (batch, get_targets("d-short", [TARGET])),
    ):
        assert error_code(operation, call) == "InvalidDeploymentIdException"
    for operation, call in (
        (listing, list_targets(deploymentId="d-NOTTHERE1")),
        (batch, get_targets("d-NOTTHERE1", [TARGET])),
    ):
        assert error_code(operation, call) == "DeploymentDoesNotExistException"
    # Parameters botocore itself requires, left out (its client refuses to send such a request).
    for operation, params, code in (
        (listing, {}, "DeploymentIdRequiredException"),
        (batch, {"targetIds": [TARGET]}, "DeploymentIdRequiredException"),
        (batch, {"deploymentId": created}, "DeploymentTargetIdRequiredException"),
    ):
        with pytest.raises(CodeDeployError) as raised:
            codedeploy.call(operation, params)
        assert raised.value.code == code

    deployment = created
    codedeploy.set_status(deployment, "InProgress")
    assert error_code(batch, get_targets(deployment, [])) == "DeploymentTargetIdRequiredException"
    assert error_code(batch, get_targets(deployment, [""])) == "InvalidDeploymentTargetIdException"
    assert (
        error_code(batch, get_targets(deployment, [TARGET, "other-cluster:other-service"]))
        == "DeploymentTargetDoesNotExistException"
    )
    # At most 25 target IDs (botocore BatchGetDeploymentTargetsInput.targetIds); each answered once.
    assert (
        len(
            client.batch_get_deployment_targets(deploymentId=deployment, targetIds=[TARGET] * 25)[
                "deploymentTargets"
            ]
        )
        == 1
    )
    assert (
        error_code(batch, get_targets(deployment, [TARGET] * 26))
        == "DeploymentTargetListSizeExceededException"
    )
    for params, code in (
        ({"targetFilters": {"Colour": ["Blue"]}}, "InvalidTargetFilterNameException"),
        ({"targetFilters": {"TargetStatus": ["Sleeping"]}}, "InvalidInstanceStatusException"),
        ({"targetFilters": {"ServerInstanceLabel": ["Purple"]}}, "InvalidInstanceTypeException"),
        ({"nextToken": "not-a-token"}, "InvalidNextTokenException"),
    ):
        assert error_code(listing, list_targets(deploymentId=deployment, **params)) == code


def test_the_target_status_filter_follows_the_deployments_status(
    ecs_client: Any, codedeploy: CodeDeployService
) -> None:
    client = ecs_client

    def listed(deployment: str, **filters: list[str]) -> list[str]:
        ids: list[str] = client.list_deployment_targets(deploymentId=deployment, targetFilters=filters)[
            "targetIds"
        ]
        return ids

    running = started(client, codedeploy)
    assert listed(running) == [TARGET]
    assert listed(running, TargetStatus=["InProgress"]) == [TARGET]
    assert listed(running, TargetStatus=["Succeeded", "Failed", "Ready"]) == []
    assert listed(running, TargetStatus=[]) == [TARGET]  # an empty list filters nothing
    # An ECS target is neither Blue nor Green (its task sets are): the label filter is ignored.
    assert listed(running, ServerInstanceLabel=["Green"]) == [TARGET]
    codedeploy.set_status(running, "Succeeded")
    assert listed(running, TargetStatus=["Succeeded"]) == [TARGET]
    assert listed(running, TargetStatus=["InProgress"]) == []
    for ended in ("Failed", "Stopped"):
        deployment = started(client, codedeploy, f"v-{ended}")
        codedeploy.set_status(deployment, ended)
        assert listed(deployment, TargetStatus=["Failed"]) == [TARGET]
        assert ecs_target(client, deployment)["status"] == "Failed"
    # A group without ecsServices: no target.
    client.create_deployment_group(
        applicationName=APP, deploymentGroupName="no-service", serviceRoleArn="arn:aws:iam::1:role/x"
    )
    bare = client.create_deployment(
        applicationName=APP, deploymentGroupName="no-service", revision=revision("v")
    )
    codedeploy.set_status(bare["deploymentId"], "InProgress")
    assert listed(bare["deploymentId"]) == []


def test_a_stopped_deployment_fails_the_event_in_progress_and_skips_the_rest(
    ecs_client: Any, codedeploy: CodeDeployService
) -> None:
    """Whoever ends the deployment (here the built-in StopDeployment, no engine), its target's event in
    progress is Failed with an endTime and the events not reached are Skipped."""
    client = ecs_client
    deployment = started(client, codedeploy)
    codedeploy.lifecycle_event(deployment, "BeforeInstall", "Succeeded")
    codedeploy.lifecycle_event(deployment, "Install", "InProgress")
    client.stop_deployment(deploymentId=deployment)
    info = wait_status(client, deployment, "Stopped")
    target = ecs_target(client, deployment)
    assert target["status"] == "Failed"
    events = target["lifecycleEvents"]
    assert [e["status"] for e in events] == ["Succeeded", "Failed", *["Skipped"] * 6]
    assert events[1]["startTime"] <= events[1]["endTime"] == info["completeTime"] == target["lastUpdatedAt"]
    assert all("startTime" not in e and "endTime" not in e for e in events[2:])
    assert client.list_deployment_targets(
        deploymentId=deployment, targetFilters={"TargetStatus": ["Failed"]}
    )["targetIds"] == [TARGET]


def test_times_are_served_on_the_callers_clock_so_an_age_is_aws_time_however_long_the_clock_was_held() -> (
    None
):
    """The service stamps on the AWS clock; a function's wall clock runs ahead of it by every hold. Served
    times are shifted by the held time, and createTimeRange taken back, so `now - createTime` is AWS age."""
    scale = TimeScale(factor=1.0)
    service = CodeDeployService(clock=scale.timestamp)
    with CodeDeployServer(service, scale=scale) as server:
        client = boto3.client(
            "codedeploy",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_application(applicationName="app", computePlatform="ECS")
        client.create_deployment_group(
            applicationName="app",
            deploymentGroupName="group",
            serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            ecsServices=[{"serviceName": SERVICE, "clusterName": CLUSTER}],
        )
        created = service.seed_deployment("app", "group", "version: 0.0", description="held")
        with scale.hold("a slow machine"):
            time.sleep(0.3)
        info = client.get_deployment(deploymentId=created)["deploymentInfo"]
        age = time.time() - info["createTime"].timestamp()
        assert age < 0.25, f"the 0.3 s hold counted in the deployment's age ({age:.2f} s)"
        [target] = client.batch_get_deployment_targets(deploymentId=created, targetIds=[TARGET])[
            "deploymentTargets"
        ]
        age = time.time() - target["ecsTarget"]["lastUpdatedAt"].timestamp()
        assert age < 0.25, f"the 0.3 s hold counted in the target's lastUpdatedAt ({age:.2f} s)"
        since = datetime.fromtimestamp(time.time() - 5, UTC)
        listed = client.list_deployments(
            applicationName="app", deploymentGroupName="group", createTimeRange={"start": since}
        )["deployments"]
        assert listed == [created]

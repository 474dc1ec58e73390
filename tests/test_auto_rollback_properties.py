"""auto_rollback, issue 9's properties of the decision, through the handler against moto and the CodeDeploy
stand-in (so that the same tests run against any version of the function): stale deliveries, a restore that
CodeDeploy rolled back, records that survive any alarm name, suppressed alarm actions, answers lost and
retried, SNS's limits, and no input that makes the handler raise."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.client import BaseClient

from local.aws.codedeploy.service import CodeDeployError
from tests.rollback_world import World, appspec, wait_until

# CodeDeploy's quotas: "Maximum number of characters in a deployment description: 100".
DESCRIPTION_MAX_CHARS = 100
# botocore's SNS Publish documentation.
SUBJECT_MAX_CHARS = 99  # "less than 100 characters long", "no line breaks or control characters"
MESSAGE_MAX_BYTES = 262_144  # "256 KiB in size (262,144 bytes, not 262,144 characters)"


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters of every SNS Publish call, as botocore is asked to send them."""
    calls: list[dict[str, Any]] = []
    real = BaseClient._make_api_call

    def record(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        if operation_name == "Publish":
            calls.append(api_params)
        return real(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    return calls


def lose_the_first_answer(
    monkeypatch: pytest.MonkeyPatch, world: World, operation: str, after: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """The stand-in does what `operation`'s first call asks, then answers 500 (the answer is lost): botocore
    retries. Returns the calls it received."""
    real = getattr(world.service, f"_op_{operation}")
    calls: list[dict[str, Any]] = []

    def answer_lost_once(params: dict[str, Any]) -> dict[str, Any]:
        calls.append(params)
        answer: dict[str, Any] = real(params)
        if len(calls) == 1:
            after()
            raise CodeDeployError("InternalFailure", "the connection dropped before the answer", status=500)
        return answer

    monkeypatch.setattr(world.service, f"_op_{operation}", answer_lost_once)
    return calls


# ----------------------------------------------------------------------------------- a. stale deliveries
def test_a_delivery_older_than_the_serving_deployment_is_stale_and_changes_nothing(
    world: World, lambda_context: Any
) -> None:
    world.seed(1, 3000)
    world.seed(2, 2000)
    fix = world.seed(3, 100)  # shipped past the firing alarm (make ship-fix): serving now
    event = world.event("sns-cloudwatch-alarm", at=time.time() - 200)  # changed state before the fix
    [outcome] = world.function().lambda_handler(event, lambda_context)["outcomes"]
    assert world.created_by_function() == []
    assert outcome["action"] == "none"
    assert outcome["headline"].startswith("stale delivery: the alarm changed state at ")
    assert outcome["serving_deployment"] == fix


# ------------------------------------------------------------------------- b. our restore, rolled back
def test_when_codedeploy_rolls_back_our_restore_people_are_told_the_bad_revision_serves_again(
    world: World, lambda_context: Any
) -> None:
    world.seed(1, 3000)
    world.seed(2, 2000)
    module = world.function()
    [first] = module.lambda_handler(world.event("sns-cloudwatch-alarm", at=time.time() - 60), lambda_context)[
        "outcomes"
    ]
    assert first["action"] == "redeployed"
    restore = first["redeployment"]
    world.service.set_status(restore, "Failed")  # e.g. its tasks never became healthy
    rollback = world.service.roll_back(restore)  # DEPLOYMENT_FAILURE: CodeDeploy puts the bad revision back
    assert rollback is not None
    world.service.set_status(rollback, "Succeeded")
    assert world.service.get(rollback)["revision"]["appSpecContent"]["content"] == appspec(2)
    world.notifications()
    [outcome] = module.lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)["outcomes"]
    assert not outcome["headline"].startswith("the stable revision already serves")
    assert outcome["action"] == "attention"
    assert outcome["headline"].startswith("the bad revision serves again: CodeDeploy rolled back")
    assert (outcome["serving_deployment"], outcome["redeployment"]) == (rollback, restore)
    [mail] = world.notifications()
    assert mail["subject"].startswith("[dev] sample-app: ACTION NEEDED - the bad revision serves again")
    assert "task-definition/phoenix-dev-sample-app:2" in mail["body"]
    assert len(world.created_by_function()) == 1


# ------------------------------------------------------------------------ c. records, any alarm name
ALARM_NAMES = {
    "spaces": "phoenix dev health check failed",
    "unicode": "phoenix-dev-santé-✓-健康检查",
    "255-characters": "phoenix-dev-" + "é" * 243,
}


@pytest.mark.parametrize("name", ALARM_NAMES.values(), ids=ALARM_NAMES.keys())
def test_the_record_of_a_handled_alarm_survives_any_alarm_name(
    world: World, lambda_context: Any, name: str
) -> None:
    world.seed(1, 3000)
    world.seed(2, 2000)
    module = world.function(ALARM_NAMES=name, ROLLBACK_COOLDOWN_SECONDS="0")
    event = world.event("sns-cloudwatch-alarm", alarm=name, at=time.time() - 60)
    [first] = module.lambda_handler(event, lambda_context)["outcomes"]
    assert first["action"] == "redeployed"
    world.service.set_status(first["redeployment"], "Succeeded")
    world.seed(3, 0)  # then a new release serves, and the same transition is delivered again
    [again] = module.lambda_handler(event, lambda_context)["outcomes"]
    assert again["headline"] == "this alarm was already handled (duplicate delivery)"
    [created] = world.created_by_function()
    assert len(created["description"]) <= DESCRIPTION_MAX_CHARS


# ---------------------------------------------------------------------------- d. suppressed actions
@pytest.mark.parametrize(
    ("sample", "suppressed_by"),
    [
        ("eventbridge-alarm-state-change", "WaitPeriod"),
        ("eventbridge-alarm-state-change", "ExtensionPeriod"),
        ("eventbridge-alarm-state-change", "Alarm"),
        ("cloudwatch-alarm-direct-invoke", "Alarm"),
    ],
)
def test_an_alarm_whose_actions_are_suppressed_does_not_act(
    world: World, lambda_context: Any, sample: str, suppressed_by: str
) -> None:
    """CloudWatch's CompositeAlarm.ActionsSuppressedBy (WaitPeriod | ExtensionPeriod | Alarm), in the state of
    a composite alarm with an actions suppressor: its actions are held back."""
    world.seed(1, 3000)
    in_flight = world.seed(2, 10, status="InProgress")
    event = world.event(sample)
    state = (event.get("detail") or event["alarmData"])["state"]
    state.update(
        actionsSuppressedBy=suppressed_by, actionsSuppressedReason=f"Actions suppressed by {suppressed_by}"
    )
    assert world.function().lambda_handler(event, lambda_context) == {"outcomes": []}
    assert world.service.get(in_flight)["status"] == "InProgress"
    assert world.notifications() == []


def test_actions_held_back_by_a_suppression_run_when_it_ends(world: World, lambda_context: Any) -> None:
    """AWS's example of a composite alarm's Lambda action: ALARM (suppressed by WaitPeriod) -> ALARM."""
    world.seed(1, 3000)
    world.seed(2, 10, status="InProgress")
    event = world.event("cloudwatch-alarm-direct-invoke")
    event["alarmData"]["previousState"].update(
        value="ALARM",
        actionsSuppressedBy="WaitPeriod",
        actionsSuppressedReason="Actions suppressed by WaitPeriod",
    )
    result = world.function().lambda_handler(event, lambda_context)
    assert [o["action"] for o in result["outcomes"]] == ["stopped"]


# ------------------------------------------------------------------------ e. answers lost and retried
def test_a_create_deployment_whose_answer_was_lost_is_reported_as_the_redeployment_it_made(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.seed(1, 3000)
    world.seed(2, 100)
    calls = lose_the_first_answer(monkeypatch, world, "CreateDeployment")
    [outcome] = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)[
        "outcomes"
    ]
    assert len(calls) == 2  # botocore retried; CodeDeploy refused the second (DeploymentLimitExceeded)
    [created] = world.created_by_function()
    assert outcome["action"] == "redeployed"
    assert outcome["redeployment"] == created["deploymentId"]
    [mail] = world.notifications()
    assert "ROLLED BACK - redeployed the last known-good revision" in mail["subject"]


def test_a_stop_deployment_whose_answer_was_lost_is_reported_as_the_stop_it_made(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.seed(1, 3000)
    in_flight = world.seed(2, 10, status="InProgress")
    calls = lose_the_first_answer(
        monkeypatch,
        world,
        "StopDeployment",
        after=lambda: wait_until(lambda: world.service.get(in_flight)["status"] == "Stopped"),
    )
    [outcome] = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)[
        "outcomes"
    ]
    assert len(calls) == 2  # botocore retried; CodeDeploy refused the second (DeploymentAlreadyCompleted)
    assert outcome["action"] == "stopped"
    assert outcome["rollback_deployment"] == world.rollback_of(in_flight)
    [mail] = world.notifications()
    assert "ROLLED BACK - stopped deployment" in mail["subject"]


# ------------------------------------------------------------------------------------ f. SNS's limits
def test_every_notification_fits_snss_limits_whatever_the_alarm_holds(
    world: World, lambda_context: Any, published: list[dict[str, Any]]
) -> None:
    world.seed(1, 100)  # no earlier good revision: ACTION NEEDED, mailed
    module = world.function(SERVICE_NAME="sample-app-with-a-name-long-enough-to-fill-a-subject-line-ü")
    event = world.event("eventbridge-alarm-state-change")
    event["detail"]["state"]["reason"] = "Threshold Crossed € \r\n\t" * 20_000  # 560,000 bytes in UTF-8
    [outcome] = module.lambda_handler(event, lambda_context)["outcomes"]
    assert outcome["action"] == "attention"
    [publish] = published
    subject, message = publish["Subject"], publish["Message"]
    assert all(" " <= c <= "~" for c in subject), subject
    assert len(subject) <= SUBJECT_MAX_CHARS
    assert len(message.encode("utf-8")) <= MESSAGE_MAX_BYTES
    # MessageStructure "json": the text for e-mail and queues, a custom notification for chat channels.
    assert publish["MessageStructure"] == "json"
    parts = json.loads(message)
    assert parts["default"].startswith("Phoenix auto-rollback: ")
    assert "Alarm reason:" in parts["default"]
    chat = json.loads(parts["https"])
    assert (chat["version"], chat["source"], chat["content"]["title"]) == ("1.0", "custom", subject)


# ---------------------------------------------------------------------------- g. never raises on input
def _deeply_nested_message(event: dict[str, Any]) -> dict[str, Any]:
    event["Records"][0]["Sns"]["Message"] = "[" * 100_000 + "]" * 100_000  # json.loads: RecursionError
    return event


def _lone_surrogate_in_the_reason(event: dict[str, Any]) -> dict[str, Any]:
    event["detail"]["state"]["reason"] = "Threshold Crossed \ud800"  # valid JSON ("\\ud800"), not UTF-8
    return event


@pytest.mark.parametrize(
    ("sample", "corrupt"),
    [
        ("sns-cloudwatch-alarm", _deeply_nested_message),
        ("eventbridge-alarm-state-change", _lone_surrogate_in_the_reason),
    ],
    ids=["100000-nested-arrays", "lone-surrogate"],
)
def test_the_handler_never_raises_whatever_the_event_holds(
    world: World, lambda_context: Any, sample: str, corrupt: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    world.seed(1, 3000)
    world.seed(2, 10, status="InProgress")
    result = world.function().lambda_handler(corrupt(world.event(sample)), lambda_context)
    assert isinstance(result, dict)

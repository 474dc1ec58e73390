"""auto_rollback: alarm shapes, stop in flight, resurrection rules, notifications, AWS errors, concurrency."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.aws.codedeploy.service import CodeDeployError
from scripts.stacks import load_template
from tests.rollback_world import CODEDEPLOY_ALARM, World, appspec, sha, wait_until

ALARM = CODEDEPLOY_ALARM


# --------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ALARM_NAMES", "", "ALARM_NAMES is required"),
        ("ALARM_NAMES", " , ", "ALARM_NAMES must list at least one alarm"),
        (
            "NOTIFICATIONS_TOPIC_ARN",
            "phoenix-dev-notifications",
            "NOTIFICATIONS_TOPIC_ARN must be an SNS topic ARN",
        ),
        ("ROLLBACK_COOLDOWN_SECONDS", "soon", "ROLLBACK_COOLDOWN_SECONDS must be a whole number"),
        ("ENVIRONMENT", "production", "ENVIRONMENT must be one of"),
        ("NOTIFY_NO_ACTION", "sometimes", "NOTIFY_NO_ACTION must be true or false"),
        (
            "DEPLOYMENT_TIMEOUT_ALARM_NAME",
            "not-listed",
            "DEPLOYMENT_TIMEOUT_ALARM_NAME must be one of ALARM_NAMES",
        ),
    ],
)
def test_bad_configuration_names_the_variable(world: World, variable: str, value: str, message: str) -> None:
    module = world.function()
    with pytest.raises(module.ConfigError, match=message):
        module.load_config({**world.env, variable: value})


def test_cooldown_defaults_to_deployment_timeout(world: World) -> None:
    env = {k: v for k, v in world.env.items() if k != "ROLLBACK_COOLDOWN_SECONDS"}
    module = world.function()
    assert module.load_config({**env, "DEPLOYMENT_TIMEOUT": "1200"}).rollback_cooldown_seconds == 1200


# --------------------------------------------------------------------------------------------- event shapes
@pytest.mark.parametrize(
    ("sample", "source"),
    [
        ("sns-cloudwatch-alarm", "sns"),
        ("eventbridge-alarm-state-change", "eventbridge"),
        ("cloudwatch-alarm-direct-invoke", "direct"),
    ],
)
def test_the_three_alarm_shapes_parse_to_the_same_transition(world: World, sample: str, source: str) -> None:
    [alarm] = world.function().parse_alarms(world.event(sample))
    assert (alarm.name, alarm.previous_state, alarm.state, alarm.source) == (ALARM, "OK", "ALARM", source)
    assert alarm.reason.startswith("Threshold Crossed")


@pytest.mark.parametrize("sample", ["sns-cloudwatch-alarm-ok", "eventbridge-alarm-state-change"])
def test_ok_transitions_and_other_alarms_take_no_action(
    world: World, lambda_context: Any, sample: str
) -> None:
    world.seed(1, 300)
    in_flight = world.seed(2, 10, status="InProgress")
    event = world.event(sample)
    if "detail" in event:
        event["detail"]["alarmName"] = "someone-elses-alarm"
    assert world.function().lambda_handler(event, lambda_context) == {"outcomes": []}
    assert world.service.get(in_flight)["status"] == "InProgress"
    assert world.notifications() == []


# --------------------------------------------------------------------------------------------- in flight
@pytest.mark.parametrize("status", ["Created", "InProgress", "Baking", "Ready"])
def test_alarm_during_a_deployment_stops_it_and_codedeploy_rolls_back(
    world: World, lambda_context: Any, status: str
) -> None:
    world.seed(1, 300)
    in_flight = world.seed(2, 10, status=status)
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert [o["action"] for o in result["outcomes"]] == ["stopped"]
    stopped = world.service.get(in_flight)
    assert stopped["status"] == "Stopped"
    rollback = world.service.get(stopped["rollbackInfo"]["rollbackDeploymentId"])
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == in_flight
    assert rollback["revision"]["appSpecContent"]["content"] == appspec(1)
    [mail] = world.notifications()
    assert mail["subject"].startswith("[dev] sample-app: ROLLED BACK - stopped deployment")
    assert len(mail["subject"]) < 100
    assert in_flight in mail["body"]
    assert "phoenix-dev-sample-app:2" in mail["body"]
    assert "phoenix-dev-sample-app:1" in mail["body"]
    assert ALARM in mail["body"]
    assert "Threshold Crossed" in mail["body"]


def test_a_deployment_codedeploy_already_stopped_is_left_alone(world: World) -> None:
    world.seed(1, 300)
    in_flight = world.seed(2, 10, status="InProgress")
    module = world.function()
    snapshot = world.service.get(in_flight)
    boto3.client("codedeploy").stop_deployment(deploymentId=in_flight, autoRollbackEnabled=True)
    wait_until(lambda: world.service.get(in_flight)["status"] == "Stopped")
    [alarm] = module.parse_alarms(world.event("sns-cloudwatch-alarm"))
    outcome = module.act(
        module.Stop(snapshot, "the alarm fired"), alarm, module.config(), time.monotonic() + 5
    )
    assert outcome.action == "none"
    assert outcome.headline == f"deployment {in_flight} already stopped by CodeDeploy"
    assert (
        len([d for d in map(world.service.get, world.service.deployment_ids()) if d["creator"] != "user"])
        == 1
    )


@pytest.mark.parametrize("refused", [True, False], ids=["stop refused: completed", "stop too late"])
def test_a_deployment_that_completes_as_it_is_stopped_is_replaced_by_the_last_known_good_revision(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    """The alarm fires at the end of the bake and the deployment completes before the stop takes (CodeDeploy
    refuses it with DeploymentAlreadyCompletedException, or the deployment ends Succeeded anyway): the bad
    release serves with no original left, so the same delivery redeploys the last known-good revision, not a
    later alarm (seen in make bench: 2 to 3 AWS minutes more)."""
    world.seed(1, 3000)
    in_flight = world.seed(2, 600, status="InProgress")
    module = world.function()
    client = module.codedeploy()

    def completes_first(**_: Any) -> Any:
        world.service.set_status(in_flight, "Succeeded")
        if refused:
            error = {"Error": {"Code": "DeploymentAlreadyCompletedException", "Message": "completed"}}
            raise ClientError(error, "StopDeployment")
        return {"status": "Succeeded", "statusMessage": "the deployment completed"}  # StopDeploymentOutput

    monkeypatch.setattr(client, "stop_deployment", completes_first)
    [outcome] = module.lambda_handler(world.event("eventbridge-alarm-state-change"), lambda_context)[
        "outcomes"
    ]
    assert outcome["action"] == "redeployed"
    [created] = world.created_by_function()
    assert created["revision"]["appSpecContent"]["content"] == appspec(1)
    [mail] = world.notifications()
    assert "ROLLED BACK - redeployed the last known-good revision" in mail["subject"]


def test_a_rollback_in_flight_is_not_stopped(world: World, lambda_context: Any) -> None:
    world.seed(1, 300)
    world.seed(2, 200, status="Stopped")
    rollback = world.seed(1, 100, status="InProgress", creator="codeDeployRollback")
    event = world.event("eventbridge-alarm-state-change")
    result = world.function().lambda_handler(event, lambda_context)
    assert result["outcomes"][0]["headline"] == f"rollback {rollback} already in progress"
    assert world.service.get(rollback)["status"] == "InProgress"
    assert world.notifications() == []  # nothing needed: logged, not mailed
    world.function(NOTIFY_NO_ACTION="true").lambda_handler(event, lambda_context)
    assert world.notifications()[0]["subject"].startswith("[dev] sample-app: NO ACTION")


# --------------------------------------------------------------------------------------------- resurrection
def test_alarm_after_completion_redeploys_the_last_known_good_revision(
    world: World, lambda_context: Any
) -> None:
    good = world.seed(1, 3000)
    serving = world.seed(2, 100)
    result = world.function().lambda_handler(world.event("cloudwatch-alarm-direct-invoke"), lambda_context)
    [outcome] = result["outcomes"]
    assert outcome["action"] == "redeployed"
    [created] = world.created_by_function()
    assert created["deploymentId"] == outcome["redeployment"]
    assert created["revision"]["appSpecContent"]["content"] == appspec(1)
    assert created["status"] == "Created"
    assert created["deploymentConfigName"] == "CodeDeployDefault.ECSAllAtOnce"
    assert created["overrideAlarmConfiguration"]["enabled"] is False
    # The record: what was handled (a hash of the alarm transition), the revision replaced, the one restored.
    assert re.fullmatch(
        f"phoenix-auto-rollback alarm=[0-9a-f]{{16}} from={sha(2)[:16]} to={sha(1)[:16]}",
        created["description"],
    )
    assert (outcome["serving_deployment"], outcome["restores_deployment"]) == (serving, good)
    [mail] = world.notifications()
    assert "ROLLED BACK - redeployed the last known-good revision" in mail["subject"]
    assert (
        "From revision:        arn:aws:ecs:us-east-1:123456789012:task-definition/phoenix-dev-sample-app:2"
        in (mail["body"])
    )
    assert (
        "To revision:          arn:aws:ecs:us-east-1:123456789012:task-definition/phoenix-dev-sample-app:1"
        in (mail["body"])
    )


def test_resurrection_skips_revisions_that_were_rolled_back_or_failed(
    world: World, lambda_context: Any
) -> None:
    world.seed(1, 5000)
    world.seed(2, 4000)
    # v2 was replaced by an automatic redeployment of v1 before (a record in the earlier, longer format), and
    # v3 failed: neither is "known-good".
    world.seed(1, 3000, description=f"phoenix-auto-rollback alarm=x alarm-time=t from-revision={sha(2)} ...")
    world.seed(2, 2000)
    world.seed(3, 1500, status="Failed")
    world.seed(4, 100)
    world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    [_, created] = world.created_by_function()
    assert created["revision"]["appSpecContent"]["content"] == appspec(1)


def test_no_action_when_the_stable_revision_already_serves(world: World, lambda_context: Any) -> None:
    world.seed(1, 3000)
    world.seed(2, 2000, status="Stopped")
    world.seed(1, 1990, creator="codeDeployRollback")
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert result["outcomes"][0]["headline"].startswith("the stable revision already serves")
    assert world.created_by_function() == []


def test_no_action_and_a_clear_notification_without_an_earlier_good_revision(
    world: World, lambda_context: Any
) -> None:
    world.seed(1, 100)
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert result["outcomes"][0]["headline"] == "no earlier known-good revision: nothing redeployed"
    [mail] = world.notifications()  # people must act (ship a fix): mailed whatever NOTIFY_NO_ACTION says
    assert (
        mail["subject"]
        == "[dev] sample-app: ACTION NEEDED - no earlier known-good revision: nothing redeployed"
    )


def test_at_most_one_redeployment_per_cooldown(world: World, lambda_context: Any) -> None:
    world.seed(1, 3000)
    world.seed(2, 2000)
    world.seed(
        1,
        300,
        description=f"phoenix-auto-rollback alarm=0123456789abcdef from={sha(2)[:16]} to={sha(1)[:16]}",
    )
    world.seed(3, 100)
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert result["outcomes"][0]["headline"].startswith("cooldown: automatic redeployment")
    assert len(world.created_by_function()) == 1


def test_duplicate_deliveries_give_one_redeployment(world: World, lambda_context: Any) -> None:
    world.seed(1, 3000)
    world.seed(2, 100)
    module = world.function(ROLLBACK_COOLDOWN_SECONDS="0")
    event = world.event("sns-cloudwatch-alarm")
    first = module.lambda_handler(event, lambda_context)["outcomes"][0]
    second = module.lambda_handler(event, lambda_context)["outcomes"][0]
    world.service.set_status(first["redeployment"], "Succeeded")
    third = module.lambda_handler(event, lambda_context)["outcomes"][0]
    assert [first["action"], second["action"], third["action"]] == ["redeployed", "none", "none"]
    assert second["headline"] == f"rollback {first['redeployment']} already in progress"
    assert third["headline"] == "this alarm was already handled (duplicate delivery)"
    assert len(world.created_by_function()) == 1


@pytest.mark.parametrize("in_flight", [True, False], ids=["stop", "resurrect"])
def test_the_same_alarm_ten_times_at_once_gives_one_rollback(  # even without reserved concurrency
    world: World, lambda_context: Any, in_flight: bool
) -> None:
    world.seed(1, 3000)
    world.seed(2, 100 if not in_flight else 2000)
    if in_flight:
        world.seed(3, 10, status="InProgress")
    module = world.function()
    event = world.event("sns-cloudwatch-alarm")
    barrier = threading.Barrier(10)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        try:
            results.extend(module.lambda_handler(event, lambda_context)["outcomes"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    actions = sorted(o["action"] for o in results)
    if in_flight:  # unserialised, every delivery asks; CodeDeploy acts on the first stop only
        assert set(actions) <= {"stopped", "none"}
        assert "stopped" in actions
    else:
        assert actions == ["none"] * 9 + ["redeployed"]
    infos = [world.service.get(i) for i in world.service.deployment_ids()]
    rollbacks = [d for d in infos if d["creator"] == "codeDeployRollback" or d in world.created_by_function()]
    assert len(rollbacks) == 1


def test_deliveries_serialised_while_the_stop_is_pending_give_one_stop_and_one_mail(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """StopDeployment answers Pending (AWS); reserved concurrency 1 queues the other deliveries behind the
    first, which waits until CodeDeploy has stopped the deployment: the rest find the rollback."""
    world.seed(1, 3000)
    in_flight = world.seed(2, 10, status="InProgress")
    world.service.stop_delay = 1.0
    stops: list[str] = []
    real_stop = world.service._op_StopDeployment

    def counted(params: dict[str, Any]) -> dict[str, Any]:
        stops.append(str(params.get("deploymentId")))
        return real_stop(params)

    monkeypatch.setattr(world.service, "_op_StopDeployment", counted)
    module = world.function()
    one_at_a_time = threading.Lock()  # the function's ReservedConcurrentExecutions: 1
    outcomes: list[dict[str, Any]] = []

    def deliver(sample: str) -> None:
        with one_at_a_time:
            outcomes.extend(module.lambda_handler(world.event(sample), lambda_context)["outcomes"])

    samples = ["sns-cloudwatch-alarm", "eventbridge-alarm-state-change", "cloudwatch-alarm-direct-invoke"] * 2
    threads = [threading.Thread(target=deliver, args=(sample,)) for sample in samples]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stops == [in_flight]
    assert sorted(o["action"] for o in outcomes) == ["none"] * 5 + ["stopped"]
    stopped = next(o for o in outcomes if o["action"] == "stopped")
    assert stopped["status"] == "Stopped"
    assert stopped["rollback_deployment"] == world.rollback_of(in_flight)
    [mail] = world.notifications()
    assert "ROLLED BACK - stopped deployment" in mail["subject"]


def test_the_in_flight_deployment_is_found_whatever_order_list_deployments_answers_in(
    world: World, lambda_context: Any
) -> None:
    """ListDeployments has no documented order (the stand-in answers oldest first): more finished deployments
    than HISTORY_MAX_DEPLOYMENTS must not hide the one in flight, nor the newest good revision."""
    for n in range(130):
        world.seed(1 + n % 2, 10_000 - n)
    in_flight = world.seed(9, 5, status="InProgress")
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert [o["action"] for o in result["outcomes"]] == ["stopped"]
    assert result["outcomes"][0]["deployment"] == in_flight
    wait_until(lambda: world.service.get(in_flight)["status"] == "Stopped")
    world.service.set_status(
        world.service.get(in_flight)["rollbackInfo"]["rollbackDeploymentId"], "Succeeded"
    )


def test_the_newest_history_is_read_even_when_listed_last(world: World, lambda_context: Any) -> None:
    for n in range(120):  # v1 and v2 alternate for a long time, then v3 is serving
        world.seed(1 + n % 2, 100_000 - n * 10)
    serving = world.seed(3, 100)
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    [outcome] = result["outcomes"]
    assert outcome["action"] == "redeployed"
    assert outcome["serving_deployment"] == serving
    [created] = world.created_by_function()
    assert created["revision"]["appSpecContent"]["content"] == appspec(2)  # the newest good one before v3


def test_the_redeployment_reads_the_appspec_back_through_get_application_revision(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS's deployment records carry only the AppSpec's sha256 (GetDeployment's documentation)."""
    world.seed(1, 3000)
    world.seed(2, 100)
    asked: list[dict[str, Any]] = []
    real = world.service._op_GetApplicationRevision

    def counted(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        return real(params)

    monkeypatch.setattr(world.service, "_op_GetApplicationRevision", counted)
    world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    [created] = world.created_by_function()
    assert created["revision"]["appSpecContent"]["content"] == appspec(1)
    assert {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": sha(1)}} in [
        a["revision"] for a in asked
    ]


def test_an_unreadable_good_revision_is_said_and_nothing_is_deployed(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.seed(1, 3000)
    world.seed(2, 100)

    def missing(params: dict[str, Any]) -> dict[str, Any]:
        raise CodeDeployError("RevisionDoesNotExistException", "The named revision does not exist.")

    monkeypatch.setattr(world.service, "_op_GetApplicationRevision", missing)
    with pytest.raises(ClientError, match="RevisionDoesNotExistException"):
        world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert world.created_by_function() == []
    [mail] = world.notifications()
    assert mail["subject"].startswith("[dev] sample-app: FAILED")
    assert "RevisionDoesNotExistException" in mail["body"]


# ----------------------------------------------------------------------------------------- deployment timeout
OVERDUE = "phoenix-dev-deployment-overdue"


def _overdue_event(world: World) -> Any:
    event = world.event("eventbridge-alarm-state-change")
    event["detail"]["alarmName"] = OVERDUE
    return event


@pytest.mark.parametrize(
    "case",
    [
        (1000, False, "stopped", "DEPLOYMENT_TIMEOUT: stopped deployment"),
        (
            300,
            False,
            "none",
            "within DEPLOYMENT_TIMEOUT (900 s), and not in Install for INSTALL_TIMEOUT (300 s)",
        ),
        (1000, True, "none", "is in its bake: not stuck"),
    ],
    ids=["overdue", "young", "baking"],
)
def test_the_deployment_timeout_alarm_stops_only_a_deployment_stuck_past_the_timeout(
    world: World, lambda_context: Any, case: tuple[float, bool, str, str]
) -> None:
    age_s, bake, expected, headline = case
    world.seed(1, 3000)
    in_flight = world.seed(2, age_s, status="InProgress")
    if bake:
        world.service.start_termination_wait(in_flight)
    env = {"ALARM_NAMES": f"{ALARM},{OVERDUE}", "DEPLOYMENT_TIMEOUT_ALARM_NAME": OVERDUE}
    result = world.function(**env).lambda_handler(_overdue_event(world), lambda_context)
    [outcome] = result["outcomes"]
    assert outcome["action"] == expected
    assert headline in outcome["headline"]
    mails = world.notifications()
    if expected == "stopped":
        assert world.service.get(in_flight)["status"] == "Stopped"
        [mail] = mails
        assert "DEPLOYMENT_TIMEOUT" in mail["subject"]
        assert "longer than DEPLOYMENT_TIMEOUT (900 s)" in mail["body"]
    else:
        assert world.service.get(in_flight)["status"] == "InProgress"
        assert mails == []


def test_the_deployment_timeout_alarm_never_redeploys(world: World, lambda_context: Any) -> None:
    world.seed(1, 3000)
    world.seed(2, 100)
    env = {"ALARM_NAMES": f"{ALARM},{OVERDUE}", "DEPLOYMENT_TIMEOUT_ALARM_NAME": OVERDUE}
    result = world.function(**env).lambda_handler(_overdue_event(world), lambda_context)
    assert result["outcomes"][0]["headline"] == "deployment timeout alarm, but no deployment is in flight"
    assert world.created_by_function() == []


# --------------------------------------------------------------------------------------------- AWS failures
def test_a_remaining_aws_error_is_notified_then_raised(world: World, lambda_context: Any) -> None:
    module = world.function(CODEDEPLOY_DEPLOYMENT_GROUP="no-such-group")
    with pytest.raises(ClientError, match="DeploymentGroupDoesNotExistException"):
        module.lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    [mail] = world.notifications()
    assert mail["subject"].startswith("[dev] sample-app: FAILED")
    assert "DeploymentGroupDoesNotExistException" in mail["body"]


def test_clients_use_botocore_standard_retries(world: World) -> None:
    module = world.function()
    assert module.codedeploy().meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
    assert module.sns().meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_the_wait_for_a_stop_keeps_back_what_the_notification_can_take(world: World) -> None:
    """Waiting for CodeDeploy to act on a stop must leave the mail its worst case (every retry, every timeout)
    within the template's Timeout, and still leave most of the function's time for the wait."""
    module = world.function()
    worst = module.worst_case_call_seconds(module.sns().meta.config)
    assert worst <= module.STOP_WAIT_RESERVE_S
    resources = load_template("lambda-functions.yaml")["Resources"]
    timeout = resources["AutoRollbackFunction"]["Properties"]["Timeout"]
    assert timeout - module.STOP_WAIT_RESERVE_S >= 60

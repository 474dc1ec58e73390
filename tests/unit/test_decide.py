"""auto_rollback.decide, as a table: an alarm and a deployment group's history (deploymentInfo dicts as boto3
returns them: datetime createTime, the AppSpec's sha256 and never its text) -> the decision. No AWS, no
clock, no environment."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import auto_rollback as ar
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
ALARM = "phoenix-dev-health-check-failed"
OVERDUE = "phoenix-dev-deployment-overdue"
CONFIG = ar.load_config(
    {
        "ENVIRONMENT": "dev",
        "CODEDEPLOY_APPLICATION": "phoenix-dev",
        "CODEDEPLOY_DEPLOYMENT_GROUP": "phoenix-dev-sample-app",
        "ALARM_NAMES": f"{ALARM},{OVERDUE}",
        "DEPLOYMENT_TIMEOUT_ALARM_NAME": OVERDUE,
        "NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:phoenix-dev-notifications",
        "DEPLOYMENT_TIMEOUT": "900",
        "ROLLBACK_COOLDOWN_SECONDS": "900",
    }
)


def sha(version: int) -> str:
    return hashlib.sha256(f"appspec of v{version}".encode()).hexdigest()


def revision(version: int) -> dict[str, Any]:
    return {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": sha(version)}}


def deployment(
    name: str, version: int, minutes_ago: float, status: str = "Succeeded", **facts: Any
) -> dict[str, Any]:
    """A deploymentInfo as BatchGetDeployments returns it for an ECS blue/green deployment; `facts`: more of
    its keys (creator, description, rollbackInfo, previousRevision, instanceTerminationWaitTimeStarted)."""
    created = NOW - timedelta(minutes=minutes_ago)
    info: dict[str, Any] = {
        "applicationName": "phoenix-dev",
        "deploymentGroupName": "phoenix-dev-sample-app",
        "deploymentConfigName": "CodeDeployDefault.ECSCanary10Percent5Minutes",
        "deploymentId": id_of(name),
        "revision": revision(version),
        "status": status,
        "createTime": created,
        "creator": "user",
        "ignoreApplicationStopFailures": False,
        "updateOutdatedInstancesOnly": False,
        "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        "instanceTerminationWaitTimeStarted": False,
        "computePlatform": "ECS",
        "fileExistsBehavior": "DISALLOW",
        "deploymentStatusMessages": [],
        "overrideAlarmConfiguration": {"enabled": False, "ignorePollAlarmFailure": False, "alarms": []},
    }
    if status in ("Succeeded", "Failed", "Stopped"):
        info["startTime"] = created + timedelta(seconds=5)
        info["completeTime"] = created + timedelta(minutes=6)
    if status in ("Failed", "Stopped"):
        info["errorInformation"] = {
            "code": "MANUAL_STOP" if status == "Stopped" else "HOOK_EXECUTION_FAILURE",
            "message": "The deployment was stopped by a user" if status == "Stopped" else "hook failed",
        }
    return {**info, **facts}


def rolled_back_by(name: str) -> dict[str, str]:
    return {"rollbackDeploymentId": id_of(name)}


def rollback_of(name: str) -> dict[str, str]:
    return {"rollbackTriggeringDeploymentId": id_of(name)}


def rollback_in_flight(minutes_ago: float) -> list[dict[str, Any]]:
    """v2 stopped, and CodeDeploy's rollback to v1 in flight."""
    return [
        GOOD,
        deployment("bad2", 2, minutes_ago * 2, "Stopped", rollbackInfo=rolled_back_by("rb1")),
        deployment(
            "rb1",
            1,
            minutes_ago,
            "InProgress",
            creator="codeDeployRollback",
            rollbackInfo=rollback_of("bad2"),
        ),
    ]


def id_of(name: str) -> str:
    return f"d-{name.upper():X<9}"[:11]


def alarm(
    name: str = ALARM,
    minutes_ago: float = 1,
    *,
    state: ar.AlarmState = "ALARM",
    previous: ar.AlarmState = "OK",
    suppressed_by: str = "",
    was_suppressed: bool = False,
) -> Any:
    when = NOW - timedelta(minutes=minutes_ago)
    return ar.Alarm(
        name=name,
        state=state,
        previous_state=previous,
        reason="Threshold Crossed: 2 out of the last 2 datapoints were greater than or equal to 1.0",
        time=when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        source="sns",
        suppressed_by=suppressed_by,
        was_suppressed=was_suppressed,
    )


def record_of(handled: Any, replaced: int, restored: int) -> str:
    return str(ar.record_text(handled, revision(replaced), revision(restored)))


HANDLED = alarm(minutes_ago=20)


def restored_then_released(minutes_ago: float) -> list[dict[str, Any]]:
    """v2 replaced by our redeployment of v1 for HANDLED `minutes_ago`, then v3 released 5 minutes ago."""
    restore = deployment("ours1", 1, minutes_ago, description=record_of(HANDLED, 2, 1))
    return [GOOD, BAD, restore, deployment("new3", 3, 5)]


@dataclass(frozen=True)
class Case:
    alarm: Any
    history: list[dict[str, Any]]
    decision: str  # the Decision's type
    says: str = ""  # how its reason (Nothing, Ignored) starts
    subject: str | None = None  # the deployment it stops (Stop) or the one it replaces (Redeploy)
    restores: int | None = None  # Redeploy: the revision that goes back
    attention: bool = False


GOOD = deployment("good1", 1, 600)
BAD = deployment("bad2", 2, 300)
CASES = {
    # The alarm alone.
    "other alarm": Case(alarm("someone-elses-alarm"), [GOOD, BAD], "Ignored", "alarm not configured"),
    "back to OK": Case(alarm(state="OK", previous="ALARM"), [GOOD, BAD], "Ignored", "not a transition"),
    "still in ALARM": Case(alarm(previous="ALARM"), [GOOD, BAD], "Ignored", "not a transition"),
    "actions suppressed": Case(
        alarm(suppressed_by="WaitPeriod"), [GOOD, BAD], "Ignored", "the alarm's actions are suppressed"
    ),
    "suppression ended": Case(
        alarm(previous="ALARM", was_suppressed=True),
        [GOOD, deployment("new2", 2, 2, "InProgress")],
        "Stop",
        subject="new2",
    ),
    # DEPLOYMENT_TIMEOUT_ALARM_NAME.
    "overdue, nothing in flight": Case(
        alarm(OVERDUE), [GOOD, BAD], "Nothing", "deployment timeout alarm, but no deployment is in flight"
    ),
    "overdue, in its bake": Case(
        alarm(OVERDUE),
        [GOOD, deployment("slow2", 2, 20, "InProgress", instanceTerminationWaitTimeStarted=True)],
        "Nothing",
        "deployment d-SLOW2XXXX has shifted its traffic and is in its bake",
    ),
    "overdue, but young": Case(
        alarm(OVERDUE),
        [GOOD, deployment("new2", 2, 5, "InProgress")],
        "Nothing",
        "deployment d-NEW2XXXXX is 300 s",
    ),
    "overdue, stuck": Case(
        alarm(OVERDUE), [GOOD, deployment("stuck2", 2, 20, "InProgress")], "Stop", subject="stuck2"
    ),
    "overdue rollback": Case(
        alarm(OVERDUE),
        rollback_in_flight(20),
        "Nothing",
        "rollback d-RB1XXXXXX already in progress",
    ),
    # A deployment in flight.
    "CodeDeploy's rollback in flight": Case(
        alarm(),
        rollback_in_flight(5),
        "Nothing",
        "rollback d-RB1XXXXXX already in progress",
    ),
    "our redeployment in flight": Case(
        alarm(),
        [GOOD, BAD, deployment("ours1", 1, 2, "Created", description=record_of(HANDLED, 2, 1))],
        "Nothing",
        "rollback d-OURS1XXXX already in progress",
    ),
    "a release in flight": Case(
        alarm(),
        [GOOD, deployment("new2", 2, 3, "Ready", previousRevision=revision(1))],
        "Stop",
        subject="new2",
    ),
    # Nothing in flight: resurrection, unless...
    "no history": Case(alarm(), [], "Nothing", "no successful deployment in the history", attention=True),
    "nothing ever succeeded": Case(
        alarm(), [deployment("bad2", 2, 30, "Failed")], "Nothing", "no successful deployment", attention=True
    ),
    "our restore rolled back": Case(
        alarm(),
        [
            GOOD,
            BAD,
            deployment(
                "ours1",
                1,
                20,
                "Failed",
                description=record_of(HANDLED, 2, 1),
                rollbackInfo=rolled_back_by("rb2"),
            ),
            deployment("rb2", 2, 18, creator="codeDeployRollback", rollbackInfo=rollback_of("ours1")),
        ],
        "Nothing",
        "the bad revision serves again: CodeDeploy rolled back the automatic redeployment d-OURS1XXXX",
        attention=True,
    ),
    "duplicate delivery": Case(
        HANDLED,
        restored_then_released(19),
        "Nothing",
        "this alarm was already handled (duplicate delivery)",
    ),
    "stale delivery": Case(
        alarm(minutes_ago=10),
        [GOOD, BAD, deployment("fix3", 3, 5)],
        "Nothing",
        "stale delivery: the alarm changed state at 2026-11-20T10:20:00.000+0000, before deployment "
        "d-FIX3XXXXX",
    ),
    "CodeDeploy's rollback serves": Case(
        alarm(),
        [
            GOOD,
            deployment("bad2", 2, 30, "Stopped", rollbackInfo=rolled_back_by("rb1")),
            deployment("rb1", 1, 29, creator="codeDeployRollback"),
        ],
        "Nothing",
        "the stable revision already serves (deployment d-RB1XXXXXX)",
    ),
    "our restore serves": Case(
        alarm(),
        [GOOD, BAD, deployment("ours1", 1, 30, description=record_of(HANDLED, 2, 1))],
        "Nothing",
        "the stable revision already serves (deployment d-OURS1XXXX)",
    ),
    "cooldown": Case(
        alarm(),
        restored_then_released(10),
        "Nothing",
        "cooldown: automatic redeployment d-OURS1XXXX is less than 900 s old",
        attention=True,
    ),
    "no earlier good revision": Case(
        alarm(), [deployment("only1", 1, 60)], "Nothing", "no earlier known-good revision", attention=True
    ),
    "the same revision twice": Case(
        alarm(),
        [GOOD, deployment("again1", 1, 60)],
        "Nothing",
        "no earlier known-good revision",
        attention=True,
    ),
    "redeploy": Case(alarm(), [GOOD, BAD], "Redeploy", subject="bad2", restores=1),
    "skips rolled back, failed, replaced": Case(
        alarm(),
        [
            deployment("v1", 1, 900),
            deployment("v2", 2, 800),
            deployment("ours1", 1, 700, description=record_of(HANDLED, 2, 1)),  # v2 was replaced: bad
            deployment("v2again", 2, 600),
            deployment("v3", 3, 500, "Failed"),
            deployment("v4", 4, 400, rollbackInfo=rolled_back_by("rb9")),
            deployment("v5", 5, 30),
        ],
        "Redeploy",
        subject="v5",
        restores=1,
    ),
    "a record in the earlier format": Case(
        alarm(),
        [
            deployment("v1", 1, 900),
            deployment("v2", 2, 800),
            deployment(
                "ours1",
                1,
                700,
                description=f"phoenix-auto-rollback alarm=x alarm-time=t from-revision={sha(2)}",
            ),
            deployment("v2again", 2, 600),
            deployment("v3", 3, 30),
        ],
        "Redeploy",
        subject="v3",
        restores=1,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: Case) -> None:
    decision = ar.decide(case.alarm, case.history, CONFIG, NOW)
    assert type(decision).__name__ == case.decision
    match decision:
        case ar.Ignored(reason=reason):
            assert reason.startswith(case.says), reason
        case ar.Nothing(reason=reason, needs_attention=attention):
            assert reason.startswith(case.says), reason
            assert attention is case.attention
        case ar.Stop(deployment=stopped):
            assert stopped["deploymentId"] == id_of(str(case.subject))
        case ar.Redeploy(revision=restored, serving=serving, description=description):
            assert restored == revision(int(str(case.restores)))
            assert serving["deploymentId"] == id_of(str(case.subject))
            assert description == ar.record_text(case.alarm, serving["revision"], restored)


def test_the_history_is_read_in_creation_order_whatever_order_it_comes_in() -> None:
    for case in CASES.values():
        expected = ar.decide(case.alarm, case.history, CONFIG, NOW)
        for order in (reversed(case.history), sorted(case.history, key=lambda d: d["deploymentId"])):
            assert ar.decide(case.alarm, list(order), CONFIG, NOW) == expected


def test_every_rule_of_the_table_decides_some_case() -> None:
    """No dead rule: each one is the first to hold for at least one case above."""
    fired: set[tuple[str, int]] = set()
    for case in CASES.values():
        situation = ar.Situation(case.alarm, CONFIG, NOW, ar.newest_first(case.history))
        tables: tuple[tuple[str, Sequence[Any]], ...] = (
            ("alarm", ar.ALARM_RULES),
            ("history", ar.HISTORY_RULES),
        )
        for table, rules in tables:
            index = next((i for i, rule in enumerate(rules) if rule.when(situation)), None)
            if index is not None:
                fired.add((table, index))
                break
    assert fired == {("alarm", i) for i in range(len(ar.ALARM_RULES))} | {
        ("history", i) for i in range(len(ar.HISTORY_RULES))
    }


def test_a_stop_for_the_deployment_timeout_says_so() -> None:
    case = CASES["overdue, stuck"]
    decision = ar.decide(case.alarm, case.history, CONFIG, NOW)
    assert decision == ar.Stop(
        case.history[-1],
        "in flight for 1200 s, longer than DEPLOYMENT_TIMEOUT (900 s)",
        cause="DEPLOYMENT_TIMEOUT",
    )


@pytest.mark.parametrize(
    ("installing_s", "expected"),
    [
        (
            301,
            "its replacement never became healthy: in Install for 301 s, longer than INSTALL_TIMEOUT (300 s)",
        ),
        (
            299,
            "and not in Install for INSTALL_TIMEOUT (300 s): a stale alarm",
        ),
        (
            None,
            "and not in Install for INSTALL_TIMEOUT (300 s): a stale alarm",
        ),
    ],
    ids=["install overdue", "install within its timeout", "not installing"],
)
def test_the_timeout_alarm_stops_a_deployment_whose_replacement_stays_in_install_past_install_timeout(
    installing_s: float | None, expected: str
) -> None:
    """Ten minutes old (within DEPLOYMENT_TIMEOUT), in Install for `installing_s` (None: Install over)."""
    stuck = deployment("stuck2", 2, 10, "InProgress")
    started = None if installing_s is None else NOW.timestamp() - installing_s
    situation = ar.Situation(alarm(OVERDUE), CONFIG, NOW, ar.newest_first([GOOD, stuck]), started)
    decision = ar.judge(situation)
    assert not isinstance(decision, ar.Redeploy)
    assert expected in (decision.why if isinstance(decision, ar.Stop) else decision.reason)
    assert isinstance(decision, ar.Stop) == (installing_s == 301)
    if isinstance(decision, ar.Stop):
        assert (decision.deployment, decision.cause) == (stuck, "INSTALL_TIMEOUT")


def test_decide_touches_no_client_and_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden() -> None:
        raise AssertionError("decide used I/O")

    for name in ("codedeploy", "sns", "config"):
        monkeypatch.setattr(ar, name, forbidden)
    for case in CASES.values():
        ar.decide(case.alarm, case.history, CONFIG, NOW)


@given(name=st.text(min_size=1, max_size=255), stamp=st.text(max_size=40))
def test_a_record_fits_codedeploys_100_characters_whatever_the_alarm(name: str, stamp: str) -> None:
    handled = ar.Alarm(name, "ALARM", "OK", "", stamp, "sns")
    text = ar.record_text(handled, revision(2), revision(1))
    assert len(text) <= ar.DESCRIPTION_MAX_CHARS
    assert ar.record({"description": text}) == {"alarm": handled.key, "from": sha(2)[:16], "to": sha(1)[:16]}


def test_one_transition_has_one_key_whichever_way_it_is_delivered() -> None:
    """SNS writes StateChangeTime, EventBridge and direct invocations state.timestamp: the same instant."""
    sns = ar.Alarm(ALARM, "ALARM", "OK", "", "2026-11-20T10:02:07.523+0000", "sns")
    eventbridge = ar.Alarm(ALARM, "ALARM", "OK", "", "2026-11-20T10:02:07.523Z", "eventbridge")
    assert sns.key == eventbridge.key
    assert sns.key != ar.Alarm(ALARM, "ALARM", "OK", "", "2026-11-20T10:09:07.523+0000", "sns").key

"""phoenix_common and the functions' text limits: CodeDeploy's and CloudWatch's vocabulary as botocore's
models have it, the worst-case time of a call, configuration parsing, the decision line, SNS's limits."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, get_args

import auto_rollback as ar
import botocore.session
import health_check as hc
import phoenix_common as common
import pytest
from botocore.config import Config as BotoConfig
from hypothesis import given
from hypothesis import strategies as st

from local.aws.lambda_bootstrap import JsonFormatter

pytestmark = pytest.mark.unit


def enum(service: str, shape: str) -> set[str]:
    return set(botocore.session.get_session().get_service_model(service).shape_for(shape).enum)


def test_the_closed_sets_are_botocores() -> None:
    assert set(get_args(common.DeploymentStatus)) == enum("codedeploy", "DeploymentStatus")
    assert enum("codedeploy", "DeploymentStatus") == common.IN_FLIGHT | common.FINISHED
    assert not common.IN_FLIGHT & common.FINISHED
    assert set(get_args(common.HookStatus)) <= enum("codedeploy", "LifecycleEventStatus")
    assert common.ROLLBACK_CREATOR in enum("codedeploy", "DeploymentCreator")
    assert set(ar.ALARM_STATES) == enum("cloudwatch", "StateValue")


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        ({"mode": "standard", "total_max_attempts": 4}, 4 * 7 + 1 + 2 + 4),
        ({"mode": "standard", "max_attempts": 3}, 4 * 7 + 1 + 2 + 4),  # max_attempts counts the retries
        ({"mode": "standard"}, 3 * 7 + 1 + 2),  # standard mode: 2 retries
        (
            {"mode": "standard", "total_max_attempts": 8},
            8 * 7 + 1 + 2 + 4 + 8 + 16 + 20 + 20,
        ),  # backoff <= 20 s
    ],
)
def test_the_worst_case_of_a_call(retries: dict[str, Any], expected: float) -> None:
    config = BotoConfig(retries=retries, connect_timeout=2, read_timeout=5)
    assert common.worst_case_call_seconds(config) == expected


def test_the_hook_keeps_back_its_answers_worst_case_and_a_second() -> None:
    assert hc.ANSWER_RESERVE_MS == 1000 * common.worst_case_call_seconds(hc.AWS_CONFIG) + 1000 == 36_000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "ENVIRONMENT is required and is not set"),
        ({"ENVIRONMENT": "qa"}, "ENVIRONMENT must be one of dev, staging, prod, got 'qa'"),
        ({"ENVIRONMENT": "dev"}, "CODEDEPLOY_APPLICATION is required and is not set"),
        (
            {"ENVIRONMENT": "dev", "HEALTH_CHECK_INTERVAL": "5"},
            "HEALTH_CHECK_INTERVAL must be a whole number of at least 10, got '5'",
        ),
        (
            {"ENVIRONMENT": "dev", "DEPLOYMENT_TIMEOUT": "1e3"},
            "DEPLOYMENT_TIMEOUT must be a whole number of at least 1",
        ),
        (
            {"ENVIRONMENT": "dev", "DEPLOYMENT_TIMEOUT": "600", "INSTALL_TIMEOUT": "601"},
            "INSTALL_TIMEOUT must be a whole number of at least 1 and at most 600, got '601'",
        ),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(common.ConfigError, match=message.replace("(", r"\(")):
        common.load_service(env)


def test_install_timeout_defaults_to_300_s_and_never_exceeds_the_deployment_timeout() -> None:
    base = {"ENVIRONMENT": "dev", "CODEDEPLOY_APPLICATION": "a", "CODEDEPLOY_DEPLOYMENT_GROUP": "g"}
    assert common.load_service(base).install_timeout == 300
    assert common.load_service({**base, "DEPLOYMENT_TIMEOUT": "120"}).install_timeout == 120
    assert common.load_service({**base, "INSTALL_TIMEOUT": "90"}).install_timeout == 90


def test_install_started_reads_only_an_install_still_in_progress() -> None:
    def answer(status: str, start: float | None) -> dict[str, object]:
        event: dict[str, object] = {"lifecycleEventName": "Install", "status": status}
        if start is not None:
            event["startTime"] = datetime.fromtimestamp(start, UTC)
        others = [{"lifecycleEventName": "BeforeInstall", "status": "Succeeded"}]
        return {
            "deploymentTargets": [
                {"deploymentTargetType": "ECSTarget", "ecsTarget": {"lifecycleEvents": [*others, event]}}
            ]
        }

    assert common.install_started(answer("InProgress", 1_700_000_000.0)) == 1_700_000_000.0
    assert common.install_started(answer("Succeeded", 1_700_000_000.0)) is None
    assert common.install_started(answer("Pending", None)) is None
    assert common.install_started({"deploymentTargets": []}) is None


def test_numbers_are_finite_and_bounded() -> None:
    env = {"RATE": "nan", "OK": "2.5", "BIG": "101"}
    with pytest.raises(
        common.ConfigError, match="RATE must be a number of at least 0 and at most 100, got 'nan'"
    ):
        common.env_number(env, "RATE", 1.0, minimum=0, maximum=100)
    assert common.env_number(env, "OK", 1.0, minimum=0) == 2.5
    assert common.env_number(env, "UNSET", 1.0, minimum=0) == 1.0
    with pytest.raises(common.ConfigError, match="BIG must be a whole number of at least 1 and at most 100"):
        common.env_integer(env, "BIG", 1, minimum=1, maximum=100)


def test_settings_are_read_on_first_use_and_a_bad_one_again_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []

    def load(env: Any) -> str:
        read.append(env.get("PHOENIX_TEST", ""))
        return str(common.env_required(env, "PHOENIX_TEST"))

    settings = common.settings(load)
    assert read == []
    monkeypatch.delenv("PHOENIX_TEST", raising=False)
    for _ in range(2):
        with pytest.raises(common.ConfigError, match="PHOENIX_TEST is required"):
            settings()
    monkeypatch.setenv("PHOENIX_TEST", "set")
    assert (settings(), settings(), read) == ("set", "set", ["", "", "set"])


def test_a_decision_is_the_message_of_lambdas_json_line_and_its_fields_are_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = common.DecisionLog("unit_test")
    caplog.set_level(logging.INFO, "phoenix.unit_test")
    at = datetime(2026, 11, 20, 10, 2, 7, tzinfo=UTC)
    log("stopped deployment d-1", logging.WARNING, action="stopped", at=at, name="taken", message="taken too")
    [line] = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    lambdas = {"timestamp": line["timestamp"], "level": "WARNING", "logger": "phoenix.unit_test"}
    assert line == {
        **lambdas,
        "message": "stopped deployment d-1",
        "function": "unit_test",
        "action": "stopped",
        "at": str(at),  # JSON cannot encode it: as text, or Lambda's formatter would lose the whole line
        "name_": "taken",  # fields named like a LogRecord's or Lambda's keys
        "message_": "taken too",
    }


def test_decisions_follow_lambdas_log_level_and_are_info_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", "WARN")  # LogFormat JSON: the runtime sets the root logger
    with_level = common.DecisionLog("unit_json")
    with_level("checked")
    assert with_level.logger.level == logging.NOTSET
    monkeypatch.delenv("AWS_LAMBDA_LOG_LEVEL")  # Text: the runtime leaves the root logger at WARNING
    without = common.DecisionLog("unit_text")
    without("checked")
    assert without.logger.getEffectiveLevel() == logging.INFO


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T10:02:07.523+0000", 1795168927.523),
        ("2026-11-20T10:02:07Z", 1795168927.0),
        ("soon", None),
    ],
)
def test_alarm_times_as_cloudwatch_writes_them(text: str, expected: float | None) -> None:
    parsed = common.parse_time(text)
    assert (parsed.timestamp() if parsed else None) == expected


@given(st.text(max_size=400))
def test_a_subject_is_what_sns_takes(text: str) -> None:
    subject = common.subject_line(text)
    assert len(subject) <= 99  # "less than 100 characters long"
    assert all(" " <= c <= "~" for c in subject)  # ASCII without line breaks or control characters


@given(st.text(max_size=2000), st.integers(min_value=64, max_value=4096))
def test_a_message_is_valid_utf8_within_its_limit(text: str, limit: int) -> None:
    fitted = common.fit_utf8(text, limit)
    assert len(fitted.encode("utf-8")) <= limit  # strict: no lone surrogate left
    if len(text.encode("utf-8", "replace")) <= limit:
        assert fitted == text.encode("utf-8", "replace").decode()


@given(st.text(max_size=300), st.text(max_size=3000), st.integers(min_value=0, max_value=120_000))
def test_a_notification_is_one_publish_for_mail_and_chat_within_snss_limit(
    subject: str, body: str, repeat: int
) -> None:
    """botocore SNS Publish: MessageStructure "json" needs a "default" string; a Message of at most 262,144
    bytes. Chat channels (HTTPS) get the custom-notification schema, the rest the text itself."""
    text = body * (repeat // max(1, len(body))) if body else body
    message = common.notification_message(subject, text)
    assert len(message.encode("utf-8")) <= common.MESSAGE_MAX_BYTES
    parts = json.loads(message)
    assert set(parts) == {"default", "https"}
    if len(json.dumps(text, ensure_ascii=False).encode()) < common.MESSAGE_MAX_BYTES // 2:
        assert parts["default"] == text.encode("utf-8", "replace").decode()
    chat = json.loads(parts["https"])
    assert (chat["version"], chat["source"]) == ("1.0", "custom")
    assert chat["content"]["title"] == common.subject_line(subject)
    assert len(chat["content"]["description"].encode()) <= common.CHAT_MAX_BYTES

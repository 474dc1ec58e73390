"""health_check, issue 9's property of the hook: the time it keeps back before its deadline covers its own
answer to CodeDeploy with every retry its client may make."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

ENV = {
    "ENVIRONMENT": "dev",
    "PRODUCTION_URL": "http://a.example",
    "TEST_URL": "http://a.example:8080",
    "CODEDEPLOY_APPLICATION": "phoenix-dev",
    "CODEDEPLOY_DEPLOYMENT_GROUP": "phoenix-dev-sample-app",
}


def test_the_hook_keeps_back_the_time_its_answer_takes_with_every_retry(
    load_lambda: Callable[[str, dict[str, str]], ModuleType],
) -> None:
    module = load_lambda("health_check", ENV)
    client = module.AWS_CONFIG
    # botocore: total_max_attempts counts every attempt, max_attempts only the retries.
    attempts = client.retries.get("total_max_attempts") or client.retries["max_attempts"] + 1
    # Standard mode waits up to min(2 ** i, 20) s before retry i (throttling; botocore's ExponentialBackoff).
    backoff = sum(min(2**retry, 20) for retry in range(attempts - 1))
    answer_s = attempts * (client.connect_timeout + client.read_timeout) + backoff
    assert 1000 * answer_s <= module.ANSWER_RESERVE_MS


def test_the_answer_is_sent_with_the_client_the_reserve_is_computed_for(
    load_lambda: Callable[[str, dict[str, str]], ModuleType],
) -> None:
    module = load_lambda("health_check", ENV)
    effective = module.codedeploy().meta.config
    assert (effective.connect_timeout, effective.read_timeout) == (2, 5)
    assert effective.retries == {"mode": "standard", "total_max_attempts": 4}
    assert module.ANSWER_RESERVE_MS == 1000 * (4 * (2 + 5) + (1 + 2 + 4)) + 1000

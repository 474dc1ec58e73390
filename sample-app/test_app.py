"""Every endpoint and every fault mode of the sample app, through Flask's test client."""

from collections.abc import Callable

import pytest
from app import ConfigError, create_app
from flask.testing import FlaskClient

Client = Callable[..., FlaskClient]


def test_index_greets_with_running_version(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.json == {"message": "Hello from Phoenix Pipeline", "version": "abc1234"}


def test_health_reports_healthy_and_version(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "healthy", "version": "abc1234"}


def test_version_endpoint_returns_app_version(client: FlaskClient) -> None:
    assert client.get("/version").json == {"version": "abc1234"}


def test_version_defaults_to_dev_without_app_version() -> None:
    app = create_app({})
    assert app.test_client().get("/version").json == {"version": "dev"}


def test_unknown_path_is_404(client: FlaskClient) -> None:
    assert client.get("/nope").status_code == 404


def test_health_fault_answers_500_but_other_endpoints_work(make_client: Client) -> None:
    client = make_client(FAULT_HEALTH_FAIL="true")
    health = client.get("/health")
    assert health.status_code == 500
    assert health.json == {"status": "unhealthy", "version": "abc1234"}
    assert client.get("/").status_code == 200


def test_degraded_health_answers_200_but_says_degraded(make_client: Client) -> None:
    client = make_client(FAULT_HEALTH_DEGRADED="true")
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json == {"status": "degraded", "version": "abc1234"}
    assert client.get("/").status_code == 200


def test_error_rate_one_fails_every_request_but_health(make_client: Client) -> None:
    client = make_client(FAULT_ERROR_RATE="1")
    assert [client.get("/").status_code for _ in range(20)] == [500] * 20
    assert client.get("/version").status_code == 500
    assert client.get("/health").status_code == 200


def test_error_rate_fails_about_that_share_of_requests(make_client: Client) -> None:
    client = make_client(FAULT_ERROR_RATE="0.3", FAULT_SEED="7")
    failed = sum(client.get("/").status_code == 500 for _ in range(1000))
    assert 230 <= failed <= 370


def test_same_seed_replays_the_same_failures(make_client: Client) -> None:
    runs = [
        [c.get("/").status_code for _ in range(50)]
        for c in (make_client(FAULT_ERROR_RATE="0.5", FAULT_SEED="42") for _ in range(2))
    ]
    assert runs[0] == runs[1]
    assert 500 in runs[0]
    assert 200 in runs[0]


def test_latency_fault_delays_every_response_including_health(
    make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr("app.time.sleep", waits.append)
    client = make_client(FAULT_LATENCY_MS="250")
    assert client.get("/health").status_code == 200
    assert client.get("/").status_code == 200
    assert waits == [0.25, 0.25]


def test_no_fault_means_no_delay(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("app.time.sleep", waits.append)
    client.get("/")
    assert waits == []


def test_faults_switch_on_after_the_delay(make_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("app.time.monotonic", lambda: clock[0])
    client = make_client(FAULT_HEALTH_FAIL="true", FAULT_AFTER_SECONDS="30")
    assert client.get("/health").status_code == 200
    clock[0] += 29.9
    assert client.get("/health").status_code == 200
    clock[0] += 0.1
    assert client.get("/health").status_code == 500


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FAULT_ERROR_RATE", "1.5", "FAULT_ERROR_RATE must be a number between 0 and 1, got '1.5'"),
        ("FAULT_ERROR_RATE", "abc", "FAULT_ERROR_RATE must be a number between 0 and 1, got 'abc'"),
        ("FAULT_ERROR_RATE", "-0.1", "FAULT_ERROR_RATE must be a number between 0 and 1"),
        ("FAULT_ERROR_RATE", "nan", "FAULT_ERROR_RATE must be a number between 0 and 1"),
        ("FAULT_LATENCY_MS", "fast", "FAULT_LATENCY_MS must be a whole number of 0 or more, got 'fast'"),
        ("FAULT_LATENCY_MS", "-5", "FAULT_LATENCY_MS must be a whole number of 0 or more"),
        ("FAULT_LATENCY_MS", "2.5", "FAULT_LATENCY_MS must be a whole number of 0 or more"),
        ("FAULT_AFTER_SECONDS", "later", "FAULT_AFTER_SECONDS must be a number of 0 or more"),
        ("FAULT_HEALTH_FAIL", "maybe", "FAULT_HEALTH_FAIL must be true or false, got 'maybe'"),
        ("FAULT_HEALTH_DEGRADED", "2", "FAULT_HEALTH_DEGRADED must be true or false, got '2'"),
        ("FAULT_SEED", "x", "FAULT_SEED must be a whole number of 0 or more"),
    ],
)
def test_bad_fault_setting_stops_the_app_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        create_app({name: value})

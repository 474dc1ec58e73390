"""Sample API that Phoenix Pipeline deploys: a greeting, a health check and the running version.

Fault injection lets a drill ship a bad release on purpose. Every fault is off unless its environment
variable is set, and a value that makes no sense stops the app at start with a message naming the variable:

- FAULT_HEALTH_FAIL=true      /health answers 500 {"status": "unhealthy"}
- FAULT_HEALTH_DEGRADED=true  /health answers 200 {"status": "degraded"} (a dependency down: load balancers
                              and container checks that read only the status code still pass it)
- FAULT_ERROR_RATE=0.0..1.0   that share of requests to the other endpoints answers 500
- FAULT_LATENCY_MS=N          every response, /health included, waits N milliseconds first
- FAULT_AFTER_SECONDS=N       the faults above switch on N seconds after the app starts (default 0)
- FAULT_SEED=N                seeds the error-rate dice so a drill can be replayed
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, Response, jsonify

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value the app cannot run with."""


@dataclass(frozen=True)
class FaultConfig:
    health_fail: bool = False
    health_degraded: bool = False
    error_rate: float = 0.0
    latency_ms: int = 0
    after_seconds: float = 0.0
    seed: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FaultConfig:
        return cls(
            health_fail=_flag(env, "FAULT_HEALTH_FAIL"),
            health_degraded=_flag(env, "FAULT_HEALTH_DEGRADED"),
            error_rate=_number(env, "FAULT_ERROR_RATE", 0.0, upper=1.0),
            latency_ms=int(_number(env, "FAULT_LATENCY_MS", 0, integer=True)),
            after_seconds=_number(env, "FAULT_AFTER_SECONDS", 0.0),
            seed=int(_number(env, "FAULT_SEED", 0, integer=True)) if env.get("FAULT_SEED") else None,
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {env[name]!r}")


def _number(
    env: Mapping[str, str], name: str, default: float, *, upper: float | None = None, integer: bool = False
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    kind = "a whole number" if integer else "a number"
    limits = f" between 0 and {upper:g}" if upper is not None else " of 0 or more"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {kind}{limits}, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (upper is not None and value > upper):
        raise ConfigError(f"{name} must be {kind}{limits}, got {raw!r}")
    return value


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """Build the app from `env` (default: the process environment); raises ConfigError on a bad value."""
    env = os.environ if env is None else env
    version = env.get("APP_VERSION", "dev")
    faults = FaultConfig.from_env(env)
    started = time.monotonic()
    dice = random.Random(faults.seed)  # noqa: S311 - fault injection, not cryptography

    def faults_on() -> bool:
        return time.monotonic() - started >= faults.after_seconds

    app = Flask(__name__)
    app.config["FAULTS"] = faults
    app.config["APP_VERSION"] = version

    @app.before_request
    def add_latency() -> None:
        if faults.latency_ms and faults_on():
            time.sleep(faults.latency_ms / 1000)

    def maybe_fail() -> tuple[Response, int] | None:
        if faults.error_rate and faults_on() and dice.random() < faults.error_rate:
            return jsonify(error="injected fault", version=version), 500
        return None

    @app.get("/")
    def index() -> Response | tuple[Response, int]:
        return maybe_fail() or jsonify(message="Hello from Phoenix Pipeline", version=version)

    @app.get("/version")
    def version_info() -> Response | tuple[Response, int]:
        return maybe_fail() or jsonify(version=version)

    @app.get("/health")
    def health() -> Response | tuple[Response, int]:
        if faults.health_fail and faults_on():
            return jsonify(status="unhealthy", version=version), 500
        if faults.health_degraded and faults_on():
            return jsonify(status="degraded", version=version)
        return jsonify(status="healthy", version=version)

    return app

"""What the drill measures for one scenario, typed: `Result`, and the JSON the report is made of.

`Result.to_json()` is what build/drill/report.json holds per scenario (dataclasses as objects, the gate as its
text); the tests and the chart read those keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

# The auto-rollback Lambda's answers that are an action on a deployment or a decision not to act.
LAMBDA_ACTIONS = ("stopped", "redeployed", "attention", "none", "failed")


class Gate(StrEnum):
    """Which of the three gates (or the product's deployment timeout) acted on the release."""

    NONE = "none"
    TEST_TRAFFIC = "test-traffic gate"
    ALARM = "alarm gate"
    TIMEOUT = "deployment timeout"
    RESURRECTION = "resurrection"
    OTHER = "other"


@dataclass(frozen=True)
class Seconds:
    """A duration in drill seconds and in AWS-equivalent seconds."""

    drill: float
    aws: float


@dataclass
class VersionCount:
    total: int = 0
    failed: int = 0
    timed_out: int = 0


@dataclass
class Users:
    """The simulated users' requests of the scenario's window, by the version that served them."""

    total: int = 0
    answered: int = 0
    failed: int = 0
    timed_out: int = 0
    blast_radius_percent: float = 0.0
    by_version: dict[str, VersionCount] = field(default_factory=dict)

    @property
    def bad(self) -> int:
        return self.failed + self.timed_out


@dataclass(frozen=True)
class Deployment:
    """The release's deployment as it ended."""

    id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    rollback_info: dict[str, Any] | None = None


@dataclass(frozen=True)
class Scorecard:
    """A deployment's scorecard, as the release-report function wrote it to the artifact bucket."""

    deployment: str
    key: str  # without its .json / .html
    verdict: str | None  # None: not written
    image_tag: str | None = None
    gates: list[str] = field(default_factory=list)  # "<lifecycle event> <status>"
    picture: bool = False  # the HTML holds the SVG chart
    linked: bool = False  # a notification links it (S3 console URL or s3:// URI)


@dataclass(frozen=True)
class Redeployment:
    """The auto-rollback Lambda's redeployment of the last known-good revision."""

    id: str
    status: str
    description: str | None = None


@dataclass(frozen=True)
class LambdaAction:
    t: float
    action: str | None
    decision: str | None
    alarm: str | None


@dataclass(frozen=True)
class Notification:
    t: float
    subject: str  # empty for EventBridge's deliveries (their text is the message)
    text: str = ""  # the message's first line


@dataclass(frozen=True)
class PipelineAction:
    """One action of the release's pipeline execution, as ListActionExecutions tells it."""

    stage: str
    action: str
    status: str
    external_id: str | None = None  # the commit, the build id, the deployment id
    error: str | None = None
    aws_seconds: float = 0.0


@dataclass(frozen=True)
class PipelineRun:
    """The pipeline execution the release's push started."""

    execution_id: str
    status: str
    commit: str | None
    trigger: str
    actions: list[PipelineAction] = field(default_factory=list)
    task_definition: str | None = None  # what CodeDeployToECS registered (the appspec's TaskDefinition)
    image: str | None = None  # that task definition's image (<IMAGE1_NAME> filled in)

    @property
    def stopped_at(self) -> str | None:
        """The stage of the first failed action (None when none failed)."""
        return next((a.stage for a in self.actions if a.status == "Failed"), None)

    @property
    def path(self) -> str:
        """push -> Source ok -> Build FAILED, for the timeline and the chart."""
        marks = {"Succeeded": "ok", "Failed": "FAILED", "InProgress": "..."}
        return " -> ".join(["push", *(f"{a.stage} {marks.get(a.status, a.status)}" for a in self.actions)])


@dataclass(frozen=True)
class Window:
    start: float
    end: float


@dataclass
class Result:
    """One scenario, measured; `failures` is check()'s answer and `outcome` its verdict."""

    scenario: str
    title: str
    expected: str
    release: str
    pipeline: PipelineRun | None = None
    deployment: Deployment | None = None
    redeployment: Redeployment | None = None
    serving_before: str = "-"
    serving_after: str = "-"
    production_traffic_reached_release: bool = False
    users: Users = field(default_factory=Users)
    gate: Gate = Gate.NONE
    actor: str = ""
    alarms_fired: list[str] = field(default_factory=list)
    rollback_deployments: list[str] = field(default_factory=list)
    automatic_redeployments: list[str] = field(default_factory=list)
    auto_rollback_lambda: list[LambdaAction] = field(default_factory=list)
    time_to_detect: Seconds | None = None
    time_to_restore: Seconds | None = None
    detect_from: str = "deployment start"
    notifications: list[Notification] = field(default_factory=list)
    scorecards: list[Scorecard] = field(default_factory=list)
    window: Window | None = None
    decision_at: float | None = None
    restore_at: float | None = None
    exposed_at: float | None = None  # when the release first received production traffic
    full_shift_at: float | None = None  # when production shifted to 100 % on the release
    claims: list[dict[str, Any]] = field(default_factory=list)  # each claim of Expected and whether it held
    failures: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return "NOT as expected" if self.failures else "as expected"

    def to_json(self) -> dict[str, Any]:
        data = {**asdict(self), "outcome": self.outcome}
        if self.pipeline is not None:
            data["pipeline"].update(path=self.pipeline.path, stopped_at=self.pipeline.stopped_at)
        return data

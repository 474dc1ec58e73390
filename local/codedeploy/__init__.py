"""CodeDeploy API stand-in: `CodeDeployService` (state, rules, engine seam) and `CodeDeployServer` (HTTP)."""

from local.codedeploy.server import CodeDeployServer
from local.codedeploy.service import (
    FINISHED_STATUSES,
    IN_FLIGHT_STATUSES,
    CodeDeployError,
    CodeDeployService,
    DeploymentEngine,
)

__all__ = [
    "FINISHED_STATUSES",
    "IN_FLIGHT_STATUSES",
    "CodeDeployError",
    "CodeDeployServer",
    "CodeDeployService",
    "DeploymentEngine",
]

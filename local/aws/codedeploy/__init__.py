"""CodeDeploy stand-in: the API (`CodeDeployService` state and rules, `CodeDeployServer` HTTP) and, in
local/aws/codedeploy/ecs_engine.py, the ECS blue/green engine that drives its deployments."""

from local.aws.codedeploy.server import CodeDeployServer
from local.aws.codedeploy.service import (
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

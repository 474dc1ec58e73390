"""CodePipeline stand-in: the API and executions (`CodePipelineService`, served by `CodePipelineServer`), the
action providers of cicd-pipeline.yaml (actions.py) and the GitHub side of the connection (connection.py)."""

from local.aws.codepipeline.service import CodePipelineService, S3Location, Trigger
from local.aws.json_api import JsonApiServer
from local.timescale import TimeScale

TARGET_PREFIX = "CodePipeline_20150709"


class CodePipelineServer(JsonApiServer[CodePipelineService]):
    """A CodePipelineService on 127.0.0.1 (AWS_ENDPOINT_URL_CODEPIPELINE)."""

    def __init__(
        self, service: CodePipelineService, *, port: int = 0, scale: TimeScale | None = None
    ) -> None:
        super().__init__(service, TARGET_PREFIX, name="codepipeline", port=port, scale=scale)


__all__ = ["CodePipelineServer", "CodePipelineService", "S3Location", "Trigger"]

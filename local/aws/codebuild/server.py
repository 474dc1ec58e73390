"""HTTP front of the CodeBuild stand-in: AWS JSON 1.1 (local/aws/json_api.py) on 127.0.0.1, reached with
AWS_ENDPOINT_URL_CODEBUILD.

    with CodeBuildServer(CodeBuildService(aws, host)) as server:   # free port on 127.0.0.1
        aws = aws.with_endpoint("codebuild", server.endpoint_url)
        server.service.aws = aws                                   # builds get every endpoint
        server.service.start_pipeline_build(...)                    # CodePipeline's entry point

Stopping the server also stops the builds still running (their shells and what they started are killed).
"""

from __future__ import annotations

from local.aws.codebuild.service import CodeBuildService
from local.aws.json_api import JsonApiServer
from local.timescale import TimeScale

# botocore's CodeBuild model, metadata.targetPrefix.
TARGET_PREFIX = "CodeBuild_20161006"


class CodeBuildServer(JsonApiServer[CodeBuildService]):
    """A CodeBuildService served over HTTP on 127.0.0.1 in a background thread."""

    def __init__(self, service: CodeBuildService, *, port: int = 0, scale: TimeScale | None = None) -> None:
        super().__init__(service, TARGET_PREFIX, name="codebuild", port=port, scale=scale)

    def stop(self) -> None:
        super().stop()
        self.service.stop()

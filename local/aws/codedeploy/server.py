"""HTTP front of the CodeDeploy stand-in: AWS JSON 1.1 (local/aws/json_api.py) on 127.0.0.1, reached with
AWS_ENDPOINT_URL_CODEDEPLOY.

    with CodeDeployServer() as server:          # free port on 127.0.0.1
        os.environ["AWS_ENDPOINT_URL_CODEDEPLOY"] = server.endpoint_url
        server.service                          # the CodeDeployService behind it
        server.use(CodeDeployService(engine))   # swap in a fresh one (same port)

`python -m local.aws.codedeploy.server --port 0` runs one in the foreground and prints its endpoint URL.
"""

from __future__ import annotations

import argparse

from local.aws.codedeploy.service import CodeDeployService, DeploymentEngine
from local.aws.json_api import JsonApiServer
from local.timescale import TimeScale

TARGET_PREFIX = "CodeDeploy_20141006"


class CodeDeployServer(JsonApiServer[CodeDeployService]):
    """A CodeDeployService served over HTTP on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        service: CodeDeployService | None = None,
        *,
        engine: DeploymentEngine | None = None,
        port: int = 0,
        scale: TimeScale | None = None,
    ) -> None:
        # With `scale`, Lambda functions' calls are served off the AWS clock (moto_server.lambda_api_call).
        super().__init__(
            service if service is not None else CodeDeployService(engine=engine),
            TARGET_PREFIX,
            name="codedeploy",
            port=port,
            scale=scale,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="CodeDeploy API stand-in (AWS JSON 1.1) on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    CodeDeployServer(port=parser.parse_args().port).serve_forever()


if __name__ == "__main__":
    main()

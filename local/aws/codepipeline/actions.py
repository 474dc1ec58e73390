"""The action providers cicd-pipeline.yaml's stages use, as the CodePipeline stand-in runs them.

- Source, AWS, CodeStarSourceConnection ([action reference](https://docs.aws.amazon.com/codepipeline/latest/
  userguide/action-reference-CodestarConnectionSource.html)): the revision is the pushed commit (a push's
  head) or the branch's head when the execution was started otherwise. `CODEBUILD_CLONE_REF` output: the
  artifact names the repository and commit and CodeBuild clones it (here: a zip holding `clone-ref.json`,
  the stand-in's own format; AWS does not document its); `CODE_ZIP`: a zip of the tree. The action's
  variables are the documented ones (AuthorDate, BranchName, CommitId, CommitMessage, ConnectionArn,
  FullRepositoryName); revisionSummary is the JSON the console shows for connections.
- Build, AWS, CodeBuild: starts a build of the project in the CodeBuild stand-in with the source artifact
  and waits for it; a failed build fails the action with CodeBuild's phase, code and message.
- Deploy, AWS, CodeDeployToECS ([action reference](https://docs.aws.amazon.com/codepipeline/latest/userguide/
  action-reference-ECSbluegreen.html)): reads the task definition, appspec and imageDetail.json from the
  input artifacts, fills `<Image1ContainerName>` with the image URI, registers the task definition, fills
  `<TASK_DEFINITION>` with its ARN, creates the deployment and ends with it: Succeeded only when the
  deployment succeeds. The files are checked as `make ship-fix` checks them (scripts/ship_fix.prepare).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from local.aws.codepipeline.connection import GitHubStandIn, SourceError
from local.aws.codepipeline.service import (
    JSON,
    ActionResult,
    ActionRun,
    CodePipelineService,
    Pipeline,
    Provider,
    ProviderKey,
    S3Location,
    Trigger,
)
from local.aws.moto_server import REGION
from scripts.ship_fix import TASK_DEFINITION_PLACEHOLDER, ShipFixError, prepare

CLONE_REF_FILE = "clone-ref.json"
# How often an action looks at the build or deployment it waits for, in AWS seconds (AWS documents no
# figure; a slower look only makes an execution end later than its deployment, never sooner).
POLL_SECONDS = 15.0
FINISHED = {"Succeeded", "Failed", "Stopped"}


@dataclass(frozen=True)
class CloneRef:
    """What a CODEBUILD_CLONE_REF source artifact tells CodeBuild to clone."""

    repository: str  # a git URL (here: the bare repository's path)
    commit: str
    branch: str
    full_repository_id: str
    connection_arn: str

    @classmethod
    def read(cls, archive: bytes) -> CloneRef:
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            data = json.loads(zipped.read(CLONE_REF_FILE))
        return cls(**data)


class Builds(Protocol):
    """The CodeBuild stand-in, as CodePipeline reaches it."""

    def start_pipeline_build(
        self,
        project_name: str,
        *,
        source: CloneRef,
        output: S3Location,
        initiator: str,
        source_artifact: S3Location | None = None,
    ) -> str: ...

    def build(self, build_id: str) -> dict[str, Any]: ...


def _zip(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    return buffer.getvalue()


def source_connection(github: GitHubStandIn, s3: Any) -> Provider:
    def run(action: ActionRun) -> ActionResult:
        config = action.configuration
        full_id, branch = config["FullRepositoryId"], config["BranchName"]
        commit_id = action.trigger.commit or github.head(full_id, branch)
        if commit_id is None:
            return ActionResult(
                "Failed",
                error_code="JobFailed",
                error_message=f"The branch {branch} of repository {full_id} does not exist or is empty",
            )
        try:
            commit = github.commit(full_id, commit_id)
        except SourceError as err:
            return ActionResult("Failed", error_code="JobFailed", error_message=str(err))
        ref = CloneRef(
            str(github.remote_url(full_id)), commit.commit_id, branch, full_id, config["ConnectionArn"]
        )
        if config.get("OutputArtifactFormat", "CODE_ZIP") == "CODEBUILD_CLONE_REF":
            body = _zip({CLONE_REF_FILE: json.dumps(ref.__dict__).encode()})
        else:
            body = github.archive(full_id, commit.commit_id)
        for location in action.outputs.values():
            s3.put_object(Bucket=location.bucket, Key=location.key, Body=body)
        url = (
            f"https://{REGION}.console.aws.amazon.com/codesuite/settings/connections/redirect?connectionArn="
            f"{config['ConnectionArn']}&referenceType=COMMIT&FullRepositoryId={full_id}&Commit={commit.commit_id}"
        )
        return ActionResult(
            "Succeeded",
            summary=commit.message.splitlines()[0] if commit.message else "",
            external_id=commit.commit_id,
            external_url=url,
            output_variables={
                "AuthorDate": commit.author_date,
                "BranchName": branch,
                "CommitId": commit.commit_id,
                "CommitMessage": commit.message,
                "ConnectionArn": config["ConnectionArn"],
                "FullRepositoryName": full_id,
            },
            revision={
                "revisionId": commit.commit_id,
                "revisionSummary": json.dumps({"ProviderType": "GitHub", "CommitMessage": commit.message}),
                "revisionUrl": url,
            },
        )

    return run


def codebuild(builds: Builds, s3: Any, sleep: Callable[[float], object]) -> Provider:
    """`sleep(aws_seconds)` between looks at the build."""

    def run(action: ActionRun) -> ActionResult:
        ((_, source),) = action.inputs.items()
        (output,) = action.outputs.values()
        try:
            ref = CloneRef.read(s3.get_object(Bucket=source.bucket, Key=source.key)["Body"].read())
        except (KeyError, ValueError, zipfile.BadZipFile) as err:
            return ActionResult(
                "Failed", error_code="JobFailed", error_message=f"cannot read the source: {err}"
            )
        build_id = builds.start_pipeline_build(
            action.configuration["ProjectName"],
            source=ref,
            output=output,
            initiator=f"codepipeline/{action.pipeline}",
            source_artifact=source,
        )
        action.progress("build started", build_id)
        build = builds.build(build_id)
        while build["buildStatus"] == "IN_PROGRESS":
            sleep(POLL_SECONDS)
            build = builds.build(build_id)
        url = (
            f"https://{REGION}.console.aws.amazon.com/codesuite/codebuild/projects/{build['projectName']}"
            f"/build/{build_id}"
        )
        if build["buildStatus"] == "SUCCEEDED":
            return ActionResult("Succeeded", summary="", external_id=build_id, external_url=url)
        failed: dict[str, Any] = next(
            (p for p in build.get("phases", []) if p.get("phaseStatus") not in (None, "SUCCEEDED")), {}
        )
        context = (failed.get("contexts") or [{}])[0]
        message = (
            f"Build terminated with state: {build['buildStatus']}. Phase: {failed.get('phaseType', '?')}, "
            f"Code: {context.get('statusCode', '')}, Message: {context.get('message', '')}"
        )
        return ActionResult(
            "Failed", external_id=build_id, external_url=url, error_code="JobFailed", error_message=message
        )

    return run


def artifact_files(s3: Any, location: S3Location) -> dict[str, bytes]:
    """Path -> content of an artifact zip in the artifact store."""
    body = s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def register_release(ecs: Any, files: Mapping[str, str], image_placeholder: str) -> tuple[str, str]:
    """CodeDeployToECS's first half: the task definition registered (image filled in) and the appspec with its
    ARN in place of `<TASK_DEFINITION>`. ShipFixError names a bad file, before anything is registered."""
    revision = prepare(files, image_placeholder)
    arn = str(ecs.register_task_definition(**revision.task_definition)["taskDefinition"]["taskDefinitionArn"])
    return arn, revision.appspec.replace(TASK_DEFINITION_PLACEHOLDER, arn)


def codedeploy_to_ecs(ecs: Any, codedeploy: Any, s3: Any, sleep: Callable[[float], object]) -> Provider:
    def run(action: ActionRun) -> ActionResult:
        config = action.configuration
        try:
            read = _reader(s3, action)  # each input artifact downloaded once
            texts = {
                "taskdef.json": read(
                    config["TaskDefinitionTemplateArtifact"],
                    config.get("TaskDefinitionTemplatePath", "taskdef.json"),
                ),
                "appspec.yml": read(
                    config["AppSpecTemplateArtifact"], config.get("AppSpecTemplatePath", "appspec.yaml")
                ),
                "imageDetail.json": read(config["Image1ArtifactName"], "imageDetail.json"),
            }
            arn, appspec = register_release(ecs, texts, f"<{config['Image1ContainerName']}>")
        except (ShipFixError, KeyError) as err:
            return ActionResult("Failed", error_code="JobFailed", error_message=str(err).strip("'\""))
        deployment_id = str(
            codedeploy.create_deployment(
                applicationName=config["ApplicationName"],
                deploymentGroupName=config["DeploymentGroupName"],
                revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
            )["deploymentId"]
        )
        action.progress(f"Deployment {deployment_id} of {arn.rsplit('/', 1)[-1]}", deployment_id)
        url = f"https://{REGION}.console.aws.amazon.com/codesuite/codedeploy/deployments/{deployment_id}"
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        while info["status"] not in FINISHED:
            sleep(POLL_SECONDS)
            info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if info["status"] == "Succeeded":
            return ActionResult(
                "Succeeded",
                summary=f"Deployment {deployment_id} succeeded",
                external_id=deployment_id,
                external_url=url,
            )
        error = info.get("errorInformation") or {}
        return ActionResult(
            "Failed",
            external_id=deployment_id,
            external_url=url,
            error_code="JobFailed",
            error_message=f"Deployment {deployment_id} {info['status'].lower()}: "
            + str(error.get("message", "")),
        )

    return run


def _reader(s3: Any, action: ActionRun) -> Callable[[str, str], str]:
    """`read(artifact, path)`: a file of one of the action's input artifacts; ShipFixError when absent."""
    downloaded: dict[str, dict[str, bytes]] = {}

    def read(artifact: str, path: str) -> str:
        if artifact not in action.inputs:
            raise ShipFixError(f"input artifact {artifact} is not an input of the action")
        if artifact not in downloaded:
            downloaded[artifact] = artifact_files(s3, action.inputs[artifact])
        if path not in downloaded[artifact]:
            raise ShipFixError(
                f"Exception while trying to read the file {path} from the artifact {artifact}: not found"
            )
        return downloaded[artifact][path].decode()

    return read


def providers(
    *,
    github: GitHubStandIn,
    builds: Builds,
    s3: Any,
    ecs: Any,
    codedeploy: Any,
    sleep: Callable[[float], object],
) -> dict[ProviderKey, Provider]:
    """The three providers cicd-pipeline.yaml names."""
    return {
        ("Source", "AWS", "CodeStarSourceConnection"): source_connection(github, s3),
        ("Build", "AWS", "CodeBuild"): codebuild(builds, s3, sleep),
        ("Deploy", "AWS", "CodeDeployToECS"): codedeploy_to_ecs(ecs, codedeploy, s3, sleep),
    }


def connect_webhooks(service: CodePipelineService, github: GitHubStandIn) -> None:
    """Each pipeline created from now on whose source is a connection with DetectChanges (the default) starts
    an execution on each push to its branch (trigger Webhook, the connection as its detail)."""

    def watch(pipeline: Pipeline, source: JSON) -> None:
        config = source.get("configuration") or {}
        type_id = source["actionTypeId"]
        if (
            type_id["provider"] != "CodeStarSourceConnection"
            or str(config.get("DetectChanges", "true")) == "false"
        ):
            return
        name, connection = pipeline.name, str(config["ConnectionArn"])

        def pushed(commit: str) -> None:
            service.start_execution(name, Trigger("Webhook", connection, commit))

        github.watch(str(config["FullRepositoryId"]), str(config["BranchName"]), pushed)

    service.on_source(watch)

"""CodeBuild stand-in: the API (`CodeBuildService`, `CodeBuildServer`) and builds that run their buildspec
for real on this machine (runner.py, shell.py, buildspec.py, reports.py)."""

from local.aws.codebuild.buildspec import Buildspec, BuildspecError, parse
from local.aws.codebuild.reports import ReportCase, TestReport
from local.aws.codebuild.runner import ArtifactLocation, BuildHost, CloneSource
from local.aws.codebuild.server import CodeBuildServer
from local.aws.codebuild.service import CodeBuildService

__all__ = [
    "ArtifactLocation",
    "BuildHost",
    "Buildspec",
    "BuildspecError",
    "CloneSource",
    "CodeBuildServer",
    "CodeBuildService",
    "ReportCase",
    "TestReport",
    "parse",
]

"""The three Phoenix stacks: their names, their order, their templates and their tags.

One owner for what `make deploy` (scripts/deploy.py), the local stand-in (local/) and the tests need to know
about the stacks the README creates:

    STACKS                  (CLUSTER, LAMBDA, PIPELINE): the README's order, each importing the previous ones
    CLUSTER.name            "ecs-cluster-stack"; CLUSTER.template "ecs-cluster.yaml"; CLUSTER.path the file
    CLUSTER.export("X")     "ecs-cluster-stack-X", the export name of its output X (<stack>-<output>)
    load_template(name)     a template as data, short-form intrinsics (!Ref, !Sub, ...) in their long form
    parse_template(text)    the same for a template body (GetTemplate's answer)
    tags(project, env)      the stack-level tags; CloudFormation propagates them to the stack's resources
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "cloudformation"


@dataclass(frozen=True)
class StackSpec:
    """One of the README's stacks: its name and the template it is created from."""

    name: str
    template: str

    @property
    def path(self) -> Path:
        return TEMPLATES / self.template

    def export(self, output: str) -> str:
        """The name under which this stack exports its output `output` (`${AWS::StackName}-<output>`)."""
        return f"{self.name}-{output}"


CLUSTER = StackSpec("ecs-cluster-stack", "ecs-cluster.yaml")
LAMBDA = StackSpec("lambda-functions-stack", "lambda-functions.yaml")
PIPELINE = StackSpec("cicd-pipeline-stack", "cicd-pipeline.yaml")
# The README's order: each stack imports the exports of the ones before it.
STACKS = (CLUSTER, LAMBDA, PIPELINE)


def tags(project: str, environment: str) -> list[dict[str, str]]:
    """The stack-level tags (ProjectName and Environment) as CreateStack and UpdateStack take them."""
    return [{"Key": "Project", "Value": project}, {"Key": "Environment", "Value": environment}]


class _TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML, keeping intrinsic functions (!Ref, !Sub, ...) as opaque values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    """!Ref X -> {"Ref": "X"}, !Sub s -> {"Fn::Sub": s}, ... (the JSON form of the short form)."""
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {key: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {key: loader.construct_sequence(node, deep=True)}
    return {key: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def parse_template(text: str) -> dict[str, Any]:
    """A CloudFormation YAML (or JSON) template body as data; {} when it is not a mapping."""
    parsed = yaml.load(text, Loader=_TemplateLoader)  # noqa: S506 - SafeLoader with intrinsic tags
    return parsed if isinstance(parsed, dict) else {}


def load_template(name: str) -> dict[str, Any]:
    """cloudformation/<name> as data."""
    return parse_template((TEMPLATES / name).read_text())

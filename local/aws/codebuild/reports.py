"""Test reports: the buildspec's `reports` groups, JUnit XML read into counts and failed test names.

CodeBuild names a report group given by name `<project-name>-<report-group-name>` and creates it on the first
build that reports to it (build-spec-ref.html, `reports`; test-report-group-naming.html). A test case's status
is SUCCEEDED, FAILED (a <failure>), ERROR (an <error>) or SKIPPED (a <skipped>), as CodeBuild's test cases
(botocore `TestCase.status`).

The counts are the stand-in's own accessor (`CodeBuildService.test_report`); BatchGetBuilds carries only the
report's ARN in `reportArns`, as on AWS.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ReportCase:
    prefix: str  # the JUnit classname
    name: str
    status: str  # SUCCEEDED, FAILED, ERROR, SKIPPED
    message: str = ""


@dataclass(frozen=True)
class TestReport:
    """One report of one build: its group, its ARN and what its files say."""

    __test__ = False  # not a pytest test class

    group: str  # the buildspec's report group name (or ARN)
    report_group_arn: str
    report_arn: str
    file_format: str
    cases: tuple[ReportCase, ...]

    def count(self, status: str) -> int:
        return sum(1 for case in self.cases if case.status == status)

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def passed(self) -> int:
        return self.count("SUCCEEDED")

    @property
    def failed(self) -> int:
        """FAILED and ERROR test cases: the tests that did not pass and were not skipped."""
        return self.count("FAILED") + self.count("ERROR")

    @property
    def skipped(self) -> int:
        return self.count("SKIPPED")

    @property
    def failed_tests(self) -> list[str]:
        return [case.name for case in self.cases if case.status in ("FAILED", "ERROR")]

    def summary(self) -> str:
        """For a notification: "1 of 25 tests failed: test_health" or "25 tests passed"."""
        if self.failed:
            return f"{self.failed} of {self.total} tests failed: {', '.join(self.failed_tests)}"
        if self.skipped:
            return f"{self.passed} of {self.total} tests passed ({self.skipped} skipped)"
        return f"{self.total} tests passed"


def junit_cases(path: Path) -> list[ReportCase]:
    """The test cases of a JUnit XML file (<testsuites> or a single <testsuite>); ValueError if unreadable."""
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - a file the build itself wrote
    except (ET.ParseError, OSError) as exc:
        raise ValueError(f"{path.name}: {exc}") from exc
    cases = []
    for case in root.iter("testcase"):
        status, message = "SUCCEEDED", ""
        for child, child_status in (("failure", "FAILED"), ("error", "ERROR"), ("skipped", "SKIPPED")):
            element = case.find(child)
            if element is not None:
                status, message = child_status, element.get("message") or (element.text or "").strip()
                break
        cases.append(ReportCase(case.get("classname", ""), case.get("name", ""), status, message))
    return cases

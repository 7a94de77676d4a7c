"""When the end-to-end suite may run (conftest.py asks): '' or the one-line reason it is skipped."""

from __future__ import annotations

from collections.abc import Mapping

import boto3

FAKE_KEYS = frozenset({"testing", "test", "fake"})  # what test suites put in AWS_ACCESS_KEY_ID
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "CODEBUILD_BUILD_ID", "BUILDKITE", "JENKINS_URL")


def skip_reason(markexpr: str, environ: Mapping[str, str]) -> str:
    """'' when the suite may run, else the one-line reason it is skipped."""
    if any(environ.get(name) for name in CI_VARIABLES):
        return "e2e: never runs in CI (it deploys a stack to a real AWS account)"
    if "e2e" not in markexpr or "not e2e" in markexpr:
        return "e2e: opt-in, run `make e2e` with real AWS credentials and PTC_E2E_CONFIRM=yes (docs/e2e.md)"
    if environ.get("PTC_E2E_CONFIRM") != "yes":
        return "e2e: set PTC_E2E_CONFIRM=yes to deploy a throwaway ptc-sync stack to your AWS account"
    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None or credentials.access_key in FAKE_KEYS:
        return "e2e: no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    if not session.region_name:
        return "e2e: no AWS region (set AWS_REGION or give the profile a region)"
    return ""

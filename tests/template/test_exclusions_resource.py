"""The stack's own pulls are not people's pulls, and its ECR upstream read roles reach the code (issue 15
items 4 and 5).

- Every function whose role may pull (``ecr:BatchGetImage``) is registered with ECR's pull-time update
  exclusion, as the stack's own resource: ``AWS::ECR::PullTimeUpdateExclusion`` (its CloudFormation
  handlers call RegisterPullTimeUpdateExclusion on create, DeregisterPullTimeUpdateExclusion on delete;
  the cfn-lint schema lists them), so it goes with the stack and no custom resource is needed.
- ``UpstreamRoleArns`` is what the planner and the checker may assume (``sts:AssumeRole``) and what
  they read as ``PTC_UPSTREAM_ROLE_ARNS``: the same roles, valid settings.
"""

from __future__ import annotations

from typing import Any

import pytest

from ptc_sync.settings import SyncSettings

from .cfn import Evaluator, environment, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
EXCLUSION_TYPE = "AWS::ECR::PullTimeUpdateExclusion"
READ_ROLES = "arn:aws:iam::111122223333:role/ptc-sync-reader,arn:aws:iam::210987654321:role/ptc-sync-reader"


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement.get("Action", [])
    return set(actions if isinstance(actions, list) else [actions])


def _statements(evaluator: Evaluator, function: str) -> list[dict[str, Any]]:
    policies = evaluator.value(RESOURCES[function]["Properties"].get("Policies", []))
    return [st for policy in policies if isinstance(policy, dict) for st in policy.get("Statement", [])]


def pulling_functions(evaluator: Evaluator) -> set[str]:
    """The functions (created with these parameters) whose role is allowed ecr:BatchGetImage."""
    return {
        name
        for name, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function"
        and evaluator.created(name)
        and any(
            st.get("Effect") == "Allow" and "ecr:BatchGetImage" in _actions(st)
            for st in _statements(evaluator, name)
        )
    }


def test_every_role_that_pulls_is_excluded_from_pull_times() -> None:
    evaluator = Evaluator(TEMPLATE)
    exclusions = {n for n, r in RESOURCES.items() if r["Type"] == EXCLUSION_TYPE}
    assert exclusions, "the stack registers its pulling roles as pull-time update exclusions"
    for name in exclusions:
        assert "Condition" not in RESOURCES[name], f"{name}: every stack needs it"
        assert set(RESOURCES[name]["Properties"]) == {"PrincipalArn"}
    excluded = {evaluator.value(RESOURCES[n]["Properties"]["PrincipalArn"]) for n in exclusions}
    pulling = pulling_functions(evaluator)
    assert pulling, "the checker pulls (refresh, pre-warm)"
    # the SAM-generated role of each function that may pull, and nothing else
    assert excluded == {f"{function}Role.Arn" for function in pulling}


def test_the_exclusion_is_created_with_the_stack() -> None:
    created = Evaluator(TEMPLATE).created_resources()
    assert {n for n, r in RESOURCES.items() if r["Type"] == EXCLUSION_TYPE} <= created


@pytest.mark.parametrize("roles", ["", READ_ROLES])
def test_read_roles_reach_the_code_that_may_assume_them(roles: str) -> None:
    evaluator = Evaluator(TEMPLATE, {"UpstreamRoleArns": roles})
    for function in ("SyncFunction", "CheckerFunction"):
        env = environment(evaluator, function)
        assert env["PTC_UPSTREAM_ROLE_ARNS"] == roles, function
        parsed = SyncSettings.model_validate({"upstream_role_arns": env["PTC_UPSTREAM_ROLE_ARNS"]})
        assumable = {
            resource
            for st in _statements(evaluator, function)
            if st.get("Effect") == "Allow" and "sts:AssumeRole" in _actions(st)
            for resource in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])
        }
        # what the function may assume is exactly what it is told to read as
        assert assumable == set(parsed.upstream_role_arns), function


def test_a_second_role_for_one_account_is_refused() -> None:
    from ptc_sync.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="more than one role for account 111122223333"):
        load_settings(
            {
                "PTC_UPSTREAM_ROLE_ARNS": "arn:aws:iam::111122223333:role/a,arn:aws:iam::111122223333:role/b",
            }
        )

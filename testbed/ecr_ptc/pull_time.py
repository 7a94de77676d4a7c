"""Pull-time exclusions (docs/ecr-facts.md "Pull time and ptc-sync's own pulls"; botocore 1.43).

Register/Deregister/ListPullTimeUpdateExclusions per account and region: principalArn of the model's
pattern (an IAM role or user; ValidationException otherwise), ExclusionAlreadyExists/ExclusionNotFound,
list pagination (maxResults 1-1000). BatchGetImage by an excluded principal leaves
``lastRecordedPullTime`` as it was (documented: "Amazon ECR will not record the pull time if an excluded
principal pulls an image"). No limit on the number of exclusions is emulated (none is published).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from moto.core.responses import ActionResult

from testbed.ecr_ptc.api import (
    _Call,
    _decode_token,
    _encode_token,
    _error,
    _max_results,
)
from testbed.ecr_ptc.base import EmulatorCore

PRINCIPAL_ARN_RE: Final = re.compile(
    r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[\w+=,.@-]+(/[\w+=,.@-]+)*$"
)


class PullTimeMixin(EmulatorCore):
    """The principals whose pulls ECR does not record, per (account, region)."""

    _exclusions: dict[tuple[str, str], dict[str, datetime]]

    def _exclusions_of(self, account: str, region: str) -> dict[str, datetime]:
        return self._exclusions.setdefault((account, region), {})

    @staticmethod
    def _principal_arn(call: _Call) -> str:
        arn = call.param("principalArn")
        if not isinstance(arn, str) or len(arn) > 200 or not PRINCIPAL_ARN_RE.fullmatch(arn):
            raise _error(
                "ValidationException",
                f"1 validation error detected: Value '{arn}' at 'principalArn' failed to satisfy "
                f"constraint: Member must satisfy regular expression pattern: {PRINCIPAL_ARN_RE.pattern}",
            )
        return arn

    def _api_register_pull_time_update_exclusion(self, call: _Call) -> ActionResult:
        arn = self._principal_arn(call)
        exclusions = self._exclusions_of(call.account, call.region)
        if arn in exclusions:
            raise _error(
                "ExclusionAlreadyExistsException",
                f"The pull time update exclusion for '{arn}' already exists in the registry "
                f"with id '{call.account}'",
            )
        exclusions[arn] = self.clock.now()
        return ActionResult({"principalArn": arn, "createdAt": exclusions[arn]})

    def _api_deregister_pull_time_update_exclusion(self, call: _Call) -> ActionResult:
        arn = self._principal_arn(call)
        exclusions = self._exclusions_of(call.account, call.region)
        if exclusions.pop(arn, None) is None:
            raise _error(
                "ExclusionNotFoundException",
                f"The pull time update exclusion for '{arn}' was not found in the registry "
                f"with id '{call.account}'",
            )
        return ActionResult({"principalArn": arn})

    def _api_list_pull_time_update_exclusions(self, call: _Call) -> ActionResult:
        arns = list(self._exclusions_of(call.account, call.region))
        limit = _max_results(call.param("maxResults"))
        offset = _decode_token(call.param("nextToken"))
        page = arns[offset : offset + limit] if limit else arns[offset:]
        out: dict[str, Any] = {"pullTimeUpdateExclusions": page}
        if limit and offset + limit < len(arns):
            out["nextToken"] = _encode_token(offset + limit)
        return ActionResult(out)

    def _excluded_from_pull_time(self, call: _Call) -> bool:
        exclusions = self._exclusions.get((call.account, call.region), {})
        return bool(exclusions) and not call.principal_arns().isdisjoint(exclusions)

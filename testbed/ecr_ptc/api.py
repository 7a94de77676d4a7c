"""What every emulated ECR call shares: one request as moto hands it over (``_Call``), the emulator's
error type, pagination tokens and ``maxResults``, image-id checks and failure entries.

Facts that live here (docs/ecr-facts.md): the ``ImageFailureCode`` enum, exactly (``FAILURE_CODES``,
"Newer ECR features that touch a refresh": the emulation never invents another code); the model's
digest patterns; a cross-account ``registryId`` is refused (InvalidParameterException, not emulated).
The caller is who moto says it is: an assumed-role session counts as its role's ARN, moto's default
caller as ``arn:aws:iam::<account>:user/moto`` (inferred).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from moto.core.exceptions import ServiceException
from moto.ecr.exceptions import (
    RepositoryNotFoundException,
)
from moto.ecr.models import ECRBackend, Repository, ecr_backends
from moto.ecr.responses import ECRResponse

DEFAULT_ACCOUNT_ID: Final = "123456789012"  # moto's default account
DEFAULT_REGION: Final = "us-east-1"

LAYER_DIGEST_RE: Final = re.compile(r"^[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+$")
IMAGE_DIGEST_RE: Final = re.compile(r"^sha256:[a-f0-9]{64}$")

# botocore's ImageFailureCode enum, exactly: the only failure codes the emulation answers with.
FAILURE_CODES: Final = frozenset(
    {
        "InvalidImageDigest",
        "InvalidImageTag",
        "ImageTagDoesNotMatchDigest",
        "ImageNotFound",
        "MissingDigestAndTag",
        "ImageReferencedByManifestList",
        "KmsError",
        "UpstreamAccessDenied",
        "UpstreamTooManyRequests",
        "UpstreamUnavailable",
        "ImageInaccessible",
    }
)


class EmulatedEcrError(ServiceException):
    """An ECR error of the emulator; moto serialises it by ``code``, the model's exception name.

    (Defined here, outside moto's packages: moto looks up the service model of an exception by the
    package that defines it, and ``moto.core`` has none.)"""


def _error(code: str, message: str) -> EmulatedEcrError:
    return EmulatedEcrError(code, message)


class _Call:
    """One ECR request as moto hands it to a response method."""

    def __init__(self, response: ECRResponse) -> None:
        self.response = response
        self.account: str = response.current_account
        self.region: str = response.region
        registry_id = response._get_param("registryId")
        if registry_id and registry_id != self.account:
            raise _error(
                "InvalidParameterException",
                "the emulator does not serve cross-account registryId",
            )

    def param(self, name: str, default: Any = None) -> Any:
        return self.response._get_param(name, default)

    @property
    def backend(self) -> ECRBackend:
        return ecr_backends[self.account][self.region]

    def repository(self, name: str) -> Repository:
        repository = self.backend.repositories.get(name)
        if repository is None:
            raise RepositoryNotFoundException(name, self.account)
        return repository

    def principal_arns(self) -> set[str]:
        """The IAM principal(s) this request is made as: an assumed role's ARN, an IAM user's, or
        ``arn:aws:iam::<account>:user/moto`` for moto's default credentials."""
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        access_key = self.response.get_access_key()
        for account in list(sts_backends):
            for sts in sts_backends[account].values():
                assumed = sts.get_assumed_role_from_access_key(access_key)
                if assumed is not None:
                    return {assumed.role_arn, assumed.arn}
        for account in list(iam_backends):
            for iam in iam_backends[account].values():
                user = iam.get_user_from_access_key_id(access_key)
                if user is not None:
                    return {user.arn}
        return {f"arn:aws:iam::{self.account}:user/moto"}


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _error(
            "InvalidParameterException",
            "Invalid parameter at 'nextToken': invalid token",
        ) from exc
    if not isinstance(offset, int) or offset < 0:
        raise _error(
            "InvalidParameterException",
            "Invalid parameter at 'nextToken': invalid token",
        )
    return offset


def _max_results(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or not 1 <= value <= 1000:
        raise _error(
            "ValidationException",
            f"1 validation error detected: Value '{value}' at 'maxResults' failed to satisfy constraint: "
            "Member must have value between 1 and 1000",
        )
    return value


def _invalid_image_id(image_id: Mapping[str, str]) -> dict[str, str] | None:
    """The failure for an imageId that names no image at all, or None when it is well-formed."""
    if not image_id.get("imageTag") and not image_id.get("imageDigest"):
        return {
            "failureCode": "MissingDigestAndTag",
            "failureReason": "Invalid request parameters: both tag and digest cannot be null",
        }
    digest = image_id.get("imageDigest")
    if digest and not LAYER_DIGEST_RE.fullmatch(digest):
        return {
            "failureCode": "InvalidImageDigest",
            "failureReason": "Invalid request parameters: image digest should satisfy the regex "
            "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
        }
    return None


def _failure(image_id: Mapping[str, str], code: str, reason: str) -> dict[str, Any]:
    return {"imageId": dict(image_id), "failureCode": code, "failureReason": reason}

"""Pull-through cache rules: Create/Describe/Delete/Update/ValidatePullThroughCacheRule, which rule a
repository falls under and what upstream path it maps to, and the rule's secret.

Facts that live here (docs/ecr-facts.md: "Upstreams", "Repositories inside a PTC namespace" (names),
"Roles for ECR-to-ECR rules", "`upstreamRepositoryPrefix` is not only for ECR upstreams", "APIs"
(DescribePullThroughCacheRules)). The request and response fields of botocore's ECR model: prefix 2-30
characters of the model's pattern or ``ROOT``, the ``credentialArn`` pattern and length, the
``upstreamRegistry`` enum, ``createdAt``/``updatedAt``, describe pagination (maxResults 1-1000,
nextToken), PullThroughCacheRuleAlreadyExists/NotFound, SecretNotFound (documented). ``customRoleArn``
is for ``ecr`` upstreams and needed only when the upstream registry is in another account (documented:
pull-through-cache-private; the role must be in the rule's account, botocore).
``upstreamRepositoryPrefix`` is accepted for every kind (the model does not restrict it; Chainguard's
ECR guide uses it) and refused with a ROOT cache prefix unless it is ROOT itself (documented:
pull-through-cache-private-wildcards); ``ecr`` rules report ``ROOT`` when it was not given. Names map as
prefix + "/" + upstream path (``ROOT``: the whole name; a rule's ``upstreamRepositoryPrefix``, of any
kind, replaces the cache prefix unless ROOT). The secret is JSON with ``username`` and ``accessToken``;
an unusable one raises UnableToGetUpstreamImageException on a pull.

Inferred: credentials required for docker-hub, github, azure, gitlab, chainguard and refused for the
others; ``customRoleArn`` refused for non-``ecr`` kinds; the URL must be the enum's host (unknown URL:
UnsupportedUpstreamRegistryException); the secret must be in the rule's account and region
(UnableToAccessSecretException); model constraint violations raise ValidationException, semantic ones
InvalidParameterException; at most 50 rules; a trailing ``/`` of a prefix is dropped; the longest
matching prefix wins, ``ROOT`` last. Validate reports ``failure`` as "<code>: <reason>". IAM is not
emulated: ``customRoleArn`` is checked for shape and account, ``ecr`` upstreams are read anonymously.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from moto.core.exceptions import JsonRESTError, ServiceException
from moto.core.responses import ActionResult

from testbed.ecr_ptc.api import (
    _Call,
    _decode_token,
    _encode_token,
    _error,
    _max_results,
)
from testbed.ecr_ptc.upstream import UpstreamMixin, _UpstreamClient, _UpstreamError

MAX_RULES: Final = 50

# Patterns and limits from botocore's ECR service model.
PREFIX_RE: Final = re.compile(
    r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$"
)
CREDENTIAL_ARN_RE: Final = re.compile(
    r"^arn:aws(-\w+)*:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/[a-zA-Z0-9\/_+=.@-]+$"
)

UPSTREAM_REGISTRIES: Final = (
    "ecr",
    "ecr-public",
    "quay",
    "k8s",
    "docker-hub",
    "github-container-registry",
    "azure-container-registry",
    "gitlab-container-registry",
    "chainguard",
)
FIXED_HOSTS: Final[dict[str, str]] = {
    "ecr-public": "public.ecr.aws",
    "k8s": "registry.k8s.io",
    "quay": "quay.io",
    "docker-hub": "registry-1.docker.io",
    "github-container-registry": "ghcr.io",
    "gitlab-container-registry": "registry.gitlab.com",
    "chainguard": "cgr.dev",
}
AZURE_HOST_RE: Final = re.compile(r"^[a-z0-9]{5,50}\.azurecr\.io$")
ECR_HOST_RE: Final = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$")
ROLE_ARN_RE: Final = re.compile(r"^arn:aws(-\w+)*:iam::([0-9]{12}):role/[\w+=,.@/-]+$")
SECRET_ARN_PARTS_RE: Final = re.compile(r"^arn:[^:]+:secretsmanager:([^:]+):([0-9]{12}):secret:.+$")
CREDENTIALS_REQUIRED: Final = frozenset(
    {
        "docker-hub",
        "github-container-registry",
        "azure-container-registry",
        "gitlab-container-registry",
        "chainguard",
    }
)


@dataclass
class _Rule:
    prefix: str
    upstream_url: str
    upstream_registry: str
    registry_id: str
    created_at: datetime
    updated_at: datetime
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_repository_prefix: str | None = None
    version: int = 1

    def api(self, *, timestamps: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ecrRepositoryPrefix": self.prefix,
            "upstreamRegistryUrl": self.upstream_url,
            "registryId": self.registry_id,
            "upstreamRegistry": self.upstream_registry,
        }
        if timestamps:
            out["createdAt"] = self.created_at
            out["updatedAt"] = self.updated_at
        for key, value in (
            ("credentialArn", self.credential_arn),
            ("customRoleArn", self.custom_role_arn),
            ("upstreamRepositoryPrefix", self.upstream_repository_prefix),
        ):
            if value is not None:
                out[key] = value
        return out

    def upstream_repository(self, repository: str) -> str | None:
        """The upstream path this rule maps ``repository`` to, or None when the name is not under it."""
        if self.prefix == "ROOT":
            rest = repository
        elif repository.startswith(self.prefix + "/"):
            rest = repository[len(self.prefix) + 1 :]
        else:
            return None
        upstream_prefix = self.upstream_repository_prefix
        if upstream_prefix and upstream_prefix != "ROOT":
            return f"{upstream_prefix.rstrip('/')}/{rest}"
        return rest


@dataclass(frozen=True)
class _Target:
    """One tag of one PTC repository and where the rule says it comes from."""

    account: str
    region: str
    repository: str
    tag: str
    rule: _Rule
    upstream: str  # upstream repository path

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.account, self.region, self.repository, self.tag)

    @property
    def source(self) -> str:
        return f"{self.rule.upstream_url}/{self.upstream}:{self.tag}"


def _validate_prefix(value: Any, name: str) -> str:
    if not isinstance(value, str) or not 2 <= len(value) <= 30 or not PREFIX_RE.fullmatch(value):
        raise _error(
            "ValidationException",
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: "
            f"Member must have length between 2 and 30 and satisfy regular expression pattern: "
            f"{PREFIX_RE.pattern}",
        )
    return value if value == "ROOT" else value.rstrip("/")


class RulesMixin(UpstreamMixin):
    """The rules of each (account, region), their API and the secret each one pulls with."""

    _rules: dict[tuple[str, str], dict[str, _Rule]]

    def upstream_for(self, repository: str) -> tuple[str, str] | None:
        """(upstream host, upstream repository) that ``repository`` is cached from, or None."""
        match = self._match_rule(self.account_id, self.region, repository)
        return (match[0].upstream_url, match[1]) if match else None

    def _rules_of(self, account: str, region: str) -> dict[str, _Rule]:
        return self._rules.setdefault((account, region), {})

    def _rule(self, call: _Call, prefix: str) -> _Rule:
        rule = self._rules_of(call.account, call.region).get(prefix)
        if rule is None:
            raise _error(
                "PullThroughCacheRuleNotFoundException",
                f"The pull through cache rule with prefix '{prefix}' does not exist "
                f"in the registry with id '{call.account}'",
            )
        return rule

    def _match_rule(self, account: str, region: str, repository: str) -> tuple[_Rule, str] | None:
        rules = self._rules.get((account, region), {})
        for prefix in sorted((p for p in rules if p != "ROOT"), key=len, reverse=True):
            upstream = rules[prefix].upstream_repository(repository)
            if upstream is not None:
                return rules[prefix], upstream
        if "ROOT" in rules:
            return rules["ROOT"], rules["ROOT"].upstream_repository(repository) or repository
        return None

    @staticmethod
    def _upstream_kind(url: Any, kind: Any) -> str:
        if not isinstance(url, str) or not url:
            raise _error("ValidationException", "upstreamRegistryUrl is required")
        if kind is not None and kind not in UPSTREAM_REGISTRIES:
            raise _error(
                "ValidationException",
                f"1 validation error detected: Value '{kind}' at 'upstreamRegistry' failed to satisfy "
                f"constraint: Member must satisfy enum value set: [{', '.join(UPSTREAM_REGISTRIES)}]",
            )
        inferred = next((k for k, host in FIXED_HOSTS.items() if host == url), None)
        if inferred is None and AZURE_HOST_RE.fullmatch(url):
            inferred = "azure-container-registry"
        if inferred is None and ECR_HOST_RE.fullmatch(url):
            inferred = "ecr"
        if inferred is None:
            raise _error(
                "UnsupportedUpstreamRegistryException",
                f"The upstream registry '{url}' is not supported",
            )
        if kind is not None and kind != inferred:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter: upstreamRegistryUrl '{url}' is not a {kind} registry URL",
            )
        return inferred

    def _check_secret(self, call: _Call, arn: str) -> None:
        match = SECRET_ARN_PARTS_RE.match(arn)
        if match is None or (match.group(1), match.group(2)) != (
            call.region,
            call.account,
        ):
            raise _error(
                "UnableToAccessSecretException",
                f"The secret '{arn}' must be in the same account and region as the registry",
            )
        from moto.secretsmanager.models import secretsmanager_backends

        if arn not in secretsmanager_backends[call.account][call.region].secrets:
            raise _error("SecretNotFoundException", f"The secret '{arn}' was not found")

    def _check_credential_arn(self, call: _Call, arn: Any) -> None:
        if not isinstance(arn, str) or not 50 <= len(arn) <= 612 or not CREDENTIAL_ARN_RE.fullmatch(arn):
            raise _error(
                "ValidationException",
                f"1 validation error detected: Value '{arn}' at 'credentialArn' failed to satisfy "
                f"constraint: Member must satisfy regular expression pattern: {CREDENTIAL_ARN_RE.pattern}",
            )
        self._check_secret(call, arn)

    @staticmethod
    def _check_role_arn(call: _Call, arn: Any) -> None:
        match = ROLE_ARN_RE.fullmatch(arn) if isinstance(arn, str) and len(arn) <= 2048 else None
        if match is None or match.group(2) != call.account:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter: customRoleArn '{arn}' must be an IAM role in account {call.account}",
            )

    def _api_create_pull_through_cache_rule(self, call: _Call) -> ActionResult:
        prefix = _validate_prefix(call.param("ecrRepositoryPrefix"), "ecrRepositoryPrefix")
        url = call.param("upstreamRegistryUrl")
        kind = self._upstream_kind(url, call.param("upstreamRegistry"))
        credential_arn = call.param("credentialArn")
        role_arn = call.param("customRoleArn")
        upstream_prefix = call.param("upstreamRepositoryPrefix")
        if upstream_prefix is not None:
            upstream_prefix = _validate_prefix(upstream_prefix, "upstreamRepositoryPrefix")
            if prefix == "ROOT" and upstream_prefix != "ROOT":
                raise _error(
                    "InvalidParameterException",
                    "Invalid parameter: upstreamRepositoryPrefix can only be set when ecrRepositoryPrefix "
                    "is not ROOT",
                )
        if kind in CREDENTIALS_REQUIRED and credential_arn is None:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter: credentialArn is required for {kind}",
            )
        if kind not in CREDENTIALS_REQUIRED and credential_arn is not None:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter: credentialArn is not supported for {kind}",
            )
        if kind == "ecr" and role_arn is None and url.split(".", 1)[0] != call.account:
            raise _error(
                "InvalidParameterException",
                "Invalid parameter: customRoleArn is required for an ecr upstream in another account",
            )
        if kind != "ecr" and role_arn is not None:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter: customRoleArn is not supported for {kind}",
            )
        if credential_arn is not None:
            self._check_credential_arn(call, credential_arn)
        if role_arn is not None:
            self._check_role_arn(call, role_arn)
        rules = self._rules_of(call.account, call.region)
        if prefix in rules:
            raise _error(
                "PullThroughCacheRuleAlreadyExistsException",
                f"A pull through cache rule with prefix '{prefix}' already exists in the registry "
                f"with id '{call.account}'",
            )
        if len(rules) >= MAX_RULES:
            raise _error(
                "LimitExceededException",
                f"The limit of {MAX_RULES} pull through cache rules is reached",
            )
        now = self.clock.now()
        rule = _Rule(
            prefix=prefix,
            upstream_url=url,
            upstream_registry=kind,
            registry_id=call.account,
            created_at=now,
            updated_at=now,
            credential_arn=credential_arn,
            custom_role_arn=role_arn,
            upstream_repository_prefix=(upstream_prefix or "ROOT") if kind == "ecr" else upstream_prefix,
        )
        rules[prefix] = rule
        out = rule.api(timestamps=False)
        out["createdAt"] = now
        return ActionResult(out)

    def _api_describe_pull_through_cache_rules(self, call: _Call) -> ActionResult:
        rules = self._rules_of(call.account, call.region)
        prefixes = call.param("ecrRepositoryPrefixes")
        limit = _max_results(call.param("maxResults"))
        offset = _decode_token(call.param("nextToken"))
        if prefixes:
            selected = [self._rule(call, _validate_prefix(p, "ecrRepositoryPrefixes")) for p in prefixes]
        else:
            selected = list(rules.values())
        page = selected[offset : offset + limit] if limit else selected[offset:]
        out: dict[str, Any] = {"pullThroughCacheRules": [r.api() for r in page]}
        if limit and offset + limit < len(selected):
            out["nextToken"] = _encode_token(offset + limit)
        return ActionResult(out)

    def _api_delete_pull_through_cache_rule(self, call: _Call) -> ActionResult:
        prefix = _validate_prefix(call.param("ecrRepositoryPrefix"), "ecrRepositoryPrefix")
        rule = self._rule(call, prefix)
        del self._rules_of(call.account, call.region)[prefix]
        out = rule.api(timestamps=False)
        out.pop("upstreamRegistry")
        out["createdAt"] = rule.created_at
        return ActionResult(out)

    def _api_update_pull_through_cache_rule(self, call: _Call) -> ActionResult:
        rule = self._rule(
            call,
            _validate_prefix(call.param("ecrRepositoryPrefix"), "ecrRepositoryPrefix"),
        )
        credential_arn = call.param("credentialArn")
        role_arn = call.param("customRoleArn")
        if credential_arn is None and role_arn is None:
            raise _error("InvalidParameterException", "Invalid parameter: nothing to update")
        if credential_arn is not None:
            if rule.upstream_registry not in CREDENTIALS_REQUIRED:
                raise _error(
                    "InvalidParameterException",
                    f"Invalid parameter: credentialArn is not supported for {rule.upstream_registry}",
                )
            self._check_credential_arn(call, credential_arn)
            rule.credential_arn = credential_arn
        if role_arn is not None:
            if rule.upstream_registry != "ecr":
                raise _error(
                    "InvalidParameterException",
                    f"Invalid parameter: customRoleArn is not supported for {rule.upstream_registry}",
                )
            self._check_role_arn(call, role_arn)
            rule.custom_role_arn = role_arn
        rule.updated_at = self.clock.now()
        rule.version += 1
        out = rule.api(timestamps=False)
        for key in ("upstreamRegistryUrl", "upstreamRegistry"):
            out.pop(key)
        out["updatedAt"] = rule.updated_at
        return ActionResult(out)

    def _api_validate_pull_through_cache_rule(self, call: _Call) -> ActionResult:
        rule = self._rule(
            call,
            _validate_prefix(call.param("ecrRepositoryPrefix"), "ecrRepositoryPrefix"),
        )
        failure: str | None = None
        try:
            credentials = self._credentials(rule)
            _UpstreamClient(self, rule.upstream_url, credentials).ping()
        except _UpstreamError as exc:
            failure = f"{exc.code}: {exc.reason}"
        except ServiceException as exc:  # the secret
            failure = f"{exc.code}: {exc.message}"
        out = rule.api(timestamps=False)
        out.pop("upstreamRegistry")
        out["isValid"] = failure is None
        if failure is not None:
            out["failure"] = failure
        return ActionResult(out)

    def _credentials(self, rule: _Rule) -> tuple[str, str] | None:
        """The rule's secret as (username, accessToken); UnableToGetUpstreamImageException when unusable."""
        if rule.credential_arn is None:
            return None
        from moto.secretsmanager.models import secretsmanager_backends

        arn = rule.credential_arn
        match = SECRET_ARN_PARTS_RE.match(arn)
        if match is None:
            raise _error(
                "UnableToGetUpstreamImageException",
                f"The secret '{arn}' is not a secret ARN",
            )
        backend = secretsmanager_backends[match.group(2)][match.group(1)]
        try:
            value = backend.get_secret_value(arn, None, None)  # type: ignore[arg-type]
        except JsonRESTError as exc:
            raise _error(
                "UnableToGetUpstreamImageException",
                f"Unable to read the secret '{arn}'",
            ) from exc
        try:
            doc = json.loads(value.get("SecretString") or "")
            username, token = doc["username"], doc["accessToken"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _error(
                "UnableToGetUpstreamImageException",
                f"The secret '{arn}' must be JSON with the keys username and accessToken",
            ) from exc
        if not isinstance(username, str) or not isinstance(token, str):
            raise _error(
                "UnableToGetUpstreamImageException",
                f"The secret '{arn}' has malformed credentials",
            )
        return username, token

"""Who may read an ECR upstream registry: STS trust and repository policies (docs/ecr-facts.md, "Roles for
ECR-to-ECR rules"; docs/ecr-behaviour.md, "Naming and rules").

moto answers every ``sts:AssumeRole`` and every ``GetAuthorizationToken`` and checks no policy. While an
``AccessEmulation`` is installed (opt-in: ``with AccessEmulation() as access``, inside ``mock_aws()``):

- **Trust.** ``AssumeRole`` succeeds only when the role exists in moto's IAM of its account and its trust
  policy allows ``sts:AssumeRole`` to the caller: its role ARN (an assumed-role session counts as its
  role), its account (``arn:aws:iam::<account>:root`` or the bare account id: the account delegates to
  its IAM policies, which are not emulated, so it is taken as allowed) or ``*``. A ``Deny`` statement
  naming the caller wins. Otherwise ``AccessDenied``, with IAM's message ("User: … is not authorized to
  perform: sts:AssumeRole on resource: …"; documented: IAM user guide, troubleshoot_roles). A service
  principal (``pullthroughcache.ecr.amazonaws.com``) never matches a caller: a rule's ``customRoleArn``,
  whose documented trust names only ECR's service, cannot be assumed by ptc-sync (``create_role``
  builds such a role for tests). The other way round, ECR's own import through an ``ecr`` rule needs
  its ``customRoleArn`` to trust that service principal (``ecr_service_refusal``, used by ``pulls``:
  otherwise the pull fails UpstreamAccessDenied).
- **Tokens.** ``GetAuthorizationToken`` issues a token bound to the caller (``AWS:<password>``, the
  password unique per call), as real tokens are: they carry the caller's identity to the registry.
- **The upstream registry.** ``gate(host, registry_url)`` serves an ECR registry's HTTP API on loopback
  in front of a registry: Basic auth only (``WWW-Authenticate: Basic realm="https://<host>/",
  service="ecr.amazonaws.com"``, as ECR's registry endpoint answers), a token from above, and then the
  pull is allowed when the token's principal is in the registry's own account (identity policies are not
  emulated: same-account reads are taken as granted) or the repository's policy
  (``set_repository_policy``) allows ``ecr:BatchGetImage`` to it (Principal AWS: its role ARN, its
  account, or ``*``). Otherwise 403 with ECR's ``DENIED`` body ("… is not authorized to perform:
  ecr:BatchGetImage on resource: … because no resource-based policy allows the ecr:BatchGetImage
  action"; the body's wording is inferred from users' reports).

Inferred: role paths, conditions (``sts:ExternalId``, ``aws:PrincipalOrgID``) and session policies are
not evaluated; a policy's ``NotPrincipal``/``NotAction`` are not supported (refused with ValueError).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Final, Self

import urllib3
from moto.core.responses import ActionResult
from moto.ecr.responses import ECRResponse
from moto.iam.models import iam_backends
from moto.sts.exceptions import STSClientError
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse

from testbed.fault_server import FaultServer, Recorded, Reply, forward

ECR_SERVICE_PRINCIPAL: Final = "pullthroughcache.ecr.amazonaws.com"
PULL_ACTION: Final = "ecr:BatchGetImage"
_MISSING: Final = object()


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policy: str | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    doc = json.loads(policy) if isinstance(policy, str) else policy
    statements = _as_list(doc.get("Statement", []))
    for st in statements:
        if "NotPrincipal" in st or "NotAction" in st:
            raise ValueError("NotPrincipal and NotAction are not emulated")
    return statements


def _action_matches(patterns: Any, action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in _as_list(patterns))


def _principal_matches(principal: Any, callers: set[str], account: str) -> bool:
    """Whether a statement's Principal names a caller (its ARNs ``callers``, of ``account``)."""
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    for named in map(str, _as_list(principal.get("AWS", []))):
        if named == "*" or named in callers or named in {account, f"arn:aws:iam::{account}:root"}:
            return True
    return False  # Service / Federated principals are never an AWS caller


def allows(policy: str | Mapping[str, Any], action: str, callers: set[str], account: str) -> bool:
    """A resource policy's answer (trust policy, repository policy): an Allow names the caller for
    ``action`` and no Deny does."""
    allowed = False
    for st in _statements(policy):
        if not _action_matches(st.get("Action", []), action):
            continue
        if not _principal_matches(st.get("Principal"), callers, account):
            continue
        if st.get("Effect") == "Deny":
            return False
        allowed = allowed or st.get("Effect") == "Allow"
    return allowed


def caller_of(access_key: str, default_account: str) -> tuple[set[str], str]:
    """The ARNs (role and session for an assumed role) and the account of an access key's caller."""
    for account in list(sts_backends):
        for sts in sts_backends[account].values():
            assumed = sts.get_assumed_role_from_access_key(access_key)
            if assumed is not None:
                return {assumed.role_arn, assumed.arn}, assumed.role_arn.split(":")[4]
    for account in list(iam_backends):
        for iam in iam_backends[account].values():
            user = iam.get_user_from_access_key_id(access_key)
            if user is not None:
                return {user.arn}, user.arn.split(":")[4]
    return {f"arn:aws:iam::{default_account}:user/moto"}, default_account


def ecr_service_refusal(kind: str, role_arn: str | None) -> str:
    """Why ECR itself cannot import through an ``ecr`` rule's ``customRoleArn`` ('' when it can): while
    an AccessEmulation is installed, the role must exist and trust ECR's service principal
    (documented: pull-through-cache-private.html). Without one installed, nothing is checked."""
    if AccessEmulation._installed is None or kind != "ecr" or not role_arn:
        return ""
    try:
        role = iam_backends[role_arn.split(":")[4]]["global"].get_role_by_arn(role_arn)
        statements = _statements(role.assume_role_policy_document)
    except Exception:  # moto's NotFoundException, an ARN of no account
        return f"ECR could not assume customRoleArn {role_arn}: no such role"
    for st in statements:
        services = (
            st.get("Principal", {}).get("Service", []) if isinstance(st.get("Principal"), Mapping) else []
        )
        if (
            st.get("Effect") == "Allow"
            and ECR_SERVICE_PRINCIPAL in _as_list(services)
            and _action_matches(st.get("Action", []), "sts:AssumeRole")
        ):
            return ""
    return (
        f"ECR could not assume customRoleArn {role_arn}: its trust policy does not name "
        f"{ECR_SERVICE_PRINCIPAL}"
    )


class AccessEmulation:
    """STS trust, caller-bound ECR tokens and upstream repository policies (module docstring)."""

    _installed: ClassVar[AccessEmulation | None] = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[set[str], str]] = {}  # password -> (caller ARNs, account)
        self._policies: dict[tuple[str, str], str] = {}  # (account, repository) -> policy JSON
        self._saved: dict[tuple[type, str], object] = {}
        self.refused: list[tuple[str, str]] = []  # (caller, role) of every refused AssumeRole
        self.gates: list[EcrRegistryGate] = []

    # -- installation ---------------------------------------------------------------------------------

    def install(self) -> Self:
        if AccessEmulation._installed is not None:
            raise RuntimeError("an AccessEmulation is already installed")
        for cls, name, impl in (
            (TokenResponse, "assume_role", self._assume_role),
            (ECRResponse, "get_authorization_token", self._get_authorization_token),
        ):
            self._saved[(cls, name)] = cls.__dict__.get(name, _MISSING)
            setattr(cls, name, self._handler(impl))
        AccessEmulation._installed = self
        return self

    def uninstall(self) -> None:
        if AccessEmulation._installed is not self:
            return
        for gate in self.gates:
            gate.stop()
        for (cls, name), original in self._saved.items():
            if original is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        self._saved.clear()
        AccessEmulation._installed = None

    @staticmethod
    def _handler(impl: Callable[[Any], ActionResult]) -> Callable[[Any], ActionResult]:
        """A plain function (moto dispatches to functions of the response class by name)."""

        def handler(response: Any) -> ActionResult:
            return impl(response)

        handler.__name__ = impl.__name__.removeprefix("_")
        return handler

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    # -- set-up ---------------------------------------------------------------------------------------

    @staticmethod
    def create_role(arn: str, trusted: Iterable[str] = (), *, services: Iterable[str] = ()) -> None:
        """A role in moto's IAM of its account whose trust policy allows sts:AssumeRole to the ``trusted``
        AWS principals and the ``services`` (e.g. ECR's, for a rule's customRoleArn)."""
        account, name = arn.split(":")[4], arn.split(":role/", 1)[1].rsplit("/", maxsplit=1)[-1]
        principal: dict[str, list[str]] = {}
        if trusted:
            principal["AWS"] = list(trusted)
        if services:
            principal["Service"] = list(services)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
        iam_backends[account]["global"].create_role(name, json.dumps(policy), "/", None, "", [], None)

    def set_repository_policy(self, account: str, repository: str, policy: str | Mapping[str, Any]) -> None:
        """The policy of ``repository`` in the upstream registry of ``account``."""
        text = policy if isinstance(policy, str) else json.dumps(policy)
        _statements(text)
        with self._lock:
            self._policies[(account, repository)] = text

    @staticmethod
    def pull_policy(*principals: str) -> dict[str, Any]:
        """A repository policy that lets ``principals`` pull (what an upstream account adds)."""
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PtcSyncReads",
                    "Effect": "Allow",
                    "Principal": {"AWS": list(principals)},
                    "Action": [PULL_ACTION, "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                }
            ],
        }

    def gate(self, host: str, registry_url: str) -> EcrRegistryGate:
        """Serve ``host``'s ECR registry API on loopback in front of ``registry_url`` (started)."""
        gate = EcrRegistryGate(self, host, registry_url)
        gate.start()
        self.gates.append(gate)
        return gate

    # -- emulated calls -------------------------------------------------------------------------------

    def _assume_role(self, response: TokenResponse) -> ActionResult:
        role_arn = str(response._get_param("RoleArn") or "")
        callers, account = caller_of(response.get_access_key(), response.current_account)
        shown = sorted(callers, key=lambda arn: ":assumed-role/" not in arn)[0]
        try:
            parts = role_arn.split(":")
            role = iam_backends[parts[4]]["global"].get_role_by_arn(role_arn)
            trusted = allows(role.assume_role_policy_document, "sts:AssumeRole", callers, account)
        except Exception:  # moto's NotFoundException, an ARN of no account
            trusted = False
        if not trusted:
            with self._lock:
                self.refused.append((shown, role_arn))
            raise STSClientError(
                "AccessDenied",
                f"User: {shown} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            )
        original = self._saved[(TokenResponse, "assume_role")]
        assert callable(original)
        result: ActionResult = original(response)
        return result

    def _get_authorization_token(self, response: ECRResponse) -> ActionResult:
        callers, account = caller_of(response.get_access_key(), response.current_account)
        registry_ids = response._get_param("registryIds") or [response.current_account]
        data = []
        for registry_id in registry_ids:
            password = "ptc-access-" + secrets.token_urlsafe(24)
            with self._lock:
                self._tokens[password] = (callers, account)
            data.append(
                {
                    "authorizationToken": base64.b64encode(f"AWS:{password}".encode()).decode(),
                    # 12 hours, as ECR's tokens; moto's clock is the real one
                    "expiresAt": datetime.now(UTC) + timedelta(hours=12),
                    "proxyEndpoint": f"https://{registry_id}.dkr.ecr.{response.region}.amazonaws.com",
                }
            )
        return ActionResult({"authorizationData": data})

    # -- the registry side ----------------------------------------------------------------------------

    def principal_of(self, authorization: str | None) -> tuple[set[str], str] | None:
        if not authorization or not authorization.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
        except ValueError:
            return None
        with self._lock:
            found = self._tokens.get(password)
        return found if user == "AWS" else None

    def may_pull(self, callers: set[str], caller_account: str, account: str, repository: str) -> bool:
        if caller_account == account:
            return True  # identity policies are not emulated
        with self._lock:
            policy = self._policies.get((account, repository))
        return policy is not None and allows(policy, PULL_ACTION, callers, caller_account)


class EcrRegistryGate(FaultServer):
    """An ECR registry endpoint (``<account>.dkr.ecr.<region>.amazonaws.com``) on loopback: Basic auth
    with a caller-bound token, repository policies, then the registry behind it."""

    def __init__(self, access: AccessEmulation, host: str, registry_url: str) -> None:
        super().__init__()
        self.access = access
        self.ecr_host = host
        self.account = host.split(".", maxsplit=1)[0]
        self.region = host.split(".")[3]
        self.registry_url = registry_url.rstrip("/")
        self.denied: list[tuple[str, str]] = []  # (caller, repository)
        self._http = urllib3.PoolManager(maxsize=8, retries=False, timeout=urllib3.Timeout(5.0))

    def _challenge(self) -> Reply:
        return Reply(
            401,
            {
                "Content-Type": "application/json",
                "WWW-Authenticate": f'Basic realm="https://{self.ecr_host}/",service="ecr.amazonaws.com"',
            },
            json.dumps({"errors": [{"code": "DENIED", "message": "Not Authorized"}]}).encode(),
        )

    def reply_for(self, rec: Recorded) -> Reply:
        path = rec.path.split("?", 1)[0]
        principal = self.access.principal_of(rec.header("authorization"))
        if principal is None:
            return self._challenge()
        if path.rstrip("/") == "/v2":
            return Reply(200, {"Docker-Distribution-API-Version": "registry/2.0"})
        callers, caller_account = principal
        repository = path.removeprefix("/v2/")
        for marker in ("/manifests/", "/blobs/", "/tags/"):
            if marker in repository:
                repository = repository.split(marker, 1)[0]
                break
        if not self.access.may_pull(callers, caller_account, self.account, repository):
            shown = sorted(callers, key=lambda arn: ":assumed-role/" not in arn)[0]
            with self._lock:
                self.denied.append((shown, repository))
            message = (
                f"User: {shown} is not authorized to perform: {PULL_ACTION} on resource: "
                f"arn:aws:ecr:{self.region}:{self.account}:repository/{repository} because no "
                f"resource-based policy allows the {PULL_ACTION} action"
            )
            return Reply(
                403,
                {"Content-Type": "application/json"},
                json.dumps({"errors": [{"code": "DENIED", "message": message}]}).encode(),
            )
        return self._proxy(rec)

    def _proxy(self, rec: Recorded) -> Reply:
        return forward(self._http, self.registry_url, rec, headers=frozenset({"accept", "content-type"}))

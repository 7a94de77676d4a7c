"""Fault injection on real boto3 clients (talking to moto) through botocore's event hooks.

    faults = AwsFaults(ecr_client)
    faults.fail("PutImage", "AccessDeniedException", when=lambda params: params["imageTag"] == "v1")

The call never reaches moto; the client raises the ClientError real AWS would. ``times`` bounds
how many calls fail (None: every matching call).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError


@dataclass
class Fault:
    operation: str
    code: str
    message: str
    when: Callable[[Mapping[str, Any]], bool]
    times: int | None
    hits: int = 0


@dataclass
class AwsFaults:
    client: Any
    faults: list[Fault] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        service = self.client.meta.service_model.service_id.hyphenize()
        self.client.meta.events.register(f"before-parameter-build.{service}", self._before_call)

    def fail(
        self,
        operation: str,
        code: str,
        message: str = "injected fault",
        *,
        when: Callable[[Mapping[str, Any]], bool] = lambda _params: True,
        times: int | None = 1,
    ) -> Fault:
        fault = Fault(operation, code, message, when, times)
        self.faults.append(fault)
        return fault

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    def _before_call(self, model: Any, params: Mapping[str, Any], **_: Any) -> dict[str, Any] | None:
        body = dict(params)
        self.calls.append((model.name, body))
        for fault in self.faults:
            if fault.operation != model.name or (fault.times is not None and fault.hits >= fault.times):
                continue
            if not fault.when(body):
                continue
            fault.hits += 1
            raise ClientError({"Error": {"Code": fault.code, "Message": fault.message}}, model.name)
        return None

"""The project's Lambda handlers, imported the way Lambda imports them, and wired like the stack.

``load_handler("checker")`` imports ``functions/checker/app.py`` as its own module (Lambda imports
each function's ``app`` alone; here they share a process, so each gets a unique module name).
``Stack`` puts the sandbox's queues and EventBridge rules in front of the real handlers.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from testbed.runtime import Delivery, EventBridgeTap, FakeContext, SqsEventSource
from testbed.sandbox import ACCOUNT, REGION, Sandbox, template_resources

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
STACK_NAME = "ptc-sync"  # the stack the testbed stands for (samconfig.toml's stack_name)
PSEUDO = {
    "AWS::StackName": STACK_NAME,
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
}


def resolve(node: Any, resources: dict[str, Any]) -> Any:
    """The intrinsic functions of the event rules: Ref (pseudo parameters, the request bus) and Fn::Sub."""
    if isinstance(node, list):
        return [resolve(n, resources) for n in node]
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            name = node["Ref"]
            return (
                PSEUDO[name] if name in PSEUDO else resolve(resources[name]["Properties"]["Name"], resources)
            )
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(PSEUDO[m[1]]), node["Fn::Sub"])
        return {k: resolve(v, resources) for k, v in node.items()}
    return node


def load_handler(function: str) -> ModuleType:
    name = f"ptc_handler_{function.replace('-', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FUNCTIONS / function / "app.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler at functions/{function}/app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Stack:
    """The deployed wiring between the functions, on the sandbox: schedule → planner → queue →
    checker, and EventBridge rules (patterns read from template.yaml) → request handler."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.sync = load_handler("sync").lambda_handler
        self.checker = load_handler("checker").lambda_handler
        self.requests = load_handler("requests").lambda_handler
        resources = template_resources()
        batch = resources["CheckerFunction"]["Properties"]["Events"]["Work"]["Properties"]["BatchSize"]
        self.work = SqsEventSource(
            box.client("sqs"), box.work_queue_url, self.checker, function_name="checker", batch_size=batch
        )
        events = resolve(resources["RequestsFunction"]["Properties"]["Events"], resources)
        buses = {spec["Properties"].get("EventBusName", "default") for spec in events.values()} - {"default"}
        existing = {b["Name"] for b in box.client("events").list_event_buses()["EventBuses"]}
        for bus in sorted(buses - existing):
            box.client("events").create_event_bus(Name=bus)
        self.request_bus_name = events["SyncRequest"]["Properties"]["EventBusName"]
        self.request_source = events["SyncRequest"]["Properties"]["Pattern"]["source"][0]
        self.taps = [
            EventBridgeTap(
                box.client("events"),
                box.client("sqs"),
                name=name,
                pattern=spec["Properties"]["Pattern"],
                handler=self.requests,
                function_name="requests",
                event_bus_name=spec["Properties"].get("EventBusName", "default"),
            )
            for name, spec in events.items()
        ]

    def schedule(self, event: dict[str, Any]) -> Any:
        """What EventBridge Scheduler does: invoke the planner with the schedule's input."""
        return self.sync(event, FakeContext("sync"))

    def deliver_events(self) -> list[Any]:
        return [answer for tap in self.taps for answer in tap.deliver()]

    def drain(self) -> Delivery:
        return self.work.drain()

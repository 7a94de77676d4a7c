"""The project's Lambda handlers, imported the way Lambda imports them, and wired like the stack.

``load_handler("checker")`` imports ``functions/checker/app.py`` as its own module (Lambda imports
each function's ``app`` alone; here they share a process, so each gets a unique module name).
``Stack`` puts the sandbox's queues and EventBridge rules in front of the real handlers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from testbed.runtime import Delivery, EventBridgeTap, FakeContext, SqsEventSource
from testbed.sandbox import Sandbox, template_resources

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


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
        events = resources["RequestsFunction"]["Properties"]["Events"]
        self.taps = [
            EventBridgeTap(
                box.client("events"),
                box.client("sqs"),
                name=name,
                pattern=spec["Properties"]["Pattern"],
                handler=self.requests,
                function_name="requests",
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

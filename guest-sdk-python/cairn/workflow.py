"""Durable workflows in Python. Register each workflow with `@workflow`,
and make the module's `Workflows` the SDK's:

    from cairn.workflow import Workflows, workflow, set_event

    @workflow
    def steps_workflow(input):
        set_event("step1", "completed")
        set_event("step2", "completed")

Every call below is journaled by the host: after a crash the workflow runs
again from the start and journaled calls return their recorded outcome, so
a workflow must reach the outside world only through them (or through a
`step`). Times are in seconds.
"""

import json
from typing import Any, Callable, Optional

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import children, context, events, messages, steps, streams, timers

from . import CairnError, _call, _ms

_WORKFLOWS: dict = {}


def workflow(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Register `function` as a workflow named after it. It is called with
    the run's input (decoded JSON); what it returns is the run's output,
    and an exception ends the run ERROR with its message."""
    _WORKFLOWS[function.__name__] = function
    return function


class Workflows(exports.Workflows):
    """The module's export: the registered workflows."""

    def names(self):
        return list(_WORKFLOWS)

    def run(self, name, input):
        function = _WORKFLOWS.get(name)
        if function is None:
            raise Err(f"no workflow {name!r}; this module has {sorted(_WORKFLOWS)}")
        try:
            return json.dumps(function(json.loads(input)))
        except Err:
            raise
        except Exception as error:  # the run's error, for people to read
            raise Err(f"{type(error).__name__}: {error}")


def _decode(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


def set_event(key: str, value: Any) -> None:
    """Publish (or overwrite) event `key` of this run."""
    _call(events.set_event, key, json.dumps(value))


def get_event(workflow_id: str, key: str, timeout: float = 60) -> Any:
    """Event `key` of run `workflow_id`, waiting up to `timeout`; None if it
    is not set by then."""
    return _decode(_call(events.get_event, workflow_id, key, _ms(timeout)))


def send(workflow_id: str, topic: str, message: Any, idempotency_key: Optional[str] = None) -> None:
    """Send `message` to run `workflow_id` on `topic` ("" is the default
    topic); with a key, a duplicate is not delivered again."""
    _call(messages.send, workflow_id, topic, json.dumps(message), idempotency_key)


def recv(topic: str = "", timeout: float = 60) -> Any:
    """The oldest message to this run on `topic`, waiting up to `timeout`;
    None if none came."""
    return _decode(_call(messages.recv, topic, _ms(timeout)))


def start_child(module: str, workflow: str, input: Any = None, id: Optional[str] = None) -> str:
    """Start a child run and return its id."""
    return _call(children.start_child, module, workflow, json.dumps(input), id)


def await_child(workflow_id: str, timeout: float = 60) -> Optional[dict]:
    """How child `workflow_id` ended ({status, output, error}), waiting up
    to `timeout`; None if it has not."""
    result = _call(children.await_child, workflow_id, _ms(timeout))
    if result is None:
        return None
    return {"status": result.status, "output": _decode(result.output), "error": result.error}


def sleep(seconds: float) -> None:
    """Sleep durably: a recovered run sleeps only what is left."""
    timers.sleep(_ms(seconds))


def write_stream(name: str, value: Any) -> None:
    """Append `value` to stream `name` of this run (at least once from a step)."""
    _call(streams.write_stream, name, json.dumps(value))


def close_stream(name: str) -> None:
    """End stream `name` of this run."""
    _call(streams.close_stream, name)


def read_stream(workflow_id: str, name: str, offset: int = 0, timeout: float = 60):
    """(values, closed) of stream `name` of run `workflow_id` from `offset`,
    waiting up to `timeout` for a value or its end."""
    read = _call(streams.read_stream, workflow_id, name, offset, _ms(timeout))
    return [json.loads(v) for v in read.values], read.closed


def workflow_id() -> str:
    """The id of this run."""
    return context.workflow_id()


def log(level: str, message: str, **fields: str) -> None:
    """A log record of this run (`level`: trace, debug, info, warn, error);
    not emitted again by a replay."""
    context.log(context.Level[level.upper()], message, [(k, str(v)) for k, v in fields.items()])


def step(name: str, work: Callable[[], Any], max_attempts: int = 1, interval: float = 1.0,
         backoff: float = 2.0, max_interval: float = 3600.0) -> Any:
    """Run `work` as step `name`: its result is journaled, so a replay does
    not run it again. A step that raises is tried again up to
    `max_attempts` in all, waiting `interval`, then `backoff` times longer
    each time (at most `max_interval`); past that, its last error is raised
    as a CairnError with code `step-failed`."""
    policy = steps.RetryPolicy(max_attempts, _ms(interval), float(backoff), _ms(max_interval))
    state = _call(steps.begin_step, name, policy)
    while isinstance(state, steps.StepState_Attempt):
        try:
            outcome = Ok(json.dumps(work()))
        except CairnError:
            raise
        except Exception as error:
            outcome = Err(f"{type(error).__name__}: {error}")
        state = _call(steps.end_attempt, outcome)
    finished = state.value
    if isinstance(finished, Ok):
        return json.loads(finished.value)
    raise CairnError("step-failed", finished.value)


__all__ = [
    "CairnError", "Workflows", "workflow", "set_event", "get_event", "send", "recv",
    "start_child", "await_child", "sleep", "write_stream", "close_stream", "read_stream",
    "workflow_id", "log", "step",
]

"""HTTP handlers in Python: a function from a `Request` to a `Response`,
called for the routes its module is deployed with, and a client of
workflows like any HTTP caller. Nothing here is journaled.

    from cairn.handler import IncomingHandler, Response, handler, start_workflow, get_event

    @handler
    def route(request):
        run = start_workflow("steps", "steps_workflow")
        return Response.json(200, {"step1": get_event(run, "step1", 10)})

Build with `componentize-py -d wit -w handler componentize app -p <sdk>`.
Times are in seconds.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import client, context, wasi_http_types as http

from . import CairnError, _call, _ms

_HANDLER: list = []

#: Most bytes one write to an output stream may carry.
_CHUNK = 4096


@dataclass
class Request:
    """A request, as the handler sees it: its path is the route's own."""
    method: str
    path: str
    query: Optional[str]
    headers: List[Tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: List[Tuple[str, str]] = field(default_factory=list)

    @staticmethod
    def json(status: int, value: Any) -> "Response":
        return Response(status, json.dumps(value).encode(), [("content-type", "application/json")])

    @staticmethod
    def text(status: int, text: str) -> "Response":
        return Response(status, text.encode(), [("content-type", "text/plain; charset=utf-8")])


def handler(function: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Make `function` the module's handler."""
    _HANDLER[:] = [function]
    return function


def _method(method) -> str:
    if isinstance(method, http.Method_Other):
        return method.value
    return type(method).__name__.removeprefix("Method_").upper()


def _read_request(incoming) -> Request:
    target = incoming.path_with_query() or "/"
    path, _, query = target.partition("?")
    headers = [(name, value.decode("latin-1")) for name, value in incoming.headers().entries()]
    body = b""
    incoming_body = incoming.consume()
    stream = incoming_body.stream()
    while True:
        try:
            body += stream.blocking_read(65536)
        except Err:  # the stream's end (or its failure)
            break
    return Request(_method(incoming.method()), path, query or None, headers, body)


class IncomingHandler(exports.IncomingHandler):
    """The module's export: the registered handler, one call per request.
    An exception answers 500 with its message."""

    def handle(self, request, response_out):
        try:
            if not _HANDLER:
                raise RuntimeError("no @handler is registered")
            response = _HANDLER[0](_read_request(request))
        except Exception as error:
            response = Response.text(500, f"{type(error).__name__}: {error}")
        headers = http.Fields.from_list([(k, v.encode()) for k, v in response.headers])
        outgoing = http.OutgoingResponse(headers)
        outgoing.set_status_code(response.status)
        body = outgoing.body()
        http.ResponseOutparam.set(response_out, Ok(outgoing))
        # The stream is dropped (the `with`) before its body is finished.
        with body.write() as stream:
            for start in range(0, len(response.body), _CHUNK):
                stream.blocking_write_and_flush(response.body[start:start + _CHUNK])
        http.OutgoingBody.finish(body, None)


def start_workflow(module: str, workflow: str, input: Any = None, id: Optional[str] = None) -> str:
    """Start a run (not again under an `id` that exists) and return its id."""
    return _call(client.start_workflow, module, workflow, json.dumps(input), id)


def get_event(workflow_id: str, key: str, timeout: float = 60) -> Any:
    """Event `key` of run `workflow_id`, waiting up to `timeout`; None if it
    is not set by then (or the run ended without it)."""
    value = _call(client.get_event, workflow_id, key, _ms(timeout))
    return None if value is None else json.loads(value)


def await_result(workflow_id: str, timeout: float = 60) -> Optional[dict]:
    """How run `workflow_id` ended, waiting up to `timeout`; None while it runs."""
    result = _call(client.await_result, workflow_id, _ms(timeout))
    if result is None:
        return None
    output = None if result.output is None else json.loads(result.output)
    return {"status": result.status, "output": output, "error": result.error}


def send_message(workflow_id: str, topic: str, message: Any, idempotency_key: Optional[str] = None) -> None:
    """Send `message` to run `workflow_id` on `topic`."""
    _call(client.send_message, workflow_id, topic, json.dumps(message), idempotency_key)


def read_stream(workflow_id: str, name: str, offset: int = 0, timeout: float = 60):
    """(values, closed) of stream `name` of run `workflow_id` from `offset`."""
    read = _call(client.read_stream, workflow_id, name, offset, _ms(timeout))
    return [json.loads(v) for v in read.values], read.closed


def log(level: str, message: str, **fields: str) -> None:
    context.log(context.Level[level.upper()], message, [(k, str(v)) for k, v in fields.items()])


__all__ = [
    "CairnError", "IncomingHandler", "Request", "Response", "handler", "start_workflow",
    "get_event", "await_result", "send_message", "read_stream", "log",
]

"""Cairn's Python SDK: durable workflows and HTTP handlers, as WebAssembly
components built by componentize-py against Cairn's WIT package.

Workflows: `from cairn.workflow import ...` (built with `-w workflow`).
Handlers: `from cairn.handler import ...` (built with `-w handler`).
Both speak JSON: values go in and come out as Python objects.
"""


class CairnError(Exception):
    """A call the host refused: `code` says why (`invalid-json`,
    `too-large`, `invalid-argument`, `not-allowed`, `not-found`,
    `unavailable`, `duplicate`), `message` says what was wrong."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _refusal(err) -> CairnError:
    """The SDK's error for a host `error` raised by the bindings."""
    error = getattr(err, "value", err)
    code = getattr(getattr(error, "code", None), "name", "unknown")
    return CairnError(code.lower().replace("_", "-"), getattr(error, "message", str(error)))


def _call(function, *args):
    """Call a host import, raising its refusal as a CairnError."""
    from componentize_py_types import Err

    try:
        return function(*args)
    except Err as err:
        raise _refusal(err) from None


def _ms(seconds: float) -> int:
    """Seconds as the host's milliseconds."""
    return max(0, int(seconds * 1000))

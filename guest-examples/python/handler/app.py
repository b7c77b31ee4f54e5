"""The seed's `eventListener` in Python: on GET /events it starts
`steps_workflow` and answers with both of its events."""

from cairn.handler import IncomingHandler, Response, get_event, handler, log, start_workflow


@handler
def route(request):
    if request.method == "GET" and request.path == "/events":
        workflow_id = start_workflow("steps", "steps_workflow")
        step1 = get_event(workflow_id, "step1", 10)
        step2 = get_event(workflow_id, "step2", 10)
        log("info", f"step1: {step1}", workflow_id=workflow_id)
        return Response.json(200, {"workflow_id": workflow_id, "step1": step1, "step2": step2})
    return Response.text(404, f"no handler for {request.method} {request.path}")

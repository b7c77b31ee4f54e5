"""The seed in Python: DBOS Transact's `stepsWorkflow`, the same with a
durable pause, a workflow that fails, and one with a step and a message."""

from cairn.workflow import Workflows, recv, set_event, sleep, step, workflow


@workflow
def steps_workflow(input):
    set_event("step1", "completed")
    set_event("step2", "completed")


@workflow
def steps_with_pause(input):
    pause_ms = (input or {}).get("pause_ms", 1000)
    set_event("step1", "completed")
    sleep(pause_ms / 1000)
    set_event("step2", "completed")


@workflow
def fail(input):
    raise ValueError(f"refusing {input!r}")


@workflow
def approve(input):
    """A step computes a reference; the run then waits for a decision."""
    reference = step("reference", lambda: f"ref-{input['subject']}")
    set_event("status", "awaiting-decision")
    decision = recv("decision", 60)
    set_event("status", "decided" if decision else "timed-out")
    return {"reference": reference, "decision": decision}

// The seed in JavaScript: DBOS Transact's `stepsWorkflow`, the same with a
// durable pause, a workflow that fails, and one with a step and a message.
import { register, recv, setEvent, sleep, step } from '../../../guest-sdk-js/workflow.js';

export const workflows = register({
  steps_workflow() {
    setEvent('step1', 'completed');
    setEvent('step2', 'completed');
  },
  steps_with_pause(input) {
    setEvent('step1', 'completed');
    sleep((input && input.pause_ms) ?? 1000);
    setEvent('step2', 'completed');
  },
  fail(input) {
    throw new RangeError(`refusing ${JSON.stringify(input)}`);
  },
  approve(input) {
    const reference = step('reference', () => `ref-${input.subject}`);
    setEvent('status', 'awaiting-decision');
    const decision = recv('decision', 60000);
    setEvent('status', decision ? 'decided' : 'timed-out');
    return { reference, decision };
  },
});

/// <reference path="./cairn-workflow-types.d.ts" />
declare module 'cairn:workflow/events@0.1.0' {
  /**
   * Publish, or overwrite, the event `key` of the calling run. Last write
   * wins; every write is also appended to the run's event history.
   * 
   * The event is durable before this returns, and readers are woken only
   * after it is committed. When a recovering run replays this call, nothing
   * is written again. `value` may be `null`, which is distinct from "not
   * set". Fails with `invalid-json` or `too-large` when the value is
   * refused, and with `invalid-argument` for an empty key.
   */
  export function setEvent(key: string, value: Json): void;
  /**
   * Return the current value of event `key` of run `workflow-id`, waiting
   * up to `timeout-ms` milliseconds for it to be set. Returns `none` when
   * the time runs out; a timeout of 0 looks once without waiting.
   * 
   * A run that does not exist yet is not an error: the call waits, as the
   * run may be started later under that id. The outcome and the deadline
   * are journaled: on replay the recorded outcome is returned at once, and
   * a recovery in the middle of a wait keeps the original deadline.
   */
  export function getEvent(workflowId: string, key: string, timeoutMs: bigint): Json | undefined;
  export type Json = import('cairn:workflow/types@0.1.0').Json;
  export type Error = import('cairn:workflow/types@0.1.0').Error;
}

/// <reference path="./cairn-workflow-types.d.ts" />
declare module 'cairn:workflow/client@0.1.0' {
  /**
   * Start workflow `workflow` of module `module` with `input`, and return
   * the run's id. With `id`, a run that already exists under that id is
   * not started again and its id is returned (`invalid-argument` if it
   * is a run of another module or workflow); without it, the host
   * generates an id. `not-found` when the module or the workflow does not
   * exist, `unavailable` when the host is overloaded.
   */
  export function startWorkflow(module: string, workflow: string, input: Json, id: string | undefined): string;
  /**
   * The value of event `key` of run `workflow-id`, waiting up to
   * `timeout-ms` for it to be set: as `events.get-event`, but not
   * journaled. `none` when the time runs out, or when the run has ended
   * without setting the key.
   */
  export function getEvent(workflowId: string, key: string, timeoutMs: bigint): Json | undefined;
  /**
   * Wait up to `timeout-ms` for run `workflow-id` to end, and return how
   * it ended; `none` if it is still running then. `not-found` for a run
   * that does not exist.
   */
  export function awaitResult(workflowId: string, timeoutMs: bigint): RunResult | undefined;
  /**
   * Send `message` to run `workflow-id` on `topic`, as `messages.send`
   * (not journaled). With an `idempotency-key`, a duplicate is not
   * delivered again (`duplicate`). `not-found` when the run does not
   * exist.
   */
  export function sendMessage(workflowId: string, topic: string, message: Json, idempotencyKey: string | undefined): void;
  /**
   * Read stream `name` of run `workflow-id` from `offset`, waiting up to
   * `timeout-ms` for a value or the stream's end: as
   * `streams.read-stream`, but not journaled.
   */
  export function readStream(workflowId: string, name: string, offset: bigint, timeoutMs: bigint): StreamRead;
  export type Json = import('cairn:workflow/types@0.1.0').Json;
  export type Error = import('cairn:workflow/types@0.1.0').Error;
  export type RunResult = import('cairn:workflow/types@0.1.0').RunResult;
  export type StreamRead = import('cairn:workflow/types@0.1.0').StreamRead;
}

/// <reference path="./cairn-workflow-types.d.ts" />
declare module 'cairn:workflow/messages@0.1.0' {
  /**
   * Send `message` to run `workflow-id` on `topic`. With an
   * `idempotency-key`, a message with the same key already delivered to
   * that run is not delivered again, and `duplicate` says so; keys
   * starting with `cairn:` are the host's own (`invalid-argument`).
   * Without one, the send's place in the journal is its key: delivered
   * once even if the journal were lost. Journaled: a recovering run does
   * not send again, and gets the same answer. `not-found` when the run
   * does not exist.
   */
  export function send(workflowId: string, topic: string, message: Json, idempotencyKey: string | undefined): void;
  /**
   * Receive the oldest message sent to the calling run on `topic`,
   * waiting up to `timeout-ms` for one; `none` when the time runs out.
   * The message is consumed in the same transaction that journals the
   * call, so it is received exactly once; a replay returns the recorded
   * message, and a recovery in the middle of a wait keeps its deadline.
   */
  export function recv(topic: string, timeoutMs: bigint): Json | undefined;
  export type Json = import('cairn:workflow/types@0.1.0').Json;
  export type Error = import('cairn:workflow/types@0.1.0').Error;
}

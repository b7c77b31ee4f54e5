/// <reference path="./cairn-workflow-types.d.ts" />
declare module 'cairn:workflow/streams@0.1.0' {
  /**
   * Append `value` to stream `name` (1 to 255 bytes) of the calling run.
   * From the workflow itself, exactly once: the append is journaled with
   * its write, and a replay does not append again. Inside a step, at
   * least once: a step that is retried, or interrupted by a crash and run
   * again, appends again (make the values tell repeats apart if readers
   * must). `not-allowed` once the stream is closed; `invalid-json`,
   * `too-large` as for `set-event`.
   */
  export function writeStream(name: string, value: Json): void;
  /**
   * Close stream `name` of the calling run: readers see `closed` after
   * its last value, and later writes are refused. Journaled; not allowed
   * inside a step. A run's streams are closed when the run ends, so
   * closing is needed only to end a stream earlier.
   */
  export function closeStream(name: string): void;
  /**
   * Read stream `name` of run `workflow-id` from `offset`, waiting up to
   * `timeout-ms` for at least one value or the stream's end; when the
   * time runs out, `values` is empty and `closed` false. A run that does
   * not exist yet is waited for, as by `get-event`. Journaled like
   * `get-event`: a replay returns the recorded read, and a recovery in
   * the middle of a wait keeps its deadline.
   */
  export function readStream(workflowId: string, name: string, offset: bigint, timeoutMs: bigint): StreamRead;
  export type Json = import('cairn:workflow/types@0.1.0').Json;
  export type Error = import('cairn:workflow/types@0.1.0').Error;
  export type StreamRead = import('cairn:workflow/types@0.1.0').StreamRead;
}

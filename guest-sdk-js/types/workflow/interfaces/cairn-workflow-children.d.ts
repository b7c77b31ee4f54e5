/// <reference path="./cairn-workflow-types.d.ts" />
declare module 'cairn:workflow/children@0.1.0' {
  /**
   * Start workflow `workflow` of module `module` (this module or
   * another) with `input` as a child of the calling run, and return its
   * id. Without `id`, the id is `<parent id>.<operation number>`. The
   * child's `parent` is the calling run. `not-found` for an unknown
   * module or workflow; the refusal is journaled like a success.
   */
  export function startChild(module: string, workflow: string, input: Json, id: string | undefined): string;
  /**
   * `start-child` with start options. `not-found` for an unknown queue;
   * `invalid-argument` for options its queue does not accept. Journaled
   * like `start-child`.
   */
  export function startChildWith(module: string, workflow: string, input: Json, id: string | undefined, options: ChildOptions): string;
  /**
   * Wait up to `timeout-ms` for run `workflow-id` to end and return how;
   * `none` if it has not ended by then. `not-found` for a run that does
   * not exist.
   */
  export function awaitChild(workflowId: string, timeoutMs: bigint): RunResult | undefined;
  /**
   * The id of the run that started the calling run as its child; `none`
   * for a run started from outside (an HTTP client, a schedule). Fixed for
   * the run's life, so a replay returns the same.
   */
  export function parentId(): string | undefined;
  export type Json = import('cairn:workflow/types@0.1.0').Json;
  export type Error = import('cairn:workflow/types@0.1.0').Error;
  export type RunResult = import('cairn:workflow/types@0.1.0').RunResult;
  /**
   * How a child is admitted, if not at once: the start options of
   * `POST /v1/workflows` (see the README's queues and delayed starts).
   */
  export interface ChildOptions {
    /**
     * Admit the child through this queue: it is `ENQUEUED` until the
     * queue has room.
     */
    queue?: string,
    /**
     * Lower leaves first, in a queue that honours priorities.
     */
    priority?: number,
    /**
     * Refused (`invalid-argument`) while a run of the queue with this
     * id is `ENQUEUED` or `PENDING`.
     */
    deduplicationId?: string,
    /**
     * The partition of a partitioned queue the child counts against.
     */
    partitionKey?: string,
    /**
     * Start the child no earlier than this many ms after the call.
     */
    delayMs?: bigint,
  }
}

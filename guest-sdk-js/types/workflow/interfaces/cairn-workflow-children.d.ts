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
}

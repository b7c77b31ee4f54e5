/// <reference path="./cairn-workflow-types.d.ts" />
declare module 'cairn:workflow/steps@0.1.0' {
  /**
   * Begin step `name` (1 to 255 characters; it names the step in the
   * run's journal) with `policy`. `not-allowed` inside another step,
   * `invalid-argument` for a bad name or policy. Takes the next operation
   * number, like the calls of the other interfaces.
   */
  export function beginStep(name: string, policy: RetryPolicy): StepState;
  /**
   * Report how the current attempt went: `ok(output)` (JSON) or
   * `err(message)`. Each attempt is journaled with its start, its end and
   * its output or error. After a failed attempt with attempts left, the
   * host waits the policy's interval (durably: the time of the next
   * attempt is journaled) and answers `attempt(n + 1)`; otherwise
   * `finished`. An output that is not valid JSON or is too large ends the
   * step as failed, with the reason. `not-allowed` outside a step.
   */
  export function endAttempt(outcome: Result<Json, string>): StepState;
  export type Json = import('cairn:workflow/types@0.1.0').Json;
  export type Error = import('cairn:workflow/types@0.1.0').Error;
  /**
   * When and how often a failed step is tried again.
   */
  export interface RetryPolicy {
    /**
     * Attempts in all, the first included: 1 means no retry. 1 to 1000.
     */
    maxAttempts: number,
    /**
     * The wait before the second attempt, in milliseconds.
     */
    initialIntervalMs: bigint,
    /**
     * Each later wait is the previous one times this factor (1.0 to
     * 10.0).
     */
    backoffFactor: number,
    /**
     * No wait is longer than this, in milliseconds.
     */
    maxIntervalMs: bigint,
  }
  /**
   * Where a step stands.
   */
  export type StepState = StepStateAttempt | StepStateFinished;
  /**
   * Run attempt number n (from 1) now, then report it with
   * `end-attempt`.
   */
  export interface StepStateAttempt {
    tag: 'attempt',
    val: number,
  }
  /**
   * The step has finished: its output, or the error of its last
   * attempt. On replay `begin-step` answers this at once.
   */
  export interface StepStateFinished {
    tag: 'finished',
    val: Result<Json, string>,
  }
  export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
}

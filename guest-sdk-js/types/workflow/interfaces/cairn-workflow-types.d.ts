declare module 'cairn:workflow/types@0.1.0' {
  /**
   * JSON text, for example `"completed"`, `{"total": 3}` or `null`.
   * The host refuses text that is not valid JSON.
   */
  export type Json = string;
  /**
   * Why the host refused a call. The guest may handle it or give up.
   * # Variants
   * 
   * ## `"invalid-json"`
   * 
   * A value is not valid JSON.
   * ## `"too-large"`
   * 
   * A value is larger than the host's configured limit.
   * ## `"invalid-argument"`
   * 
   * An argument is malformed (an empty key, an over-long id, ...).
   * ## `"not-allowed"`
   * 
   * The call is not allowed from where it was made.
   * ## `"not-found"`
   * 
   * A module, workflow or run that the call names does not exist.
   * ## `"unavailable"`
   * 
   * The host is too busy to take the call now; try again later.
   * ## `"duplicate"`
   * 
   * A message with this idempotency key was delivered to that run
   * before: nothing was sent again. A sender that re-sends on purpose
   * treats it as success.
   */
  export type ErrorCode = 'invalid-json' | 'too-large' | 'invalid-argument' | 'not-allowed' | 'not-found' | 'unavailable' | 'duplicate';
  /**
   * A refusal: a machine-readable code and a message for people.
   */
  export interface Error {
    code: ErrorCode,
    message: string,
  }
  /**
   * How a run ended.
   */
  export interface RunResult {
    /**
     * `SUCCESS`, `ERROR`, `CANCELLED` or `MAX_RECOVERY_ATTEMPTS_EXCEEDED`.
     */
    status: string,
    /**
     * The output of a run that succeeded (JSON).
     */
    output?: Json,
    /**
     * The error of a run that did not.
     */
    error?: string,
  }
  /**
   * What a read of a stream found.
   */
  export interface StreamRead {
    /**
     * The values from the offset asked for, oldest first: as many as
     * there are, up to 1000 and about the host's value size limit in
     * all (at least one, however large). The next read starts at the
     * offset asked for plus their number.
     */
    values: Array<Json>,
    /**
     * Whether the stream has ended after these values: its run closed
     * it, or the run has ended (a cancelled run has not: it may be
     * resumed). Once true, no read from a later offset finds more.
     */
    closed: boolean,
  }
}

declare module 'cairn:workflow/context@0.1.0' {
  /**
   * The id of the run being executed.
   */
  export function workflowId(): string;
  /**
   * Emit a structured log record, tagged by the host with the run's id.
   * `fields` are extra key/value pairs. Records are not emitted again when
   * a recovering run replays calls that are already journaled.
   */
  export function log(level: Level, message: string, fields: Array<[string, string]>): void;
  /**
   * Severity of a log record.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}

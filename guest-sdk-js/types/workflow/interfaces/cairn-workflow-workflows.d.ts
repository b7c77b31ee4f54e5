/// <reference path="./cairn-workflow-types.d.ts" />
declare module 'cairn:workflow/workflows@0.1.0' {
  /**
   * The names of the workflows this module defines. The host calls this
   * when the module is uploaded; a name must be 1 to 128 characters.
   */
  export function names(): Array<string>;
  /**
   * Run workflow `name` with `input` to completion. `ok` carries the
   * output (JSON); `err` an error message, and the run ends `ERROR`. A trap
   * also ends the run `ERROR`, with the trap message.
   */
  export function run(name: string, input: Json): Json;
  export type Json = import('cairn:workflow/types@0.1.0').Json;
}

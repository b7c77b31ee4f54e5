declare module 'cairn:workflow/timers@0.1.0' {
  /**
   * Sleep for `duration-ms` milliseconds. The wake-up time is journaled:
   * a run recovered after a crash sleeps only what is left of it, and a
   * replay of a sleep that has ended returns at once. Inside a step the
   * call traps: a step is retried instead.
   */
  export function sleep(durationMs: bigint): void;
}

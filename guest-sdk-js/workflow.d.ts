// Types of Cairn's JavaScript SDK for workflows (workflow.js). JSON values
// are `Json`; times are in milliseconds.
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export class CairnError extends Error {
  /** invalid-json, too-large, invalid-argument, not-allowed, not-found, unavailable, duplicate, step-failed */
  code: string;
  detail: string;
}

export interface WorkflowsExport {
  names(): string[];
  run(name: string, input: string): string;
}
export function register(table: Record<string, (input: any) => Json | void>): WorkflowsExport;

export function setEvent(key: string, value: Json): void;
export function getEvent(workflowId: string, key: string, timeoutMs?: number): Json | null;
export function send(workflowId: string, topic: string, message: Json, idempotencyKey?: string): void;
export function recv(topic?: string, timeoutMs?: number): Json | null;
export function startChild(module: string, workflow: string, input?: Json, id?: string): string;
export function awaitChild(
  workflowId: string,
  timeoutMs?: number,
): { status: string; output: Json | null; error: string | null } | null;
export function sleep(durationMs: number): void;
export function writeStream(name: string, value: Json): void;
export function closeStream(name: string): void;
export function readStream(
  workflowId: string,
  name: string,
  offset?: number,
  timeoutMs?: number,
): { values: Json[]; closed: boolean };
export function workflowId(): string;
export function log(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
export function step<T extends Json>(
  name: string,
  work: () => T,
  policy?: { maxAttempts?: number; intervalMs?: number; backoff?: number; maxIntervalMs?: number },
): T;

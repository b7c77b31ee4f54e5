// Types of Cairn's JavaScript SDK for HTTP handlers (handler.js).
import type { Json } from './workflow.js';
export { CairnError } from './workflow.js';

export function serve(handle: (request: Request) => Response | Promise<Response>): void;
export function startWorkflow(module: string, workflow: string, input?: Json, id?: string): string;
export function getEvent(workflowId: string, key: string, timeoutMs?: number): Json | null;
export function awaitResult(
  workflowId: string,
  timeoutMs?: number,
): { status: string; output: Json | null; error: string | null } | null;
export function sendMessage(workflowId: string, topic: string, message: Json, idempotencyKey?: string): void;
export function readStream(
  workflowId: string,
  name: string,
  offset?: number,
  timeoutMs?: number,
): { values: Json[]; closed: boolean };
export function log(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;

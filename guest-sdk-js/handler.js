// Cairn's JavaScript SDK for HTTP handlers (`-w wit -n handler`): the
// standard `fetch` event of the JS runtime serves the module's routes, and
// these functions make the handler a client of workflows. Nothing here is
// journaled. Values are JSON; times are in milliseconds.
//
//   import { serve, startWorkflow, getEvent } from './handler.js';
//   serve(async (request) => Response.json({ step1: getEvent(startWorkflow('steps', 'steps_workflow'), 'step1') }));

import {
  startWorkflow as hostStart,
  getEvent as hostGetEvent,
  awaitResult as hostAwait,
  sendMessage as hostSend,
  readStream as hostReadStream,
} from 'cairn:workflow/client@0.1.0';
import { log as hostLog } from 'cairn:workflow/context@0.1.0';
import { CairnError, call, decode, encode, ms, runResult, streamRead } from './common.js';

export { CairnError };

/** Serve every request with `handle(request) -> Response` (or a promise of
 * one); a throw answers 500 with its message. */
export function serve(handle) {
  addEventListener('fetch', (event) =>
    event.respondWith(
      (async () => {
        try {
          return await handle(event.request);
        } catch (error) {
          return new Response(error instanceof Error ? `${error.name}: ${error.message}` : String(error), { status: 500 });
        }
      })(),
    ),
  );
}

export const startWorkflow = (module, workflow, input, id) => call(hostStart, module, workflow, encode(input), id);
export const getEvent = (workflowId, key, timeoutMs = 60000) => decode(call(hostGetEvent, workflowId, key, ms(timeoutMs)));
export const awaitResult = (workflowId, timeoutMs = 60000) =>
  runResult(call(hostAwait, workflowId, ms(timeoutMs)));
export const sendMessage = (workflowId, topic, message, idempotencyKey) =>
  call(hostSend, workflowId, topic, encode(message), idempotencyKey);
export const readStream = (workflowId, name, offset = 0, timeoutMs = 60000) =>
  streamRead(call(hostReadStream, workflowId, name, BigInt(offset), ms(timeoutMs)));
export const log = (level, message, fields = {}) =>
  hostLog(level, message, Object.entries(fields).map(([k, v]) => [k, String(v)]));

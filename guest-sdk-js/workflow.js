// Cairn's JavaScript SDK for durable workflows, for components built by
// componentize-js against Cairn's WIT package (`-w wit -n workflow`).
//
//   import { workflows, setEvent } from './workflow.js';
//   export const workflows = register({
//     steps_workflow(input) { setEvent('step1', 'completed'); setEvent('step2', 'completed'); },
//   });
//
// Every call is journaled by the host: after a crash the workflow runs
// again from the start and journaled calls return their recorded outcome.
// Values are JSON: they go in and come out as JavaScript values. Times are
// in milliseconds. A refusal of the host is thrown as a CairnError.

import { setEvent as hostSetEvent, getEvent as hostGetEvent } from 'cairn:workflow/events@0.1.0';
import { send as hostSend, recv as hostRecv } from 'cairn:workflow/messages@0.1.0';
import { startChild as hostStartChild, awaitChild as hostAwaitChild } from 'cairn:workflow/children@0.1.0';
import { beginStep, endAttempt } from 'cairn:workflow/steps@0.1.0';
import { writeStream as hostWriteStream, closeStream as hostCloseStream, readStream as hostReadStream } from 'cairn:workflow/streams@0.1.0';
import { sleep as hostSleep } from 'cairn:workflow/timers@0.1.0';
import { workflowId as hostWorkflowId, log as hostLog } from 'cairn:workflow/context@0.1.0';
import { CairnError, call, decode, encode, ms, runResult, streamRead } from './common.js';

/** A call the host refused: `code` says why, `message` what was wrong. */
export { CairnError };

/** The module's export: `export const workflows = register({ name(input) {...}, ... })`.
 * A workflow's return value is its run's output; a throw ends the run ERROR
 * with its message. */
export function register(table) {
  return {
    names() {
      return Object.keys(table);
    },
    run(name, input) {
      const workflow = table[name];
      if (!workflow) throw `no workflow ${name}; this module has ${Object.keys(table).join(', ')}`;
      try {
        return encode(workflow(JSON.parse(input)));
      } catch (error) {
        throw error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      }
    },
  };
}

export const setEvent = (key, value) => call(hostSetEvent, key, encode(value));
export const getEvent = (workflowId, key, timeoutMs = 60000) =>
  decode(call(hostGetEvent, workflowId, key, ms(timeoutMs)));
export const send = (workflowId, topic, message, idempotencyKey) =>
  call(hostSend, workflowId, topic, encode(message), idempotencyKey);
export const recv = (topic = '', timeoutMs = 60000) => decode(call(hostRecv, topic, ms(timeoutMs)));
export const startChild = (module, workflow, input, id) =>
  call(hostStartChild, module, workflow, encode(input), id);
export const awaitChild = (workflowId, timeoutMs = 60000) =>
  runResult(call(hostAwaitChild, workflowId, ms(timeoutMs)));
export const sleep = (durationMs) => hostSleep(ms(durationMs));
export const writeStream = (name, value) => call(hostWriteStream, name, encode(value));
export const closeStream = (name) => call(hostCloseStream, name);
export const readStream = (workflowId, name, offset = 0, timeoutMs = 60000) =>
  streamRead(call(hostReadStream, workflowId, name, BigInt(offset), ms(timeoutMs)));
export const workflowId = () => hostWorkflowId();
export const log = (level, message, fields = {}) =>
  hostLog(level, message, Object.entries(fields).map(([k, v]) => [k, String(v)]));

/** Run `work` as step `name`: its result is journaled, so a replay does not
 * run it again. A step that throws is tried again up to `maxAttempts` in
 * all (waiting `intervalMs`, then `backoff` times longer each time); past
 * that its last error is thrown as a CairnError with code `step-failed`. */
export function step(name, work, { maxAttempts = 1, intervalMs = 1000, backoff = 2, maxIntervalMs = 3600000 } = {}) {
  const policy = { maxAttempts, initialIntervalMs: ms(intervalMs), backoffFactor: backoff, maxIntervalMs: ms(maxIntervalMs) };
  let state = call(beginStep, name, policy);
  while (state.tag === 'attempt') {
    let outcome;
    try {
      outcome = { tag: 'ok', val: encode(work()) };
    } catch (error) {
      if (error instanceof CairnError) throw error;
      outcome = { tag: 'err', val: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
    }
    state = call(endAttempt, outcome);
  }
  const finished = state.val;
  if (finished.tag === 'ok') return JSON.parse(finished.val);
  throw new CairnError('step-failed', finished.val);
}

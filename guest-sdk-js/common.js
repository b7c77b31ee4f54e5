// What the workflow and handler SDKs share: host refusals as CairnError,
// and JSON and time conversions.

/** A call the host refused: `code` says why, `detail` what was wrong. */
export class CairnError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

/** Call a host import, throwing its refusal as a CairnError. */
export function call(fn, ...args) {
  try {
    return fn(...args);
  } catch (error) {
    // componentize-js throws a host `error` as { payload: { code, message } }.
    const refusal = error && error.payload;
    if (refusal && refusal.code !== undefined) throw new CairnError(refusal.code, refusal.message);
    throw error;
  }
}

export const decode = (text) => (text === undefined || text === null ? null : JSON.parse(text));
export const ms = (n) => BigInt(Math.max(0, Math.floor(n)));
export const encode = (value) => JSON.stringify(value === undefined ? null : value);

/** A run's result as the host reports it, its output decoded. */
export const runResult = (result) =>
  result === undefined ? null : { status: result.status, output: decode(result.output), error: result.error ?? null };

/** A stream read, its values decoded. */
export const streamRead = (read) => ({ values: read.values.map((v) => JSON.parse(v)), closed: read.closed });

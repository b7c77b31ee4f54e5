/// <reference path="./interfaces/cairn-workflow-client.d.ts" />
/// <reference path="./interfaces/cairn-workflow-context.d.ts" />
/// <reference path="./interfaces/cairn-workflow-types.d.ts" />
/// <reference path="./interfaces/wasi-clocks-monotonic-clock.d.ts" />
/// <reference path="./interfaces/wasi-http-incoming-handler.d.ts" />
/// <reference path="./interfaces/wasi-http-types.d.ts" />
/// <reference path="./interfaces/wasi-io-error.d.ts" />
/// <reference path="./interfaces/wasi-io-poll.d.ts" />
/// <reference path="./interfaces/wasi-io-streams.d.ts" />
declare module 'cairn:workflow/handler@0.1.0' {
  export type * as CairnWorkflowClient010 from 'cairn:workflow/client@0.1.0'; // import cairn:workflow/client@0.1.0
  export type * as CairnWorkflowContext010 from 'cairn:workflow/context@0.1.0'; // import cairn:workflow/context@0.1.0
  export type * as CairnWorkflowTypes010 from 'cairn:workflow/types@0.1.0'; // import cairn:workflow/types@0.1.0
  export type * as WasiClocksMonotonicClock0210 from 'wasi:clocks/monotonic-clock@0.2.10'; // import wasi:clocks/monotonic-clock@0.2.10
  export type * as WasiHttpTypes0210 from 'wasi:http/types@0.2.10'; // import wasi:http/types@0.2.10
  export type * as WasiIoError0210 from 'wasi:io/error@0.2.10'; // import wasi:io/error@0.2.10
  export type * as WasiIoPoll0210 from 'wasi:io/poll@0.2.10'; // import wasi:io/poll@0.2.10
  export type * as WasiIoStreams0210 from 'wasi:io/streams@0.2.10'; // import wasi:io/streams@0.2.10
  export * as incomingHandler from 'wasi:http/incoming-handler@0.2.10'; // export wasi:http/incoming-handler@0.2.10
}

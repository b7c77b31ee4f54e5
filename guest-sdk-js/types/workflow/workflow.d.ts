/// <reference path="./interfaces/cairn-workflow-children.d.ts" />
/// <reference path="./interfaces/cairn-workflow-context.d.ts" />
/// <reference path="./interfaces/cairn-workflow-events.d.ts" />
/// <reference path="./interfaces/cairn-workflow-messages.d.ts" />
/// <reference path="./interfaces/cairn-workflow-steps.d.ts" />
/// <reference path="./interfaces/cairn-workflow-streams.d.ts" />
/// <reference path="./interfaces/cairn-workflow-timers.d.ts" />
/// <reference path="./interfaces/cairn-workflow-types.d.ts" />
/// <reference path="./interfaces/cairn-workflow-workflows.d.ts" />
declare module 'cairn:workflow/workflow@0.1.0' {
  export type * as CairnWorkflowChildren010 from 'cairn:workflow/children@0.1.0'; // import cairn:workflow/children@0.1.0
  export type * as CairnWorkflowContext010 from 'cairn:workflow/context@0.1.0'; // import cairn:workflow/context@0.1.0
  export type * as CairnWorkflowEvents010 from 'cairn:workflow/events@0.1.0'; // import cairn:workflow/events@0.1.0
  export type * as CairnWorkflowMessages010 from 'cairn:workflow/messages@0.1.0'; // import cairn:workflow/messages@0.1.0
  export type * as CairnWorkflowSteps010 from 'cairn:workflow/steps@0.1.0'; // import cairn:workflow/steps@0.1.0
  export type * as CairnWorkflowStreams010 from 'cairn:workflow/streams@0.1.0'; // import cairn:workflow/streams@0.1.0
  export type * as CairnWorkflowTimers010 from 'cairn:workflow/timers@0.1.0'; // import cairn:workflow/timers@0.1.0
  export type * as CairnWorkflowTypes010 from 'cairn:workflow/types@0.1.0'; // import cairn:workflow/types@0.1.0
  export * as workflows from 'cairn:workflow/workflows@0.1.0'; // export cairn:workflow/workflows@0.1.0
}

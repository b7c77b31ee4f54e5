// The seed's `eventListener` in JavaScript: on GET /events it starts
// `steps_workflow` and answers with both of its events.
import { getEvent, log, serve, startWorkflow } from '../../../guest-sdk-js/handler.js';

serve((request) => {
  const url = new URL(request.url);
  if (request.method === 'GET' && url.pathname === '/events') {
    const workflowId = startWorkflow('steps', 'steps_workflow');
    const step1 = getEvent(workflowId, 'step1', 10000);
    const step2 = getEvent(workflowId, 'step2', 10000);
    log('info', `step1: ${step1}`, { workflow_id: workflowId });
    return new Response(JSON.stringify({ workflow_id: workflowId, step1, step2 }), {
      headers: { 'content-type': 'application/json' },
    });
  }
  return new Response(`no handler for ${request.method} ${url.pathname}`, { status: 404 });
});

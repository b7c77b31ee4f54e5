//! HTTP triggers: the routes a module declares when it is deployed, and the
//! table that maps a request to one of them.
//!
//! A module's routes come in a JSON manifest uploaded with the component:
//!
//! ```json
//! {"routes": [
//!   {"method": "POST", "path": "/orders/{order_id}", "workflow": "order",
//!    "id": "order-{order_id}", "input": "body", "respond": "event",
//!    "event": "status", "timeout_ms": 5000},
//!   {"method": "GET", "path": "/events", "handler": true}
//! ]}
//! ```
//!
//! A route either starts a workflow of its module (and answers at once, with
//! the run's result, or with the value of one of its events), or hands the
//! request to the module's `wasi:http` handler. No two routes of the host
//! may match the same request: overlapping routes are refused at deploy.

mod pattern;
mod schedules;
mod table;

use serde::{Deserialize, Serialize};

use crate::domain::{Admission, Millis, QueueName};

pub use pattern::PathPattern;
pub use schedules::ScheduleDecl;
pub use table::{RouteMatch, RouteTable};

/// Methods a route may have.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Most routes per module.
const MAX_ROUTES: usize = 64;
/// Wait of a `result` or `event` route when the manifest sets none.
pub const DEFAULT_TRIGGER_TIMEOUT_MS: u64 = 30_000;

/// A module's routes manifest, as uploaded and as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub routes: Vec<RouteSpec>,
    /// Cron schedules of the module's workflows (see `schedules.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleDecl>,
}

/// One route of a manifest, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub method: String,
    pub path: String,
    /// The workflow of this module that the route starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// True: the module's `wasi:http` handler answers the request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handler: bool,
    /// The run id, with `{parameter}`s of the path: an idempotency key.
    /// A fresh id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond: Option<Respond>,
    /// With `respond: "event"`: the key to answer with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// With `respond: "result"` or `"event"`: how long to wait before
    /// answering 202 with the run's location instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Admit the route's runs through this queue (see the README's queues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// A deduplication id, with `{parameter}`s of the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
    /// A partition key, with `{parameter}`s of the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// Start each run this long after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// How a workflow route's runs are admitted, if not at once: the start
/// options of `POST /v1/workflows`, with templates filled per request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteAdmission {
    pub queue: Option<QueueName>,
    pub priority: i32,
    pub deduplication_id: Option<String>,
    pub partition_key: Option<String>,
    pub delay_ms: Option<u64>,
}

impl RouteAdmission {
    /// The admission of one request, its templates filled from the path.
    pub fn fill(&self, params: &[(String, String)], now: Millis) -> Admission {
        Admission {
            queue: self.queue.clone(),
            priority: self.priority,
            deduplication_id: self
                .deduplication_id
                .as_deref()
                .map(|t| fill_template(t, params)),
            partition_key: self
                .partition_key
                .as_deref()
                .map(|t| fill_template(t, params)),
            start_at: self
                .delay_ms
                .map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))),
        }
    }
}

/// What a workflow route passes to its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputShape {
    /// `{"method", "path", "params", "query", "body"}`. The default.
    Request,
    /// The request body alone (JSON; `null` when empty).
    Body,
}

/// When a workflow route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Respond {
    /// At once: 202 with the run's `Location`. The default.
    Accepted,
    /// When the run ends: its output (200), or its error.
    Result,
    /// As soon as the run sets event `event`: its value (200).
    Event,
}

/// A checked route, ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub pattern: PathPattern,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Workflow {
        workflow: String,
        id: Option<String>,
        input: InputShape,
        respond: Respond,
        event: Option<String>,
        timeout_ms: u64,
        admission: Option<RouteAdmission>,
    },
    Handler,
}

/// What kind of module the routes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleRole<'a> {
    /// A workflow module with these workflows.
    Workflows(&'a [String]),
    /// A `wasi:http` handler module.
    Handler,
}

impl Manifest {
    /// Parse an uploaded manifest; the error says what is accepted.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(json).map_err(|e| {
            format!(
                "the routes manifest is not valid: {e}; expected {{\"routes\": [{{\"method\", \"path\", and \"workflow\" (with optional \"id\", \"input\", \"respond\", \"event\", \"timeout_ms\") or \"handler\": true}}], and optionally \"schedules\": [{{\"name\", \"workflow\", \"cron\" (with optional \"input\", \"timezone\", \"overlap\", \"catch_up_ms\")}}]}}"
            )
        })
    }

    /// Check every route against the module it comes with, and against the
    /// others of the manifest.
    pub fn check(&self, role: ModuleRole<'_>, max_timeout_ms: u64) -> Result<Vec<Route>, String> {
        if self.routes.len() > MAX_ROUTES {
            return Err(format!(
                "the manifest has {} routes; at most {MAX_ROUTES}",
                self.routes.len()
            ));
        }
        let mut routes: Vec<Route> = Vec::with_capacity(self.routes.len());
        for spec in &self.routes {
            let route = spec.check(role, max_timeout_ms)?;
            if let Some(other) = routes.iter().find(|r| r.conflicts_with(&route)) {
                return Err(format!(
                    "routes {} and {} of the manifest match the same requests",
                    other.describe(),
                    route.describe()
                ));
            }
            routes.push(route);
        }
        Ok(routes)
    }
}

impl RouteSpec {
    fn check(&self, role: ModuleRole<'_>, max_timeout_ms: u64) -> Result<Route, String> {
        let method = self.method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(format!(
                "route method {:?} is not supported; use one of {}",
                self.method,
                METHODS.join(", ")
            ));
        }
        let pattern = PathPattern::parse(&self.path)?;
        let here = format!("route {method} {pattern}");
        let target = match (&self.workflow, self.handler, role) {
            (Some(_), true, _) | (None, false, _) => {
                return Err(format!(
                    "{here} must have either \"workflow\" or \"handler\": true"
                ));
            }
            (None, true, ModuleRole::Handler) => {
                let extra = self.id.is_some()
                    || self.input.is_some()
                    || self.respond.is_some()
                    || self.event.is_some()
                    || self.timeout_ms.is_some()
                    || self.admission_given();
                if extra {
                    return Err(format!(
                        "{here}: a handler route takes only \"method\", \"path\" and \"handler\""
                    ));
                }
                Target::Handler
            }
            (None, true, ModuleRole::Workflows(_)) => {
                return Err(format!(
                    "{here} is a handler route, but this module is a workflow module; handler routes need a component that exports wasi:http/incoming-handler"
                ));
            }
            (Some(workflow), false, ModuleRole::Handler) => {
                return Err(format!(
                    "{here} starts workflow {workflow:?}, but this module is a handler and has no workflows"
                ));
            }
            (Some(workflow), false, ModuleRole::Workflows(workflows)) => {
                if !workflows.contains(workflow) {
                    return Err(format!(
                        "{here} starts workflow {workflow:?}, which the module does not define; it has: {}",
                        workflows.join(", ")
                    ));
                }
                self.check_workflow_target(&here, &pattern, workflow, max_timeout_ms)?
            }
        };
        Ok(Route {
            method,
            pattern,
            target,
        })
    }

    fn check_workflow_target(
        &self,
        here: &str,
        pattern: &PathPattern,
        workflow: &str,
        max_timeout_ms: u64,
    ) -> Result<Target, String> {
        for (field, template) in [
            ("id", &self.id),
            ("deduplication_id", &self.deduplication_id),
            ("partition_key", &self.partition_key),
        ] {
            let Some(template) = template else { continue };
            for name in placeholders(template)? {
                if !pattern.params().any(|p| p == name) {
                    return Err(format!(
                        "{here}: its {field} {template:?} uses {{{name}}}, which is not a parameter of the path"
                    ));
                }
            }
        }
        let queue = self
            .queue
            .as_deref()
            .map(QueueName::parse)
            .transpose()
            .map_err(|e| format!("{here}: {}", e.0))?;
        let queued_only = self.priority.is_some()
            || self.deduplication_id.is_some()
            || self.partition_key.is_some();
        if queue.is_none() && queued_only {
            return Err(format!(
                "{here}: \"priority\", \"deduplication_id\" and \"partition_key\" need a \"queue\""
            ));
        }
        let admission = self.admission_given().then(|| RouteAdmission {
            queue,
            priority: self.priority.unwrap_or(0),
            deduplication_id: self.deduplication_id.clone(),
            partition_key: self.partition_key.clone(),
            delay_ms: self.delay_ms,
        });
        let respond = self.respond.unwrap_or(Respond::Accepted);
        match (respond, &self.event) {
            (Respond::Event, None) => {
                return Err(format!(
                    "{here} responds with an event: name it with \"event\""
                ));
            }
            (Respond::Accepted | Respond::Result, Some(_)) => {
                return Err(format!(
                    "{here}: \"event\" goes only with \"respond\": \"event\""
                ));
            }
            _ => {}
        }
        if let Some(key) = &self.event {
            crate::domain::validate_event_key(key).map_err(|e| format!("{here}: {}", e.0))?;
        }
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TRIGGER_TIMEOUT_MS);
        if respond == Respond::Accepted && self.timeout_ms.is_some() {
            return Err(format!(
                "{here} answers at once (\"respond\": \"accepted\"); \"timeout_ms\" goes with \"result\" or \"event\""
            ));
        }
        if timeout_ms > max_timeout_ms {
            return Err(format!(
                "{here}: timeout_ms {timeout_ms} is above this host's limit of {max_timeout_ms}"
            ));
        }
        Ok(Target::Workflow {
            workflow: workflow.to_owned(),
            id: self.id.clone(),
            input: self.input.unwrap_or(InputShape::Request),
            respond,
            event: self.event.clone(),
            timeout_ms,
            admission,
        })
    }

    /// Whether the route names any start option (a queue, a delay...).
    fn admission_given(&self) -> bool {
        self.queue.is_some()
            || self.priority.is_some()
            || self.deduplication_id.is_some()
            || self.partition_key.is_some()
            || self.delay_ms.is_some()
    }
}

impl Route {
    /// Whether some request would match both routes.
    pub fn conflicts_with(&self, other: &Route) -> bool {
        self.method == other.method && self.pattern.overlaps(&other.pattern)
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.pattern)
    }
}

/// The `{name}`s of an id template.
fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("id template {template:?} has an unclosed '{{'"))?;
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err(format!("id template {template:?} has a stray '}}'"));
    }
    Ok(names)
}

/// Fill an id template with the bound path parameters.
pub fn fill_template(template: &str, params: &[(String, String)]) -> String {
    let mut id = template.to_owned();
    for (name, value) in params {
        id = id.replace(&format!("{{{name}}}"), value);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: &str) -> Manifest {
        Manifest::parse(json.as_bytes()).unwrap()
    }

    fn workflows() -> Vec<String> {
        vec!["order".into(), "payment".into()]
    }

    #[test]
    fn a_workflow_route_gets_its_defaults() {
        let names = workflows();
        let routes = manifest(r#"{"routes": [{"method": "post", "path": "/orders/{id}", "workflow": "order", "id": "order-{id}"}]}"#)
            .check(ModuleRole::Workflows(&names), 300_000)
            .unwrap();
        assert_eq!(routes[0].method, "POST");
        assert_eq!(
            routes[0].target,
            Target::Workflow {
                workflow: "order".into(),
                id: Some("order-{id}".into()),
                input: InputShape::Request,
                respond: Respond::Accepted,
                event: None,
                timeout_ms: DEFAULT_TRIGGER_TIMEOUT_MS,
                admission: None,
            }
        );
    }

    #[test]
    fn a_route_may_admit_its_runs_through_a_queue() {
        let names = workflows();
        let routes = manifest(r#"{"routes": [{"method": "POST", "path": "/orders/{id}", "workflow": "order",
            "queue": "orders", "priority": 2, "deduplication_id": "order-{id}", "delay_ms": 500}]}"#)
            .check(ModuleRole::Workflows(&names), 300_000)
            .unwrap();
        let Target::Workflow {
            admission: Some(admission),
            ..
        } = &routes[0].target
        else {
            panic!("an admission: {:?}", routes[0].target);
        };
        let filled = admission.fill(&[("id".into(), "7".into())], 1_000);
        assert_eq!(filled.queue.as_ref().map(|q| q.as_str()), Some("orders"));
        assert_eq!(filled.deduplication_id.as_deref(), Some("order-7"));
        assert_eq!((filled.priority, filled.start_at), (2, Some(1_500)));
        let orphan = manifest(
            r#"{"routes": [{"method": "POST", "path": "/a", "workflow": "order", "priority": 1}]}"#,
        )
        .check(ModuleRole::Workflows(&names), 300_000)
        .unwrap_err();
        assert!(orphan.contains("need a \"queue\""), "{orphan}");
        let stray = manifest(r#"{"routes": [{"method": "POST", "path": "/a", "workflow": "order", "queue": "q", "partition_key": "{tenant}"}]}"#)
            .check(ModuleRole::Workflows(&names), 300_000)
            .unwrap_err();
        assert!(stray.contains("not a parameter of the path"), "{stray}");
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let names = workflows();
        let cases = [
            (
                r#"{"method": "GET", "path": "/a", "workflow": "nope"}"#,
                "does not define; it has: order, payment",
            ),
            (
                r#"{"method": "GET", "path": "/a", "workflow": "order", "handler": true}"#,
                "either",
            ),
            (r#"{"method": "GET", "path": "/a"}"#, "either"),
            (
                r#"{"method": "GET", "path": "/a", "handler": true}"#,
                "workflow module",
            ),
            (
                r#"{"method": "TRACE", "path": "/a", "workflow": "order"}"#,
                "GET, POST",
            ),
            (
                r#"{"method": "GET", "path": "/a", "workflow": "order", "id": "x-{id}"}"#,
                "not a parameter",
            ),
            (
                r#"{"method": "GET", "path": "/a", "workflow": "order", "respond": "event"}"#,
                "name it",
            ),
            (
                r#"{"method": "GET", "path": "/a", "workflow": "order", "timeout_ms": 5}"#,
                "answers at once",
            ),
            (
                r#"{"method": "GET", "path": "/a", "workflow": "order", "respond": "result", "timeout_ms": 400000}"#,
                "limit",
            ),
        ];
        for (route, expected) in cases {
            let error = manifest(&format!(r#"{{"routes": [{route}]}}"#))
                .check(ModuleRole::Workflows(&names), 300_000)
                .unwrap_err();
            assert!(error.contains(expected), "{route}: {error}");
        }
        let error =
            Manifest::parse(br#"{"routes": [{"method": "GET", "path": "/a", "flow": "x"}]}"#)
                .unwrap_err();
        assert!(error.contains("unknown field"), "{error}");
    }

    #[test]
    fn overlapping_routes_in_one_manifest_are_refused() {
        let names = workflows();
        let error = manifest(
            r#"{"routes": [
            {"method": "GET", "path": "/orders/{id}", "workflow": "order"},
            {"method": "GET", "path": "/orders/latest", "workflow": "order"}]}"#,
        )
        .check(ModuleRole::Workflows(&names), 300_000)
        .unwrap_err();
        assert!(
            error.contains("GET /orders/{id} and GET /orders/latest"),
            "{error}"
        );
        // Another method is another route.
        assert!(
            manifest(
                r#"{"routes": [
            {"method": "GET", "path": "/orders/{id}", "workflow": "order"},
            {"method": "POST", "path": "/orders/{id}", "workflow": "order"}]}"#
            )
            .check(ModuleRole::Workflows(&names), 300_000)
            .is_ok()
        );
    }

    #[test]
    fn handler_routes_belong_to_handler_modules() {
        let routes =
            manifest(r#"{"routes": [{"method": "GET", "path": "/events", "handler": true}]}"#)
                .check(ModuleRole::Handler, 300_000)
                .unwrap();
        assert_eq!(routes[0].target, Target::Handler);
        assert!(
            manifest(r#"{"routes": [{"method": "GET", "path": "/x", "workflow": "order"}]}"#)
                .check(ModuleRole::Handler, 300_000)
                .is_err()
        );
    }

    #[test]
    fn id_templates_are_filled_from_the_path() {
        assert_eq!(
            fill_template(
                "order-{id}-{n}",
                &[("id".into(), "7".into()), ("n".into(), "2".into())]
            ),
            "order-7-2"
        );
        assert!(placeholders("a-{b").is_err());
    }
}

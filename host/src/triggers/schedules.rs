//! Schedules a module declares in its manifest, next to its routes:
//!
//! ```json
//! {"routes": [],
//!  "schedules": [
//!    {"name": "nightly-report", "workflow": "report", "cron": "0 0 2 * * *",
//!     "timezone": "Europe/Paris", "input": {"days": 1}, "overlap": "skip"}
//! ]}
//! ```
//!
//! Deploying the module stores them as if each were put through
//! `/v1/schedules`; a schedule the module declared before and declares no
//! more is deleted. Schedules made over the API are left alone.

use serde::{Deserialize, Serialize};

use super::{Manifest, ModuleRole};
use crate::domain::{
    DEFAULT_CATCH_UP_MS, ModuleName, Overlap, ScheduleName, ScheduleSpec, parse_schedule_name,
};

/// Most schedules one module declares.
const MAX_SCHEDULES: usize = 64;

/// One schedule of a manifest, as written: the body of
/// `PUT /v1/schedules/{name}` with the name inside and the module implied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDecl {
    pub name: String,
    /// A workflow of this module.
    pub workflow: String,
    pub cron: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_ms: Option<u64>,
}

impl Manifest {
    /// The schedules of the manifest, checked against the module `module`
    /// they come with; the error names the schedule at fault.
    pub fn schedule_specs(
        &self,
        module: &ModuleName,
        role: ModuleRole<'_>,
    ) -> Result<Vec<(ScheduleName, ScheduleSpec)>, String> {
        if self.schedules.len() > MAX_SCHEDULES {
            return Err(format!(
                "the manifest declares {} schedules; at most {MAX_SCHEDULES}",
                self.schedules.len()
            ));
        }
        let mut specs: Vec<(ScheduleName, ScheduleSpec)> = Vec::new();
        for decl in &self.schedules {
            let checked = decl.check(module, role);
            let (name, spec) = checked.map_err(|e| format!("schedule {:?}: {e}", decl.name))?;
            if specs.iter().any(|(other, _)| *other == name) {
                return Err(format!("schedule {name:?} is declared twice"));
            }
            specs.push((name, spec));
        }
        Ok(specs)
    }
}

impl ScheduleDecl {
    fn check(
        &self,
        module: &ModuleName,
        role: ModuleRole<'_>,
    ) -> Result<(ScheduleName, ScheduleSpec), String> {
        let name = parse_schedule_name(&self.name).map_err(|e| e.0)?;
        match role {
            ModuleRole::Handler => {
                return Err(
                    "a handler module has no workflows to schedule; declare it in the manifest of the workflow module".into(),
                );
            }
            ModuleRole::Workflows(workflows) => {
                if !workflows.contains(&self.workflow) {
                    return Err(format!(
                        "the module has no workflow {:?}; it has {}",
                        self.workflow,
                        workflows.join(", ")
                    ));
                }
            }
        }
        let overlap = match self.overlap.as_deref() {
            Some(policy) => policy.parse::<Overlap>().map_err(|e| e.0)?,
            None => Overlap::default(),
        };
        let spec = ScheduleSpec {
            module: module.clone(),
            workflow: self.workflow.clone(),
            input: self
                .input
                .as_ref()
                .map_or_else(|| "null".to_owned(), ToString::to_string),
            cron: self.cron.clone(),
            timezone: self.timezone.clone().unwrap_or_else(|| "UTC".to_owned()),
            overlap,
            catch_up_ms: self.catch_up_ms.unwrap_or(DEFAULT_CATCH_UP_MS),
        };
        spec.validate().map_err(|e| e.0)?;
        Ok((name, spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: &str) -> Manifest {
        Manifest::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn declared_schedules_are_checked_against_their_module() {
        let module = ModuleName::parse("reports").unwrap();
        let workflows = ["report".to_owned()];
        let role = ModuleRole::Workflows(&workflows);
        let good = manifest(
            r#"{"routes": [], "schedules": [{"name": "nightly", "workflow": "report", "cron": "0 0 2 * * *", "input": {"days": 1}}]}"#,
        );
        let specs = good.schedule_specs(&module, role).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].1.input, r#"{"days":1}"#);
        assert_eq!(specs[0].1.catch_up_ms, DEFAULT_CATCH_UP_MS);

        let unknown = manifest(
            r#"{"routes": [], "schedules": [{"name": "n", "workflow": "other", "cron": "* * * * *"}]}"#,
        );
        let error = unknown.schedule_specs(&module, role).unwrap_err();
        assert!(
            error.contains("schedule \"n\"") && error.contains("report"),
            "{error}"
        );

        let twice = manifest(
            r#"{"routes": [], "schedules": [
                {"name": "n", "workflow": "report", "cron": "* * * * *"},
                {"name": "n", "workflow": "report", "cron": "*/5 * * * *"}]}"#,
        );
        assert!(
            twice
                .schedule_specs(&module, role)
                .unwrap_err()
                .contains("twice")
        );

        let bad_cron = manifest(
            r#"{"routes": [], "schedules": [{"name": "n", "workflow": "report", "cron": "daily"}]}"#,
        );
        assert!(
            bad_cron
                .schedule_specs(&module, role)
                .unwrap_err()
                .contains("five fields")
        );

        let handler = good
            .schedule_specs(&module, ModuleRole::Handler)
            .unwrap_err();
        assert!(handler.contains("handler module"), "{handler}");
    }

    #[test]
    fn a_manifest_without_schedules_reads_and_writes_as_before() {
        let routes_only = manifest(r#"{"routes": []}"#);
        assert!(routes_only.schedules.is_empty());
        assert_eq!(
            serde_json::to_string(&routes_only).unwrap(),
            r#"{"routes":[]}"#
        );
    }
}

//! The routes of the deployed modules, kept in memory for every request to
//! look up, and replaced as a whole on each deployment of a module.

use std::collections::HashMap;

use crate::domain::{ModuleKind, ModuleName, ModuleVersion};
use crate::triggers::{Manifest, ModuleRole, Route, RouteMatch, RouteTable};

#[derive(Debug, Default)]
pub(super) struct Routes {
    table: RouteTable,
    /// Each module's manifest as deployed, to show it back.
    manifests: HashMap<ModuleName, Manifest>,
}

/// The role a module version plays for its routes.
pub(super) fn role_of(module: &ModuleVersion) -> ModuleRole<'_> {
    match module.kind {
        ModuleKind::Workflow => ModuleRole::Workflows(&module.workflows),
        ModuleKind::Handler => ModuleRole::Handler,
    }
}

impl Routes {
    /// Check `routes` against the other modules' routes.
    pub(super) fn check(&self, module: &ModuleName, routes: &[Route]) -> Result<(), String> {
        self.table.check(module, routes)
    }

    pub(super) fn replace(&mut self, module: &ModuleName, manifest: Manifest, routes: Vec<Route>) {
        self.table.replace(module, routes);
        if manifest.routes.is_empty() && manifest.schedules.is_empty() {
            self.manifests.remove(module);
        } else {
            self.manifests.insert(module.clone(), manifest);
        }
    }

    pub(super) fn find(&self, method: &str, segments: &[&str]) -> Option<RouteMatch> {
        self.table.find(method, segments)
    }

    pub(super) fn methods_for(&self, segments: &[&str]) -> Vec<String> {
        self.table
            .methods_for(segments)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    pub(super) fn manifest(&self, module: &ModuleName) -> Manifest {
        self.manifests.get(module).cloned().unwrap_or_default()
    }
}

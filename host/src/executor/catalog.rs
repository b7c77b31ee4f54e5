//! The module catalog: deployments and their settings, the routes of every
//! module, and the current version of each, kept in memory and reloaded
//! when another host deploys.

use std::collections::HashMap;

use super::trigger_routes::{self, Routes};
use super::{AllowList, Executor, ExecutorError, Inner, Limits, Result};
use crate::domain::{
    self, ModuleDigest, ModuleInfo, ModuleKind, ModuleName, ModuleSettings, ModuleVersion,
    ScheduleName, ScheduleSpec,
};
use crate::store::{NewModuleVersion, PutModule, Store};
use crate::triggers::{Manifest, ModuleRole, RouteMatch};

impl Executor {
    /// Validate `bytes` and make them the current version of module `name`,
    /// with the routes and schedules of `manifest` in place of its old
    /// ones. Nothing is stored unless the module, its routes and its
    /// schedules are valid.
    pub async fn deploy(
        &self,
        name: ModuleName,
        bytes: Vec<u8>,
        settings: ModuleSettings,
        manifest: Manifest,
    ) -> Result<PutModule> {
        self.check_settings(&settings)?;
        let validated = self.inner.runtime.validate(&bytes).await?;
        let role = match validated.kind {
            ModuleKind::Workflow => ModuleRole::Workflows(&validated.workflows),
            ModuleKind::Handler => ModuleRole::Handler,
        };
        let routes = manifest
            .check(role, self.inner.limits.max_trigger_wait_ms)
            .map_err(ExecutorError::InvalidRoutes)?;
        let schedules = manifest
            .schedule_specs(&name, role)
            .map_err(ExecutorError::InvalidRoutes)?;
        // One deployment at a time, so that no other can slip a conflicting
        // route in between this one's check and its commit.
        let deploying = self.inner.deploying.lock().await;
        self.inner
            .routes
            .read()
            .expect("routes lock")
            .check(&name, &routes)
            .map_err(ExecutorError::RouteConflict)?;
        let declared_before = self.module_routes(&name).schedules;
        let version = ModuleDigest::of(&bytes);
        self.inner.runtime.install(&version, &validated);
        let put = self
            .inner
            .store
            .put_module(NewModuleVersion {
                name: name.clone(),
                version,
                bytes,
                kind: validated.kind,
                workflows: validated.workflows,
                settings,
                routes: serde_json::to_string(&manifest).expect("a manifest serialises"),
                now: self.inner.clock.now(),
            })
            .await?;
        self.inner
            .routes
            .write()
            .expect("routes lock")
            .replace(&name, manifest, routes);
        self.inner
            .current
            .write()
            .expect("module map lock")
            .insert(name, put.module.clone());
        // Storing a schedule looks the module up in the catalog, which a
        // reload would wait for this deployment to release.
        drop(deploying);
        self.declare_schedules(&declared_before, schedules).await?;
        Ok(put)
    }

    /// Store the schedules a module's manifest declares, and delete those
    /// its previous manifest declared and this one does not.
    async fn declare_schedules(
        &self,
        declared_before: &[crate::triggers::ScheduleDecl],
        schedules: Vec<(ScheduleName, ScheduleSpec)>,
    ) -> Result<()> {
        for before in declared_before {
            if schedules
                .iter()
                .any(|(name, _)| name.as_str() == before.name)
            {
                continue;
            }
            let Ok(name) = domain::parse_schedule_name(&before.name) else {
                continue;
            };
            match self.delete_schedule(&name).await {
                Ok(()) | Err(ExecutorError::UnknownSchedule(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for (name, spec) in schedules {
            // An unchanged schedule keeps its next tick and its pause.
            let stored = self.inner.store.get_schedule(&name).await?;
            if stored.is_none_or(|stored| stored.spec != spec) {
                self.put_schedule(&name, spec).await?;
            }
        }
        Ok(())
    }

    /// The trigger route for a request, with its path parameters.
    pub fn find_route(&self, method: &str, segments: &[&str]) -> Option<RouteMatch> {
        self.inner
            .routes
            .read()
            .expect("routes lock")
            .find(method, segments)
    }

    /// The methods of the trigger routes whose paths fit `segments`.
    pub fn route_methods(&self, segments: &[&str]) -> Vec<String> {
        self.inner
            .routes
            .read()
            .expect("routes lock")
            .methods_for(segments)
    }

    /// The routes manifest module `name` was last deployed with.
    pub fn module_routes(&self, name: &ModuleName) -> Manifest {
        self.inner
            .routes
            .read()
            .expect("routes lock")
            .manifest(name)
    }

    /// The current version of module `name`.
    pub fn current_module(&self, name: &ModuleName) -> Option<ModuleVersion> {
        self.inner.current_module(name)
    }

    /// A module may tighten the host's limits, or loosen them up to the
    /// host's bounds, not past them.
    fn check_settings(&self, settings: &ModuleSettings) -> Result<()> {
        let host = self.inner.runtime.limits();
        if let Some(bytes) = settings.max_memory_bytes
            && bytes > host.max_memory_bytes
        {
            return Err(ExecutorError::InvalidInput(format!(
                "max_memory_bytes {bytes} is above this host's limit of {} bytes",
                host.max_memory_bytes
            )));
        }
        if let Some(ms) = settings.cpu_slice_ms
            && u128::from(ms) > host.cpu_slice.as_millis()
        {
            return Err(ExecutorError::InvalidInput(format!(
                "cpu_slice_ms {ms} is above this host's limit of {} ms",
                host.cpu_slice.as_millis()
            )));
        }
        if settings.run_timeout_ms == Some(0) || settings.cpu_slice_ms == Some(0) {
            return Err(ExecutorError::InvalidInput(
                "run_timeout_ms and cpu_slice_ms must be at least 1".into(),
            ));
        }
        let allowed =
            AllowList::parse(&settings.allowed_hosts).map_err(ExecutorError::InvalidInput)?;
        for module in &settings.reach {
            ModuleName::parse(module).map_err(|e| {
                ExecutorError::InvalidInput(format!("reach names {module:?}: {}", e.0))
            })?;
        }
        let bound = &self.inner.limits.allowed_hosts;
        let outside = allowed.outside(bound);
        if !outside.is_empty() {
            return Err(ExecutorError::InvalidInput(format!(
                "allowed_hosts names {} outside this host's allow-list ({}); start the host with --allow-outbound to widen it",
                outside.join(", "),
                if bound.to_string().is_empty() {
                    "empty".to_owned()
                } else {
                    bound.to_string()
                },
            )));
        }
        Ok(())
    }

    pub async fn list_modules(&self) -> Result<Vec<ModuleInfo>> {
        Ok(self.inner.store.list_modules().await?)
    }

    pub async fn get_module(&self, name: &ModuleName) -> Result<Option<ModuleInfo>> {
        Ok(self.inner.store.get_module(name).await?)
    }
}

/// The current version of every module, and the routes of all of them, as
/// the store has them.
pub(super) async fn load_catalog(
    store: &dyn Store,
    limits: &Limits,
) -> Result<(HashMap<ModuleName, ModuleVersion>, Routes)> {
    let current: HashMap<ModuleName, ModuleVersion> = store
        .list_modules()
        .await?
        .into_iter()
        .map(|module| (module.name.clone(), module.current().clone()))
        .collect();
    let mut routes = Routes::default();
    for (name, manifest) in store.list_routes().await? {
        let Some(module) = current.get(&name) else {
            continue;
        };
        let checked = Manifest::parse(manifest.as_bytes()).and_then(|manifest| {
            let checked =
                manifest.check(trigger_routes::role_of(module), limits.max_trigger_wait_ms)?;
            routes.check(&name, &checked)?;
            Ok((manifest, checked))
        });
        match checked {
            Ok((manifest, checked)) => routes.replace(&name, manifest, checked),
            // Only a host started with tighter limits than the one that
            // accepted the routes gets here: serve the module without them.
            Err(error) => {
                tracing::error!(module = %name, %error, "not serving the routes of a module")
            }
        }
    }
    Ok((current, routes))
}

impl Inner {
    pub(super) fn current_module(&self, name: &ModuleName) -> Option<ModuleVersion> {
        self.current
            .read()
            .expect("module map lock")
            .get(name)
            .cloned()
    }

    /// Take the modules and routes from the store again: another host may
    /// have deployed.
    pub(crate) async fn reload_catalog(&self) -> Result<()> {
        // Not while this host deploys: its commit and its update of the
        // maps go together.
        let _deploying = self.deploying.lock().await;
        let (current, routes) = load_catalog(self.store.as_ref(), &self.limits).await?;
        *self.current.write().expect("module map lock") = current;
        *self.routes.write().expect("routes lock") = routes;
        Ok(())
    }

    /// The bytes of module `version`, for the runtime to compile.
    pub(super) async fn module_bytes(&self, version: &ModuleDigest) -> Result<Vec<u8>, String> {
        match self.store.module_bytes(version).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("module version {version} is not in the store")),
            Err(e) => Err(format!("cannot load module version {version}: {e}")),
        }
    }

    /// The settings module `version` was deployed with.
    pub(super) async fn module_settings(
        &self,
        module: &ModuleName,
        version: &ModuleDigest,
    ) -> ModuleSettings {
        let current = self
            .current
            .read()
            .expect("module map lock")
            .get(module)
            .filter(|m| m.version == *version)
            .map(|m| m.settings.clone());
        match current {
            Some(settings) => settings,
            None => match self.store.get_module(module).await {
                Ok(Some(module)) => module
                    .versions
                    .into_iter()
                    .find(|v| v.version == *version)
                    .map(|v| v.settings)
                    .unwrap_or_default(),
                _ => ModuleSettings::default(),
            },
        }
    }
}

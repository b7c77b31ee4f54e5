//! A module's reach, as its deployment narrowed it (`reach=A,B`): the
//! modules whose runs its workflows and handlers may start, read and send
//! to. Runs of other modules are invisible to it, as if they did not exist.

use std::sync::Arc;

use crate::domain::{ModuleName, ModuleSettings};

/// A module's narrowed reach: itself, and the modules it was deployed with.
#[derive(Debug, Clone)]
pub(crate) struct Reach {
    own: ModuleName,
    others: Arc<[ModuleName]>,
}

impl Reach {
    /// The reach of runs of `module` deployed with `settings`; `None` when
    /// they reach every module.
    pub(crate) fn of(module: &ModuleName, settings: &ModuleSettings) -> Option<Self> {
        if settings.reach.is_empty() {
            return None;
        }
        let others = settings
            .reach
            .iter()
            .filter_map(|name| ModuleName::parse(name).ok())
            .collect();
        Some(Self {
            own: module.clone(),
            others,
        })
    }

    pub(crate) fn covers(&self, module: &ModuleName) -> bool {
        *module == self.own || self.others.contains(module)
    }
}

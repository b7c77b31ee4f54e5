//! The events of runs this host started and executes, known without asking
//! the store: a caller that starts a run and waits for its events (the
//! commonest use of events) is answered from memory, with no read.
//!
//! Knowledge of a run begins when this host creates it (a run no one has
//! written to yet: it has no events) and follows every event this host
//! commits for it and its end. It is complete only while no one else can
//! write to the run, so it is dropped the moment that may stop being true:
//! another host announces a change to the run (it took the run over, or
//! cancelled or resumed it), this host loses the run's lease or is fenced,
//! the run parks on a shared store (any host may wake it), or it is
//! cancelled or resumed here. Without knowledge the store is read, as
//! before. A run's knowledge holds only small values and only the newest
//! runs are known, so it stays small.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::domain::{RunStatus, WorkflowId};

/// Runs known at most; the oldest is forgotten first.
const MAX_RUNS: usize = 8192;
/// A larger value is not kept: the run is forgotten instead.
const MAX_VALUE_BYTES: usize = 4096;

/// What is known of an event of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Known {
    /// Its current value.
    Set(String),
    /// The run has not set it; it has ended with this status, if it has.
    Unset(Option<RunStatus>),
}

#[derive(Debug, Default)]
pub(crate) struct KnownEvents {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    runs: HashMap<WorkflowId, RunEvents>,
    /// Runs in the order they became known (forgotten ones included, and
    /// skipped when their turn to be evicted comes).
    order: VecDeque<WorkflowId>,
}

#[derive(Debug, Default)]
struct RunEvents {
    events: HashMap<String, String>,
    ended: Option<RunStatus>,
}

impl KnownEvents {
    /// This host created `run`: nothing is written to it yet.
    pub(crate) fn begin(&self, run: &WorkflowId) {
        let mut state = self.state.lock().expect("known events lock");
        if state
            .runs
            .insert(run.clone(), RunEvents::default())
            .is_none()
        {
            state.order.push_back(run.clone());
        }
        while state.runs.len() > MAX_RUNS || state.order.len() > 2 * MAX_RUNS {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            state.runs.remove(&oldest);
        }
    }

    /// This host committed event `key` of `run` with `value`.
    pub(crate) fn set(&self, run: &WorkflowId, key: &str, value: &str) {
        let mut state = self.state.lock().expect("known events lock");
        if value.len() > MAX_VALUE_BYTES {
            state.runs.remove(run);
        } else if let Some(known) = state.runs.get_mut(run) {
            known.events.insert(key.to_owned(), value.to_owned());
        }
    }

    /// This host committed the end of `run`.
    pub(crate) fn ended(&self, run: &WorkflowId, status: RunStatus) {
        let mut state = self.state.lock().expect("known events lock");
        if let Some(known) = state.runs.get_mut(run) {
            known.ended = Some(status);
        }
    }

    /// Someone else may write to `run` now, or has.
    pub(crate) fn forget(&self, run: &WorkflowId) {
        self.state
            .lock()
            .expect("known events lock")
            .runs
            .remove(run);
    }

    /// Event `key` of `run`, if this host knows the run's events.
    pub(crate) fn get(&self, run: &WorkflowId, key: &str) -> Option<Known> {
        let state = self.state.lock().expect("known events lock");
        let known = state.runs.get(run)?;
        Some(match known.events.get(key) {
            Some(value) => Known::Set(value.clone()),
            None => Known::Unset(known.ended),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: usize) -> WorkflowId {
        WorkflowId::parse(&format!("r{n}")).unwrap()
    }

    #[test]
    fn a_run_is_known_from_its_creation_until_it_is_forgotten() {
        let known = KnownEvents::default();
        assert_eq!(known.get(&run(1), "k"), None, "not created here");
        known.set(&run(1), "k", "1");
        assert_eq!(
            known.get(&run(1), "k"),
            None,
            "a write alone makes nothing known"
        );
        known.begin(&run(1));
        assert_eq!(known.get(&run(1), "k"), Some(Known::Unset(None)));
        known.set(&run(1), "k", "1");
        known.set(&run(1), "k", "2");
        assert_eq!(known.get(&run(1), "k"), Some(Known::Set("2".into())));
        known.ended(&run(1), RunStatus::Success);
        assert_eq!(
            known.get(&run(1), "other"),
            Some(Known::Unset(Some(RunStatus::Success)))
        );
        known.forget(&run(1));
        assert_eq!(known.get(&run(1), "k"), None);
    }

    #[test]
    fn a_large_value_or_an_old_run_is_not_kept() {
        let known = KnownEvents::default();
        known.begin(&run(0));
        known.set(&run(0), "big", &"x".repeat(MAX_VALUE_BYTES + 1));
        assert_eq!(
            known.get(&run(0), "big"),
            None,
            "the run is forgotten, not half known"
        );
        for n in 1..=MAX_RUNS + 1 {
            known.begin(&run(n));
        }
        assert_eq!(known.get(&run(1), "k"), None, "the oldest went first");
        assert_eq!(known.get(&run(2), "k"), Some(Known::Unset(None)));
        assert_eq!(known.get(&run(MAX_RUNS + 1), "k"), Some(Known::Unset(None)));
    }
}

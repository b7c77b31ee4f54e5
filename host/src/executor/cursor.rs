//! The replay position of one execution, shared by its host imports and by
//! the WASI clocks and random numbers its guest reads.
//!
//! Clocks and random numbers are read synchronously by WASI and cannot wait
//! for the database. Outside a step, each clock reading takes an operation
//! number like any host call and is journaled with the run's next durable
//! write, before that write's effect: nothing durable can depend on a
//! reading that is not journaled with it or before it. Random numbers come
//! from a generator whose seed is journaled the first time the guest draws
//! one; a replay draws the same numbers in the same order. Inside a step the
//! guest gets the live clock and fresh randomness: the step's output is what
//! is journaled.
//!
//! The monotonic clock is not journaled: language runtimes read it for
//! themselves (StarlingMonkey a few times per call), and a journal entry per
//! reading would grow every run. Outside a step it reads the run's own
//! time: the time of the latest durable operation the execution has passed
//! (replayed or written; the run's creation before the first), plus one
//! nanosecond per reading since. That is a function of the journal, so a
//! replay reads the same values, and it keeps counting up across restarts.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::{JournalEntry, JournalWrite, Millis, OperationKind, WorkflowId};
use crate::runtime::wit::steps::RetryPolicy;
use crate::runtime::{GuestEnvironment, HostFailure, nanos, system_time};

use crate::domain::AllowList;

pub(super) struct JournalCursor {
    run: WorkflowId,
    max_operations: u32,
    /// The run's storage budget (`--max-run-bytes`).
    max_bytes: u64,
    allowed_hosts: AllowList,
    state: Mutex<CursorState>,
}

struct CursorState {
    journal: Vec<JournalEntry>,
    next_op: u32,
    /// What the run stores, as far as this execution knows: its journal as
    /// loaded, events replayed, and everything written since.
    stored_bytes: u64,
    /// Readings taken past the journal, to journal with the next write.
    pending: Vec<JournalWrite>,
    step: Option<OpenStep>,
    /// A reading that did not match the journal: WASI cannot fail the call,
    /// so the next host call (or the end of the run) fails the run with it.
    failure: Option<HostFailure>,
    /// Seeded at the first draw outside a step.
    random: Option<StdRng>,
    last_monotonic: u64,
    /// The time of the latest durable operation passed (ms), the origin of
    /// the monotonic clock's readings.
    journal_time: Millis,
}

/// A step between `begin-step` and the end of its current attempt.
#[derive(Debug, Clone)]
pub(super) struct OpenStep {
    /// The attempt's span: its outgoing requests are its children.
    pub(super) span: tracing::Span,
    pub(super) op: u32,
    pub(super) name: String,
    pub(super) attempt: u32,
    pub(super) policy: RetryPolicy,
    pub(super) started_at: Millis,
}

impl JournalCursor {
    pub(super) fn new(
        run: WorkflowId,
        journal: Vec<JournalEntry>,
        (max_operations, max_bytes): (u32, u64),
        allowed_hosts: AllowList,
    ) -> Arc<Self> {
        Arc::new(Self {
            run,
            max_operations,
            max_bytes,
            allowed_hosts,
            state: Mutex::new(CursorState {
                stored_bytes: journal.iter().map(JournalEntry::stored_bytes).sum(),
                journal,
                next_op: 0,
                pending: Vec::new(),
                step: None,
                failure: None,
                random: None,
                last_monotonic: 0,
                journal_time: 0,
            }),
        })
    }

    /// The run's creation time: the monotonic clock's origin until the
    /// first durable operation.
    pub(super) fn start_at(&self, created_at: Millis) {
        let mut state = self.lock();
        state.journal_time = state.journal_time.max(created_at);
    }

    /// Whether committing `writes` moves the run's time: unless they are
    /// only readings (which a replay passes without taking their time).
    pub(super) fn advance_time(writes: &[JournalWrite]) -> bool {
        writes.iter().any(|write| !is_reading(write))
    }

    /// A batch committed at `now`; with `advances` (see
    /// [`JournalCursor::advance_time`]) the run's time is `now`.
    pub(super) fn committed(&self, advances: bool, now: Millis) {
        if advances {
            let mut state = self.lock();
            state.journal_time = state.journal_time.max(now);
        }
    }

    /// Replay `journal`: given before the first operation, once it is read.
    pub(super) fn load(&self, journal: Vec<JournalEntry>) {
        let mut state = self.lock();
        debug_assert_eq!(
            state.next_op, 0,
            "a journal is loaded before the run starts"
        );
        state.stored_bytes = journal.iter().map(JournalEntry::stored_bytes).sum();
        state.journal = journal;
    }

    /// Count `bytes` more against the run's storage budget, or fail the run
    /// if they would go past it: a failure, not a guest error, like the
    /// limit on operations.
    pub(super) fn charge(&self, bytes: u64) -> Result<(), HostFailure> {
        let mut state = self.lock();
        let total = state.stored_bytes.saturating_add(bytes);
        if total > self.max_bytes {
            return Err(HostFailure::Run(format!(
                "run {} would store {total} bytes (journal, events, messages), past its budget of {} bytes (--max-run-bytes)",
                self.run, self.max_bytes
            )));
        }
        state.stored_bytes = total;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, CursorState> {
        self.state.lock().expect("journal cursor lock")
    }

    pub(super) fn replaying(&self) -> bool {
        let state = self.lock();
        (state.next_op as usize) < state.journal.len()
    }

    /// Take the next operation number, and the journal entry recorded under
    /// it if the run is replaying. An entry of another kind or about another
    /// thing means the workflow is not deterministic: the run fails.
    pub(super) fn next_operation(
        &self,
        kind: OperationKind,
        name: &str,
    ) -> Result<(u32, Option<JournalEntry>), HostFailure> {
        self.lock()
            .next_operation(&self.run, self.max_operations, kind, name)
    }

    /// The recorded entry after the last one taken, if any, without taking it.
    pub(super) fn peek(&self) -> Option<JournalEntry> {
        let state = self.lock();
        state.journal.get(state.next_op as usize).cloned()
    }

    /// A failure found by a synchronous call, to report now.
    pub(super) fn failure(&self) -> Option<HostFailure> {
        self.lock().failure.clone()
    }

    /// The readings not journaled yet, to write before `write`.
    pub(super) fn take_pending(&self) -> Vec<JournalWrite> {
        std::mem::take(&mut self.lock().pending)
    }

    pub(super) fn open_step(&self, step: OpenStep) {
        self.lock().step = Some(step);
    }

    pub(super) fn take_step(&self) -> Option<OpenStep> {
        self.lock().step.take()
    }

    /// The name of the step in progress, if any.
    pub(super) fn current_step(&self) -> Option<String> {
        self.lock().step.as_ref().map(|step| step.name.clone())
    }

    /// The span of the step attempt in progress (none outside steps).
    fn step_span(&self) -> tracing::Span {
        self.lock()
            .step
            .as_ref()
            .map_or_else(tracing::Span::none, |step| step.span.clone())
    }

    /// The operation number of the step in progress, if any.
    pub(super) fn current_step_op(&self) -> Option<u32> {
        self.lock().step.as_ref().map(|step| step.op)
    }

    /// A clock reading: journaled outside steps, live inside.
    fn read_clock(&self, name: &'static str, live: u64) -> u64 {
        let mut state = self.lock();
        if state.step.is_some() || state.failure.is_some() {
            return live;
        }
        match state.next_operation(&self.run, self.max_operations, OperationKind::Clock, name) {
            Ok((_, Some(entry))) => match entry.outcome.as_deref().map(str::parse::<u64>) {
                Some(Ok(recorded)) => recorded,
                _ => {
                    state.failure = Some(HostFailure::Run(format!(
                        "operation {} of run {} is a clock reading without a value",
                        entry.op, self.run
                    )));
                    live
                }
            },
            Ok((op, None)) => {
                state.pending.push(JournalWrite::Recorded {
                    op,
                    kind: OperationKind::Clock,
                    name: name.to_owned(),
                    outcome: Some(live.to_string()),
                });
                live
            }
            Err(failure) => {
                state.failure = Some(failure);
                live
            }
        }
    }
}

impl CursorState {
    fn next_operation(
        &mut self,
        run: &WorkflowId,
        max_operations: u32,
        kind: OperationKind,
        name: &str,
    ) -> Result<(u32, Option<JournalEntry>), HostFailure> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let op = self.next_op;
        if op >= max_operations {
            // A failure, not a guest error: a guest that ignored the error
            // and kept calling would never stop.
            return Err(HostFailure::Run(format!(
                "run {run} reached its limit of {max_operations} journaled operations"
            )));
        }
        self.next_op += 1;
        let Some(entry) = self.journal.get(op as usize) else {
            return Ok((op, None));
        };
        if !matches!(entry.kind, OperationKind::Clock | OperationKind::Random) {
            self.journal_time = self.journal_time.max(entry.recorded_at);
        }
        if entry.kind != kind || entry.name != name {
            return Err(HostFailure::Run(format!(
                "non-determinism in run {run}: operation {op} is {}({:?}) in the journal, but the workflow now calls {}({name:?})",
                entry.kind.as_str(),
                entry.name,
                kind.as_str(),
            )));
        }
        Ok((op, Some(entry.clone())))
    }
}

/// The name of the journal entry that holds a run's random seed.
const SEED: &str = "seed";
/// The name of a monotonic clock reading in journals written before the
/// monotonic clock was derived from the journal.
const MONOTONIC: &str = "monotonic";

/// Whether `write` journals a clock reading or the random seed.
fn is_reading(write: &JournalWrite) -> bool {
    matches!(
        write,
        JournalWrite::Recorded {
            kind: OperationKind::Clock | OperationKind::Random,
            ..
        }
    )
}

impl GuestEnvironment for JournalCursor {
    fn wall_clock(&self) -> Duration {
        Duration::from_nanos(self.read_clock("wall", nanos(system_time())))
    }

    fn monotonic_clock(&self) -> u64 {
        let live = nanos(system_time());
        let reading = {
            let state = self.lock();
            if state.step.is_some() || state.failure.is_some() {
                live
            } else if state
                .journal
                .get(state.next_op as usize)
                .is_some_and(|entry| entry.kind == OperationKind::Clock && entry.name == MONOTONIC)
            {
                // A run journaled before the clock was derived: its readings
                // are in its journal, and are replayed from there.
                drop(state);
                self.read_clock(MONOTONIC, live)
            } else {
                // The run's time: a function of its journal.
                let origin = u64::try_from(state.journal_time.max(0)).unwrap_or(0);
                origin
                    .saturating_mul(1_000_000)
                    .max(state.last_monotonic + 1)
            }
        };
        let mut state = self.lock();
        state.last_monotonic = state.last_monotonic.max(reading);
        state.last_monotonic
    }

    fn fill_random(&self, bytes: &mut [u8]) {
        let mut state = self.lock();
        if state.step.is_some() {
            drop(state);
            rand::rng().fill_bytes(bytes);
            return;
        }
        if state.random.is_none() {
            let seed = match state.next_operation(
                &self.run,
                self.max_operations,
                OperationKind::Random,
                SEED,
            ) {
                Ok((_, Some(entry))) => match entry.outcome.as_deref().and_then(decode_seed) {
                    Some(seed) => seed,
                    None => {
                        state.failure = Some(HostFailure::Run(format!(
                            "operation {} of run {} is a random seed that cannot be read",
                            entry.op, self.run
                        )));
                        [0; 32]
                    }
                },
                Ok((op, None)) => {
                    let mut seed = [0; 32];
                    rand::rng().fill_bytes(&mut seed);
                    state.pending.push(JournalWrite::Recorded {
                        op,
                        kind: OperationKind::Random,
                        name: SEED.to_owned(),
                        outcome: Some(encode_seed(&seed)),
                    });
                    seed
                }
                Err(failure) => {
                    state.failure = Some(failure);
                    [0; 32]
                }
            };
            state.random = Some(StdRng::from_seed(seed));
        }
        state
            .random
            .as_mut()
            .expect("seeded above")
            .fill_bytes(bytes);
    }

    fn insecure_seed(&self) -> u128 {
        // Hash-table seeds (Rust's std takes them from here): the same for
        // every execution of a run, different between runs, so a replay
        // iterates hash maps in the same order.
        let fnv = |offset: u64| {
            self.run.as_str().bytes().fold(offset, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        u128::from(fnv(0xcbf2_9ce4_8422_2325)) | (u128::from(fnv(0x6c62_272e_07bb_0142)) << 64)
    }

    fn outbound_span(&self) -> tracing::Span {
        self.step_span()
    }

    fn outbound_request(&self, authority: &str) -> Result<AllowList, String> {
        let Some(step) = self.current_step() else {
            return Err(format!(
                "outgoing HTTP to {authority} refused: a workflow may call other services only inside a step (cairn_sdk::step), whose outcome is journaled"
            ));
        };
        match self.allowed_hosts.check(authority) {
            Ok(()) => Ok(self.allowed_hosts.clone()),
            Err(reason) => Err(format!(
                "outgoing HTTP to {authority} from step {step:?} refused: {reason}"
            )),
        }
    }
}

/// A seed as journaled: a JSON string of 64 hex digits.
fn encode_seed(seed: &[u8; 32]) -> String {
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn decode_seed(json: &str) -> Option<[u8; 32]> {
    let hex = json.strip_prefix('"')?.strip_suffix('"')?;
    if hex.len() != 64 {
        return None;
    }
    let mut seed = [0; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(journal: Vec<JournalEntry>) -> Arc<JournalCursor> {
        JournalCursor::new(
            WorkflowId::parse("r").unwrap(),
            journal,
            (100, u64::MAX),
            AllowList::default(),
        )
    }

    fn as_entries(writes: Vec<JournalWrite>) -> Vec<JournalEntry> {
        writes
            .into_iter()
            .map(|write| match write {
                JournalWrite::Recorded {
                    op,
                    kind,
                    name,
                    outcome,
                } => JournalEntry {
                    op,
                    kind,
                    name,
                    outcome,
                    deadline: None,
                    completed: true,
                    error: None,
                    attempt: None,
                    started_at: None,
                    recorded_at: 0,
                },
                other => panic!("not a reading: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_replay_reads_the_recorded_clocks_and_random_numbers() {
        let first = cursor(Vec::new());
        let wall = first.wall_clock();
        let mut drawn = [0u8; 16];
        first.fill_random(&mut drawn);
        let mut more = [0u8; 16];
        first.fill_random(&mut more);
        let monotonic = first.monotonic_clock();
        let journal = as_entries(first.take_pending());
        // One entry per wall clock reading, one for the seed of all draws;
        // none for the monotonic clock, which is the run's own time.
        let kinds: Vec<_> = journal.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["clock", "random"]);

        std::thread::sleep(Duration::from_millis(2));
        let replay = cursor(journal);
        assert_eq!(replay.wall_clock(), wall);
        let mut again = [0u8; 16];
        replay.fill_random(&mut again);
        assert_eq!(again, drawn);
        replay.fill_random(&mut again);
        assert_eq!(again, more);
        assert_eq!(replay.monotonic_clock(), monotonic);
        assert!(replay.take_pending().is_empty());
        assert!(replay.failure().is_none());
    }

    #[test]
    fn the_monotonic_clock_is_the_runs_time_and_replays_the_same() {
        let first = cursor(Vec::new());
        first.start_at(1_000);
        let before = [first.monotonic_clock(), first.monotonic_clock()];
        assert_eq!(before, [1_000_000_000, 1_000_000_001]);
        let (op, _) = first.next_operation(OperationKind::SetEvent, "k").unwrap();
        let write = JournalWrite::SetEvent {
            op,
            key: "k".into(),
            value: "1".into(),
        };
        first.committed(
            JournalCursor::advance_time(std::slice::from_ref(&write)),
            5_000,
        );
        let after = first.monotonic_clock();
        assert_eq!(after, 5_000_000_000);
        assert!(first.take_pending().is_empty(), "nothing journaled");

        let replay = cursor(vec![JournalEntry {
            op,
            kind: OperationKind::SetEvent,
            name: "k".into(),
            outcome: None,
            deadline: None,
            completed: true,
            error: None,
            attempt: None,
            started_at: None,
            recorded_at: 5_000,
        }]);
        replay.start_at(1_000);
        assert_eq!([replay.monotonic_clock(), replay.monotonic_clock()], before);
        replay.next_operation(OperationKind::SetEvent, "k").unwrap();
        assert_eq!(replay.monotonic_clock(), after);
    }

    #[test]
    fn a_journal_with_monotonic_readings_replays_them() {
        let old = cursor(vec![JournalEntry {
            op: 0,
            kind: OperationKind::Clock,
            name: "monotonic".into(),
            outcome: Some("42".into()),
            deadline: None,
            completed: true,
            error: None,
            attempt: None,
            started_at: None,
            recorded_at: 0,
        }]);
        assert_eq!(old.monotonic_clock(), 42);
        assert!(old.failure().is_none());
        assert!(old.monotonic_clock() > 42);
    }

    #[test]
    fn a_reading_where_the_journal_holds_another_call_fails_the_run() {
        let first = cursor(Vec::new());
        first.wall_clock();
        let journal = as_entries(first.take_pending());
        let replay = cursor(journal);
        let mut bytes = [0u8; 4];
        replay.fill_random(&mut bytes);
        let Some(HostFailure::Run(message)) = replay.failure() else {
            panic!("expected a failure of the run");
        };
        assert!(message.contains("non-determinism"), "{message}");
        assert!(message.contains("clock(\"wall\")"), "{message}");
        assert!(message.contains("random(\"seed\")"), "{message}");
        // The next host call reports it.
        assert!(replay.next_operation(OperationKind::SetEvent, "k").is_err());
    }

    #[test]
    fn inside_a_step_readings_are_live_and_not_journaled() {
        let cursor = cursor(Vec::new());
        cursor.open_step(OpenStep {
            span: tracing::Span::none(),
            op: 0,
            name: "s".into(),
            attempt: 1,
            policy: RetryPolicy {
                max_attempts: 1,
                initial_interval_ms: 0,
                backoff_factor: 1.0,
                max_interval_ms: 0,
            },
            started_at: 0,
        });
        cursor.wall_clock();
        let mut bytes = [0u8; 8];
        cursor.fill_random(&mut bytes);
        assert!(cursor.take_pending().is_empty());
    }

    #[test]
    fn seeds_survive_their_encoding() {
        let seed: [u8; 32] = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(decode_seed(&encode_seed(&seed)), Some(seed));
        assert_eq!(decode_seed("\"zz\""), None);
    }
}

//! One pass of dequeueing, as both backends make it: for each lane (a
//! queue, or one partition of a partitioned queue, or the runs of no queue
//! that wait for their start time) the backend counts what the limits need,
//! asks here how many may start, and moves that many. What decides lives
//! here once; the statements are each backend's.

use crate::domain::{Millis, QueueName, QueueSettings, RunRecord};

/// Most runs one pass moves.
pub const DEQUEUE_BATCH: u32 = 256;

/// Runs that leave together: one queue and partition (both `None` for the
/// runs that only wait for their start time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub queue: Option<QueueName>,
    pub partition: Option<String>,
}

/// What a lane's limits are measured against, counted by the backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct LaneCounts {
    /// Runs of the lane `PENDING` on every host.
    pub pending: u64,
    /// Runs of the lane executing on this host.
    pub pending_here: u64,
    /// Runs of the lane that left it after [`DequeuePass::window_start`].
    pub started_in_window: u64,
    /// The earliest of those departures.
    pub oldest_in_window: Option<Millis>,
}

/// What one pass moved, and when to look again at the latest.
#[derive(Debug, Clone, Default)]
pub struct Dequeued {
    /// The runs now `PENDING`, this host's to execute.
    pub runs: Vec<RunRecord>,
    /// The earliest time a run held back by its start time or by a rate
    /// limit may start; a run held back by concurrency waits for an end.
    pub next_at: Option<Millis>,
    /// Whether the pass stopped at its batch size with more to move.
    pub more: bool,
}

pub struct DequeuePass {
    now: Millis,
    left: u64,
    dequeued: Dequeued,
}

impl DequeuePass {
    pub fn new(now: Millis, limit: u32) -> Self {
        Self {
            now,
            left: u64::from(limit),
            dequeued: Dequeued::default(),
        }
    }

    /// Departures after this count against `settings`' rate limit; with
    /// none, a time after every departure (nothing counts).
    pub fn window_start(&self, settings: Option<&QueueSettings>) -> Millis {
        match settings.and_then(|s| s.rate_limit) {
            Some(rate) => self
                .now
                .saturating_sub(i64::try_from(rate.period_ms).unwrap_or(i64::MAX)),
            None => Millis::MAX,
        }
    }

    /// Whether `settings` need the counts at all (a lane of no queue, or of
    /// a queue with no limits, needs none).
    pub fn needs_counts(settings: Option<&QueueSettings>) -> bool {
        settings.is_some_and(|s| {
            s.concurrency.is_some() || s.per_host_concurrency.is_some() || s.rate_limit.is_some()
        })
    }

    /// How many runs of a lane under `settings` may start now (`None`: a
    /// lane of no queue, or of a queue that no longer exists, has no
    /// limits). A lane held back by its rate limit sets when to look again.
    pub fn room(&mut self, settings: Option<&QueueSettings>, counts: &LaneCounts) -> u64 {
        if self.left == 0 {
            self.dequeued.more = true;
            return 0;
        }
        let Some(settings) = settings else {
            return self.left;
        };
        let room = settings
            .room(
                counts.pending,
                counts.pending_here,
                counts.started_in_window,
            )
            .min(self.left);
        if let Some(rate) = settings.rate_limit
            && counts.started_in_window.saturating_add(room) >= u64::from(rate.limit)
        {
            // The window is full (or this pass fills it): its oldest
            // departure (or one made now) leaves it one period later.
            let oldest = counts.oldest_in_window.unwrap_or(self.now);
            self.look_at(oldest.saturating_add(i64::try_from(rate.period_ms).unwrap_or(i64::MAX)));
        }
        room
    }

    pub fn started(&mut self, run: RunRecord) {
        self.left = self.left.saturating_sub(1);
        self.dequeued.runs.push(run);
    }

    /// The pass's result, with `next_start` (the earliest start time still
    /// ahead) as one more time to look again.
    pub fn finish(mut self, next_start: Option<Millis>) -> Dequeued {
        if let Some(at) = next_start {
            self.look_at(at);
        }
        self.dequeued
    }

    fn look_at(&mut self, at: Millis) {
        let at = at.max(self.now);
        self.dequeued.next_at = Some(self.dequeued.next_at.map_or(at, |next| next.min(at)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ModuleDigest, ModuleName, NewRun, RateLimit, WorkflowId};

    fn sample_run() -> RunRecord {
        NewRun {
            id: WorkflowId::generate(),
            module: ModuleName::parse("m").unwrap(),
            version: ModuleDigest::of(b"v"),
            workflow: "w".into(),
            input: "null".into(),
            now: 0,
            deadline: None,
            parent: None,
            admission: None,
            timeout_ms: None,
            traceparent: None,
        }
        .into_record()
    }

    #[test]
    fn a_rate_limited_lane_says_when_its_window_frees_a_slot() {
        let settings = QueueSettings {
            rate_limit: Some(RateLimit {
                limit: 2,
                period_ms: 1000,
            }),
            ..QueueSettings::default()
        };
        let mut pass = DequeuePass::new(10_000, 100);
        assert_eq!(pass.window_start(Some(&settings)), 9_000);
        let counts = LaneCounts {
            started_in_window: 2,
            oldest_in_window: Some(9_400),
            ..LaneCounts::default()
        };
        assert_eq!(pass.room(Some(&settings), &counts), 0);
        let dequeued = pass.finish(Some(12_000));
        assert_eq!(dequeued.next_at, Some(10_400), "the earlier of the two");
    }

    #[test]
    fn a_pass_moves_at_most_its_batch() {
        let mut pass = DequeuePass::new(0, 1);
        assert_eq!(pass.room(None, &LaneCounts::default()), 1);
        pass.started(sample_run());
        assert_eq!(pass.room(None, &LaneCounts::default()), 0);
        assert!(pass.finish(None).more);
    }
}

//! Flow control: queues that bound how many runs of theirs execute at once
//! and how fast they start, and the admission a start request asks for (a
//! queue, a priority, a deduplication id, a partition, a start time).
//!
//! A run admitted this way is stored `ENQUEUED` and becomes `PENDING` when
//! some host dequeues it: at its start time, and only while its queue (or
//! its partition of the queue) has room under every limit.

use std::fmt;

use super::{InvalidValue, Millis};

const MAX_QUEUE_NAME_LEN: usize = 64;
/// Longest deduplication id or partition key, in bytes.
pub const MAX_ADMISSION_KEY_LEN: usize = 255;

/// A queue's name: 1 to 64 characters from a-z, A-Z, 0-9, `-`, `_`, `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(name: &str) -> Result<Self, InvalidValue> {
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if name.is_empty() || name.len() > MAX_QUEUE_NAME_LEN || !valid_chars {
            return Err(InvalidValue(format!(
                "queue name {name:?} is invalid: use 1 to {MAX_QUEUE_NAME_LEN} characters from a-z, A-Z, 0-9, '-', '_' and '.'"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// At most `limit` runs leave the queue per `period_ms`, in any window of
/// that length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub period_ms: u64,
}

/// How a queue admits its runs. Each limit holds across all hosts on one
/// database, per partition key when the queue is `partitioned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSettings {
    /// Runs of the queue `PENDING` at once (executing or waiting).
    pub concurrency: Option<u32>,
    /// Runs of the queue executing on one host at once.
    pub per_host_concurrency: Option<u32>,
    pub rate_limit: Option<RateLimit>,
    /// Whether runs leave in order of their `priority` (lower first)
    /// before their arrival; without it, in arrival order only.
    pub priority: bool,
    /// Whether the limits hold per partition key: every run names one,
    /// and a busy partition does not hold up the others.
    pub partitioned: bool,
}

impl QueueSettings {
    /// Check that the limits make sense: each at least 1, and a rate
    /// limit's period at least 1 ms.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let positive = |name: &str, value: Option<u32>| match value {
            Some(0) => Err(InvalidValue(format!(
                "{name} must be at least 1 (leave it out for no limit)"
            ))),
            _ => Ok(()),
        };
        positive("concurrency", self.concurrency)?;
        positive("per_host_concurrency", self.per_host_concurrency)?;
        if let Some(rate) = self.rate_limit {
            positive("rate_limit.limit", Some(rate.limit))?;
            if rate.period_ms == 0 {
                return Err(InvalidValue(
                    "rate_limit.period_ms must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }

    /// How many more runs may leave the queue (or the partition) now,
    /// given how many of its runs are `PENDING` everywhere and on this
    /// host, and how many left it in the current rate window.
    pub fn room(&self, pending: u64, pending_here: u64, started_in_window: u64) -> u64 {
        let left = |limit: Option<u32>, used: u64| {
            limit.map_or(u64::MAX, |limit| u64::from(limit).saturating_sub(used))
        };
        left(self.concurrency, pending)
            .min(left(self.per_host_concurrency, pending_here))
            .min(left(self.rate_limit.map(|r| r.limit), started_in_window))
    }
}

/// A stored queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub name: QueueName,
    pub settings: QueueSettings,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// How many runs a queue holds, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Waiting to leave the queue.
    pub enqueued: u64,
    /// Left it and not yet ended.
    pub pending: u64,
}

/// How a run is admitted: not at once but when its queue has room, no
/// earlier than `start_at`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admission {
    pub queue: Option<QueueName>,
    /// Lower leaves first, in a queue that honours priorities; 0 by default.
    pub priority: i32,
    /// While a run of the queue with this id is `ENQUEUED` or `PENDING`,
    /// another start with it is refused.
    pub deduplication_id: Option<String>,
    /// The partition of a partitioned queue the run counts against.
    pub partition_key: Option<String>,
    /// The earliest the run may start (ms since the epoch).
    pub start_at: Option<Millis>,
}

impl Admission {
    /// Check the admission against its queue's settings (`None`: no queue).
    pub fn validate(&self, queue: Option<&QueueSettings>) -> Result<(), InvalidValue> {
        for (name, value) in [
            ("deduplication_id", &self.deduplication_id),
            ("partition_key", &self.partition_key),
        ] {
            if let Some(value) = value
                && (value.is_empty()
                    || value.len() > MAX_ADMISSION_KEY_LEN
                    || value.chars().any(char::is_control))
            {
                return Err(InvalidValue(format!(
                    "{name} must be 1 to {MAX_ADMISSION_KEY_LEN} bytes without control characters"
                )));
            }
        }
        let Some(settings) = queue else {
            let queued_only = [
                ("priority", self.priority != 0),
                ("deduplication_id", self.deduplication_id.is_some()),
                ("partition_key", self.partition_key.is_some()),
            ];
            if let Some((name, _)) = queued_only.iter().find(|(_, set)| *set) {
                return Err(InvalidValue(format!(
                    "{name} needs a queue: name one with \"queue\""
                )));
            }
            return Ok(());
        };
        match (settings.partitioned, &self.partition_key) {
            (true, None) => Err(InvalidValue(format!(
                "queue {} is partitioned: every run names a partition_key",
                self.queue.as_ref().map_or("", QueueName::as_str)
            ))),
            (false, Some(_)) => Err(InvalidValue(format!(
                "queue {} is not partitioned: a partition_key is not accepted",
                self.queue.as_ref().map_or("", QueueName::as_str)
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_the_tightest_limit() {
        let settings = QueueSettings {
            concurrency: Some(5),
            per_host_concurrency: Some(3),
            rate_limit: Some(RateLimit {
                limit: 10,
                period_ms: 1000,
            }),
            ..QueueSettings::default()
        };
        assert_eq!(settings.room(0, 0, 0), 3);
        assert_eq!(settings.room(4, 0, 0), 1);
        assert_eq!(settings.room(0, 0, 9), 1);
        assert_eq!(settings.room(6, 0, 0), 0, "over the limit is no room");
        assert_eq!(QueueSettings::default().room(1000, 1000, 1000), u64::MAX);
    }

    #[test]
    fn queue_names_and_settings_are_checked() {
        assert!(QueueName::parse("emails.v2_high-prio").is_ok());
        assert!(QueueName::parse("").is_err());
        assert!(QueueName::parse("a b").is_err());
        let zero = QueueSettings {
            concurrency: Some(0),
            ..QueueSettings::default()
        };
        assert!(zero.validate().unwrap_err().0.contains("concurrency"));
    }

    #[test]
    fn an_admission_fits_its_queue() {
        let partitioned = QueueSettings {
            partitioned: true,
            ..QueueSettings::default()
        };
        let plain = Admission {
            queue: Some(QueueName::parse("q").unwrap()),
            ..Admission::default()
        };
        assert!(plain.validate(Some(&partitioned)).is_err());
        let keyed = Admission {
            partition_key: Some("tenant-1".into()),
            ..plain.clone()
        };
        assert!(keyed.validate(Some(&partitioned)).is_ok());
        assert!(keyed.validate(Some(&QueueSettings::default())).is_err());
        let orphan = Admission {
            priority: 3,
            ..Admission::default()
        };
        let error = orphan.validate(None).unwrap_err().0;
        assert!(error.contains("priority needs a queue"), "{error}");
    }
}

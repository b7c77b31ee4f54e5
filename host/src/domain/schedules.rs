//! Schedules: a workflow started on every tick of a cron expression (with
//! seconds, in a time zone). Each tick's run has the id
//! `<schedule>@<tick time>`, so however many hosts fire a tick, and however
//! often a crashed one fires it again, it starts one run.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::{InvalidValue, Millis, ModuleName, QueueName, WorkflowId};

/// A schedule's name: the rules of a queue's name (it also names the
/// queue a `buffer_one` schedule's runs wait in).
pub type ScheduleName = QueueName;

/// The longest schedule name: a `buffer_one` schedule's runs wait in the
/// queue `schedule.<name>`, within a queue name's 64 characters.
const MAX_SCHEDULE_NAME_LEN: usize = 55;

/// A schedule's catch-up window when none is given: ticks missed up to a
/// minute ago still fire.
pub const DEFAULT_CATCH_UP_MS: u64 = 60_000;

/// A schedule's name, checked.
pub fn parse_schedule_name(name: &str) -> Result<ScheduleName, InvalidValue> {
    let parsed = ScheduleName::parse(name)?;
    if name.len() > MAX_SCHEDULE_NAME_LEN {
        return Err(InvalidValue(format!(
            "schedule name {name:?} is too long: at most {MAX_SCHEDULE_NAME_LEN} characters"
        )));
    }
    Ok(parsed)
}

/// What a tick does when the schedule's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Start nothing for this tick.
    #[default]
    Skip,
    /// Keep one tick waiting (`ENQUEUED`) until the running one ends;
    /// further ticks meanwhile are skipped.
    BufferOne,
    /// Start it anyway: runs of the schedule may overlap.
    AllowAll,
    /// Cancel the running one, then start.
    CancelRunning,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::BufferOne => "buffer_one",
            Self::AllowAll => "allow_all",
            Self::CancelRunning => "cancel_running",
        }
    }
}

impl FromStr for Overlap {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(Self::Skip),
            "buffer_one" => Ok(Self::BufferOne),
            "allow_all" => Ok(Self::AllowAll),
            "cancel_running" => Ok(Self::CancelRunning),
            other => Err(InvalidValue(format!(
                "unknown overlap policy {other:?}; expected skip, buffer_one, allow_all or cancel_running"
            ))),
        }
    }
}

/// What a schedule starts, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub module: ModuleName,
    pub workflow: String,
    /// JSON text, handed to each run under `input`.
    pub input: String,
    /// Six fields with seconds (`*/5 * * * * *`), or five (at second 0).
    pub cron: String,
    /// An IANA time zone (`Europe/Paris`); `UTC` by default.
    pub timezone: String,
    pub overlap: Overlap,
    /// Ticks missed while no host was up are fired if they are at most
    /// this old; older ones are skipped.
    pub catch_up_ms: u64,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInfo {
    pub name: ScheduleName,
    pub spec: ScheduleSpec,
    pub paused: bool,
    /// The next tick to fire (ms); `None` when the expression has no more.
    pub next_tick: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct CronTimes {
    cron: croner::Cron,
    zone: Tz,
}

impl CronTimes {
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, InvalidValue> {
        let zone: Tz = timezone.parse().map_err(|_| {
            InvalidValue(format!(
                "unknown time zone {timezone:?}; use an IANA name such as UTC or Europe/Paris"
            ))
        })?;
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| {
                InvalidValue(format!(
                    "cron expression {cron:?} is invalid ({e}); use five fields (minute hour day month weekday) or six with seconds first"
                ))
            })?;
        Ok(Self { cron, zone })
    }

    /// The first tick strictly after `after` (ms), if any.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        // Ticks fall on whole seconds; croner keeps a fraction it is given.
        let second = after.div_euclid(1000) * 1000;
        let at = self.zone.timestamp_millis_opt(second).single()?;
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(next.with_timezone(&Utc).timestamp_millis())
    }

    /// The ticks in `[from, until)`, at most `limit` of them.
    pub fn ticks_between(&self, from: Millis, until: Millis, limit: usize) -> Vec<Millis> {
        let mut ticks = Vec::new();
        let mut tick = self.next_after(from.saturating_sub(1));
        while let Some(at) = tick {
            if at >= until || ticks.len() == limit {
                break;
            }
            ticks.push(at);
            tick = self.next_after(at);
        }
        ticks
    }
}

impl ScheduleSpec {
    pub fn validate(&self) -> Result<CronTimes, InvalidValue> {
        super::validate_workflow_name(&self.workflow)?;
        let input: serde_json::Value = serde_json::from_str(&self.input)
            .map_err(|e| InvalidValue(format!("the input is not valid JSON: {e}")))?;
        if !(input.is_object() || input.is_null()) {
            return Err(InvalidValue(
                "a schedule's input must be a JSON object (each tick adds `schedule` and `scheduled_at` to it) or null".into(),
            ));
        }
        CronTimes::parse(&self.cron, &self.timezone)
    }
}

/// The input of the run of schedule `name`'s tick at `tick`: the
/// schedule's input (an object, or null for none) with the schedule's name
/// and the tick's time added, so a workflow whose input type ignores
/// unknown fields takes it unchanged.
pub fn tick_input(name: &ScheduleName, input: &str, tick: Millis) -> String {
    let mut object = match serde_json::from_str::<serde_json::Value>(input) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => serde_json::Map::new(),
    };
    object.insert("schedule".into(), name.as_str().into());
    object.insert("scheduled_at".into(), tick_time(tick).into());
    serde_json::Value::Object(object).to_string()
}

/// The run of schedule `name` for the tick at `tick`.
pub fn tick_run_id(name: &ScheduleName, tick: Millis) -> WorkflowId {
    WorkflowId::parse(&format!("{name}@{}", tick_time(tick)))
        .expect("a schedule name and a time make a valid id")
}

/// A tick as its run's id and input show it: RFC 3339 in UTC, to the
/// millisecond only when it has some.
pub fn tick_time(tick: Millis) -> String {
    let time = DateTime::<Utc>::from_timestamp_millis(tick).unwrap_or_default();
    if tick % 1000 == 0 {
        time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_the_expression_with_seconds_in_its_zone() {
        let every_two = CronTimes::parse("*/2 * * * * *", "UTC").unwrap();
        assert_eq!(every_two.next_after(1_000), Some(2_000));
        assert_eq!(
            every_two.ticks_between(0, 7_000, 10),
            [0, 2_000, 4_000, 6_000]
        );
        // 09:00 in Paris is 08:00 UTC in winter.
        let nine = CronTimes::parse("0 9 * * *", "Europe/Paris").unwrap();
        let jan_1 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(nine.next_after(jan_1), Some(jan_1 + 8 * 3_600_000));
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_accepted() {
        let zone = CronTimes::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(zone.0.contains("IANA"), "{}", zone.0);
        let cron = CronTimes::parse("every day", "UTC").unwrap_err();
        assert!(cron.0.contains("five fields"), "{}", cron.0);
    }

    #[test]
    fn a_tick_names_its_run() {
        let name = ScheduleName::parse("nightly").unwrap();
        assert_eq!(
            tick_run_id(&name, 1_767_225_600_000).as_str(),
            "nightly@2026-01-01T00:00:00Z"
        );
        assert_eq!(tick_time(1_500), "1970-01-01T00:00:01.500Z");
        let input: serde_json::Value =
            serde_json::from_str(&tick_input(&name, r#"{"batch":7}"#, 0)).unwrap();
        assert_eq!(
            input,
            serde_json::json!({"batch": 7, "schedule": "nightly", "scheduled_at": "1970-01-01T00:00:00Z"})
        );
    }
}

//! Streams: ordered, append-only sequences of JSON values a run publishes
//! under a name, which others read from an offset. A stream ends when its
//! run closes it, or when the run ends (a cancelled run may be resumed, so
//! its streams stay open).

use serde_json::value::RawValue;

use super::{InvalidValue, Millis, RunStatus};

/// Most values one read returns.
pub const MAX_STREAM_READ: u32 = 1000;

/// Check a stream name: the same rules as an event key.
pub fn validate_stream_name(name: &str) -> Result<(), InvalidValue> {
    super::validate_event_key(name)
        .map_err(|e| InvalidValue(e.0.replace("event key", "stream name")))
}

/// One entry of a stream, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Its place in the stream: 0, 1, 2, ...
    pub offset: u64,
    /// JSON text; `None` for the entry that closes the stream.
    pub value: Option<String>,
    pub recorded_at: Millis,
}

/// A stream of a run, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    /// How many values it holds.
    pub values: u64,
    /// Whether its run closed it.
    pub closed: bool,
}

/// What a read of a stream found: the values from an offset and whether
/// the stream has ended after them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamRead {
    /// (offset, JSON text), oldest first.
    pub values: Vec<(u64, String)>,
    pub closed: bool,
}

impl StreamRead {
    /// The read of `entries` (from the store, oldest first) of a run in
    /// `status`, read after the status was: an ended run's entries are all
    /// there, so its stream is closed once they are read to the end.
    pub fn of(entries: Vec<StreamEntry>, status: Option<RunStatus>, read_to_end: bool) -> Self {
        let mut read = Self::default();
        for entry in entries {
            match entry.value {
                Some(value) => read.values.push((entry.offset, value)),
                None => {
                    read.closed = true;
                    break;
                }
            }
        }
        let ended = status.is_some_and(|s| s.is_terminal() && s != RunStatus::Cancelled);
        read.closed |= ended && read_to_end;
        read
    }

    /// Whether a reader waiting for more has something: a value, or the end.
    pub fn is_news(&self) -> bool {
        self.closed || !self.values.is_empty()
    }

    /// The offset to read from next.
    pub fn next_offset(&self, from: u64) -> u64 {
        self.values.last().map_or(from, |(offset, _)| offset + 1)
    }

    /// As journaled for a workflow's `read-stream`:
    /// `{"values":[...],"closed":bool}`, each value as it was written.
    pub fn encode(&self) -> String {
        let mut out = String::from("{\"values\":[");
        for (i, (_, value)) in self.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(value);
        }
        out.push_str("],\"closed\":");
        out.push_str(if self.closed { "true" } else { "false" });
        out.push('}');
        out
    }

    /// The values and end of a journaled read, each value's text as written.
    pub fn decode(text: &str) -> Option<(Vec<String>, bool)> {
        #[derive(serde::Deserialize)]
        struct Recorded<'a> {
            #[serde(borrow)]
            values: Vec<&'a RawValue>,
            closed: bool,
        }
        let recorded: Recorded<'_> = serde_json::from_str(text).ok()?;
        Some((
            recorded.values.iter().map(|v| v.get().to_owned()).collect(),
            recorded.closed,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, value: Option<&str>) -> StreamEntry {
        StreamEntry {
            offset,
            value: value.map(str::to_owned),
            recorded_at: 0,
        }
    }

    #[test]
    fn a_read_ends_at_the_closing_entry_or_with_an_ended_run() {
        let read = StreamRead::of(
            vec![entry(3, Some("1")), entry(4, None)],
            Some(RunStatus::Pending),
            true,
        );
        assert_eq!(read.values, vec![(3, "1".to_owned())]);
        assert!(read.closed);
        assert_eq!(read.next_offset(3), 4);

        let open = StreamRead::of(vec![entry(0, Some("1"))], Some(RunStatus::Pending), true);
        assert!(!open.closed);
        let ended = StreamRead::of(vec![], Some(RunStatus::Success), true);
        assert!(ended.closed && ended.is_news());
        // A page cut short is not the end, even of an ended run.
        let cut = StreamRead::of(vec![entry(0, Some("1"))], Some(RunStatus::Error), false);
        assert!(!cut.closed);
        // A cancelled run may be resumed and write more.
        let cancelled = StreamRead::of(vec![], Some(RunStatus::Cancelled), true);
        assert!(!cancelled.is_news());
    }

    #[test]
    fn a_journaled_read_keeps_each_value_as_written() {
        let read = StreamRead {
            values: vec![(0, "{\"a\": 1}".into()), (1, "null".into())],
            closed: true,
        };
        let text = read.encode();
        assert_eq!(
            StreamRead::decode(&text),
            Some((vec!["{\"a\": 1}".to_owned(), "null".to_owned()], true))
        );
    }
}

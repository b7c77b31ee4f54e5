//! Change notifications: what a commit changed is announced with `NOTIFY`
//! on the schema's channel after the commit, by one announcer task that
//! sends whatever has queued up in one statement (a `NOTIFY` inside each
//! transaction would serialise every commit on PostgreSQL's notification
//! lock) — except the group-commit writer's batches, whose statements
//! notify for what they write (one writer: nothing to serialise, and a
//! statement less per batch); every host listens, and turns what it hears from the others into
//! wake-ups (each names the host it comes from: a host has woken its own
//! waiters already, and must not take its own changes for another's).

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::PgStore;
use crate::domain::{ModuleName, WorkflowId};
use crate::store::{Change, Result};

/// The payload a trigger sends when a commit made a parked run due
/// (migration 0004): no change to apply, only a claim to make.
const WOKEN: &str = r#"["w"]"#;

/// Most changes announced by one statement.
const ANNOUNCE_BATCH: usize = 256;

/// Send the changes queued on `queue` as notifications on `channel`, as
/// many at a time as have queued up.
pub(super) fn start_announcer(
    pool: PgPool,
    channel: String,
    origin: String,
) -> mpsc::UnboundedSender<Change> {
    let (sender, mut queue) = mpsc::unbounded_channel::<Change>();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while queue.recv_many(&mut batch, ANNOUNCE_BATCH).await > 0 {
            let payloads: Vec<String> = batch
                .drain(..)
                .map(|c| encode_change(&c, &origin))
                .collect();
            let sent =
                sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::TEXT[]) AS payload")
                    .bind(&channel)
                    .bind(&payloads)
                    .execute(&pool)
                    .await;
            if let Err(error) = sent {
                // Waiters find the changes at their next poll.
                tracing::warn!(%error, changes = payloads.len(), "cannot announce changes");
            }
        }
    });
    sender
}

/// A notification's payload: a JSON array, well under PostgreSQL's 8000
/// bytes (ids, keys and executor ids are bounded), then the origin and
/// when it was sent (microseconds since the Unix epoch, for the lag metric;
/// hosts of older versions ignore what follows the origin).
pub(super) fn encode_change(change: &Change, origin: &str) -> String {
    let sent = micros_since_epoch().to_string();
    let payload = match change {
        Change::Event { run, key } => serde_json::json!(["e", run.as_str(), key, origin, sent]),
        Change::Message { run, topic } => {
            serde_json::json!(["m", run.as_str(), topic, origin, sent])
        }
        Change::Stream { run, stream } => {
            serde_json::json!(["s", run.as_str(), stream, origin, sent])
        }
        Change::Finished(run) => serde_json::json!(["f", run.as_str(), origin, sent]),
        Change::Deployed(module) => serde_json::json!(["d", module.as_str(), origin, sent]),
    };
    payload.to_string()
}

fn micros_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// A change notification as heard.
#[derive(Debug, PartialEq)]
struct Heard {
    change: Change,
    /// The executor id of the host that made it (`None` from a host of an
    /// older version, which did not say).
    origin: Option<String>,
    /// When it was sent, in microseconds since the Unix epoch.
    sent_us: Option<u64>,
}

fn parse_change(payload: &str) -> Option<Heard> {
    let parts: Vec<String> = serde_json::from_str(payload).ok()?;
    let change = change_of(&parts)?;
    let fields = match change {
        Change::Finished(_) | Change::Deployed(_) => 2,
        _ => 3,
    };
    Some(Heard {
        change,
        origin: parts.get(fields).cloned(),
        sent_us: parts.get(fields + 1).and_then(|sent| sent.parse().ok()),
    })
}

fn change_of(parts: &[String]) -> Option<Change> {
    let run = |i: usize| WorkflowId::parse(parts.get(i)?).ok();
    match parts.first()?.as_str() {
        "e" => Some(Change::Event {
            run: run(1)?,
            key: parts.get(2)?.clone(),
        }),
        "m" => Some(Change::Message {
            run: run(1)?,
            topic: parts.get(2)?.clone(),
        }),
        "s" => Some(Change::Stream {
            run: run(1)?,
            stream: parts.get(2)?.clone(),
        }),
        "f" => Some(Change::Finished(run(1)?)),
        "d" => Some(Change::Deployed(ModuleName::parse(parts.get(1)?).ok()?)),
        _ => None,
    }
}

impl PgStore {
    /// Announce `changes`, which are committed.
    pub(super) fn announce(&self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            // The announcer lives as long as the store's pool.
            let _ = self.announcer.send(change);
        }
    }

    pub(super) async fn listen_for_changes(&self) -> Result<mpsc::Receiver<Change>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.schema).await?;
        let (sender, receiver) = mpsc::channel(4096);
        let woken = self.woken.clone();
        let own = self.executor_id.clone();
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection;
                // notifications sent meanwhile are lost, which the waiters'
                // polling fallback covers.
                match listener.recv().await {
                    Ok(notification) if notification.payload() == WOKEN => woken.notify_one(),
                    Ok(notification) => {
                        let Some(Heard {
                            change,
                            origin,
                            sent_us,
                        }) = parse_change(notification.payload())
                        else {
                            tracing::warn!(
                                payload = notification.payload(),
                                "unknown change notification"
                            );
                            continue;
                        };
                        // A host's own notifications count too: the path
                        // through PostgreSQL is the same.
                        if let Some(lag) =
                            sent_us.and_then(|sent| micros_since_epoch().checked_sub(sent))
                        {
                            crate::metrics::metrics().notified(Duration::from_micros(lag));
                        }
                        if origin.as_deref() == Some(own.as_str()) {
                            continue;
                        }
                        if sender.send(change).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "listening for changes failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_notifications_survive_their_encoding() {
        let run = WorkflowId::parse("a \"quoted\" run").unwrap();
        for change in [
            Change::Event {
                run: run.clone(),
                key: "k/1".into(),
            },
            Change::Message {
                run: run.clone(),
                topic: "t".into(),
            },
            Change::Finished(run.clone()),
            Change::Deployed(ModuleName::parse("m").unwrap()),
        ] {
            let before = micros_since_epoch();
            let decoded = parse_change(&encode_change(&change, "host-a")).unwrap();
            assert_eq!(decoded.change, change);
            assert_eq!(decoded.origin.as_deref(), Some("host-a"));
            let sent = decoded.sent_us.expect("a send time");
            assert!(sent >= before && sent <= micros_since_epoch(), "{sent}");
        }
        assert_eq!(parse_change("nonsense"), None);
        let older = parse_change(r#"["e","r","k"]"#);
        assert_eq!(
            older,
            Some(Heard {
                change: Change::Event {
                    run: WorkflowId::parse("r").unwrap(),
                    key: "k".into()
                },
                origin: None,
                sent_us: None,
            })
        );
    }
}

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
/// bytes (ids, keys and executor ids are bounded), the origin last.
pub(super) fn encode_change(change: &Change, origin: &str) -> String {
    let payload = match change {
        Change::Event { run, key } => serde_json::json!(["e", run.as_str(), key, origin]),
        Change::Message { run, topic } => serde_json::json!(["m", run.as_str(), topic, origin]),
        Change::Stream { run, stream } => serde_json::json!(["s", run.as_str(), stream, origin]),
        Change::Finished(run) => serde_json::json!(["f", run.as_str(), origin]),
        Change::Deployed(module) => serde_json::json!(["d", module.as_str(), origin]),
    };
    payload.to_string()
}

/// The change and the executor id of the host that made it (`None` from a
/// host of an older version, which did not say).
fn parse_change(payload: &str) -> Option<(Change, Option<String>)> {
    let parts: Vec<String> = serde_json::from_str(payload).ok()?;
    let change = change_of(&parts)?;
    let fields = match change {
        Change::Finished(_) | Change::Deployed(_) => 2,
        _ => 3,
    };
    Some((change, parts.get(fields).cloned()))
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
                        let Some((change, origin)) = parse_change(notification.payload()) else {
                            tracing::warn!(
                                payload = notification.payload(),
                                "unknown change notification"
                            );
                            continue;
                        };
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
            let decoded = parse_change(&encode_change(&change, "host-a"));
            assert_eq!(decoded, Some((change, Some("host-a".to_owned()))));
        }
        assert_eq!(parse_change("nonsense"), None);
        let older = parse_change(r#"["e","r","k"]"#);
        assert_eq!(
            older,
            Some((
                Change::Event {
                    run: WorkflowId::parse("r").unwrap(),
                    key: "k".into()
                },
                None
            ))
        );
    }
}

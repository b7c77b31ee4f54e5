//! Streams: a workflow appends values to a named stream of its run and
//! closes it; readers read from an offset and wait for more, over HTTP
//! (JSON long-polls, Server-Sent Events resumed with `Last-Event-ID`), from
//! other workflows (journaled, parked while they wait) and from handlers.

use std::time::Duration;

use cairn_tests::{Client, Host, SseStream, deploy_event_listener, examples};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn token(i: u64) -> Value {
    json!({"i": i, "text": format!("t{i}")})
}

async fn deploy_streams(client: &Client) -> anyhow::Result<()> {
    cairn_tests::deploy_example(client, "streams", examples::STREAMS, None).await
}

/// Read stream `name` of run `id` with JSON long-polls from `offset` until
/// it ends: every value with its offset, and how many reads it took.
async fn read_to_end(
    client: &Client,
    id: &str,
    name: &str,
    mut offset: u64,
) -> anyhow::Result<(Vec<(u64, Value)>, u32)> {
    let mut values = Vec::new();
    let mut reads = 0;
    loop {
        let reply = client
            .get(&format!(
                "/v1/workflows/{id}/streams/{name}?offset={offset}&timeout_ms=10000"
            ))
            .await?;
        anyhow::ensure!(reply.status == 200, "{}", reply.body);
        reads += 1;
        for entry in reply.body["values"].as_array().unwrap() {
            values.push((entry["offset"].as_u64().unwrap(), entry["value"].clone()));
        }
        let next = reply.body["next_offset"].as_u64().unwrap();
        anyhow::ensure!(next >= offset, "next_offset went back: {}", reply.body);
        offset = next;
        if reply.body["closed"] == true {
            return Ok((values, reads));
        }
        anyhow::ensure!(reads < 100, "the stream never ended: {values:?}");
    }
}

#[tokio::test]
async fn long_polls_read_a_stream_from_offsets_as_it_is_written() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    deploy_streams(client).await?;
    // A reader waits on a run that does not exist yet.
    let early = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .get("/v1/workflows/tok/streams/tokens?offset=0&timeout_ms=20000")
                .await
        })
    };
    client
        .start(
            "streams",
            "tokens",
            json!({"count": 6, "pause_ms": 50}),
            Some("tok"),
        )
        .await?;
    let first = early.await??;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.body["values"][0],
        json!({"offset": 0, "value": token(0)})
    );

    let (values, reads) = read_to_end(client, "tok", "tokens", 0).await?;
    let expected: Vec<(u64, Value)> = (0..6).map(|i| (i, token(i))).collect();
    assert_eq!(values, expected);
    // Woken per append, not read once at the end.
    assert!(reads >= 2, "{reads} reads");

    // From an offset in the middle; past the end of a closed stream.
    let (tail, _) = read_to_end(client, "tok", "tokens", 4).await?;
    assert_eq!(tail, vec![(4, token(4)), (5, token(5))]);
    let past = client
        .get("/v1/workflows/tok/streams/tokens?offset=6&timeout_ms=20000")
        .await?;
    assert_eq!(past.body["values"], json!([]));
    assert_eq!(past.body["closed"], true);
    assert_eq!(past.body["next_offset"], 6);
    // A limit pages the values.
    let page = client
        .get("/v1/workflows/tok/streams/tokens?offset=1&limit=2")
        .await?;
    assert_eq!(page.body["values"][1]["offset"], 2, "{}", page.body);
    assert_eq!(page.body["next_offset"], 3);
    assert_eq!(page.body["closed"], false);

    let listed = client.get("/v1/workflows/tok/streams").await?;
    assert_eq!(
        listed.body,
        json!({"streams": [{"name": "tokens", "values": 6, "closed": true}]})
    );
    // A stream the run never wrote has ended with the run, empty.
    let none = client
        .get("/v1/workflows/tok/streams/other?timeout_ms=0")
        .await?;
    assert_eq!(
        none.body,
        json!({"values": [], "next_offset": 0, "closed": true})
    );
    Ok(())
}

#[tokio::test]
async fn a_runs_end_closes_its_streams_and_bad_reads_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    deploy_streams(client).await?;
    client
        .start(
            "streams",
            "tokens",
            json!({"count": 2, "close": false}),
            Some("open"),
        )
        .await?;
    host.result("open", WAIT).await?;
    let (values, _) = read_to_end(client, "open", "tokens", 0).await?;
    assert_eq!(values.len(), 2);
    // Listed as not closed by the run, though its end ended it.
    let listed = client.get("/v1/workflows/open/streams").await?;
    assert_eq!(listed.body["streams"][0]["closed"], false);

    for (query, code) in [
        ("offset=-1", "invalid_query"),
        ("offset=x", "invalid_query"),
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
        ("since=3", "invalid_query"),
    ] {
        let reply = client
            .get(&format!("/v1/workflows/open/streams/tokens?{query}"))
            .await?;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], code, "{query}");
    }
    let missing = client.get("/v1/workflows/nobody/streams").await?;
    assert_eq!(missing.status, 404, "{}", missing.body);

    // Writing after close is refused, and the refusal says why.
    client
        .start("streams", "write_after_close", json!(null), Some("wac"))
        .await?;
    let run = host.result("wac", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert!(run["output"].as_str().unwrap().contains("closed"), "{run}");
    let (values, _) = read_to_end(client, "wac", "tokens", 0).await?;
    assert_eq!(values, vec![(0, json!(1))]);
    Ok(())
}

#[tokio::test]
async fn a_steps_writes_are_at_least_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    deploy_streams(client).await?;
    client
        .start("streams", "step_progress", json!({"count": 3}), Some("sp"))
        .await?;
    let run = host.result("sp", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    // The first attempt wrote 0, 1, 2 and failed; the second wrote them again.
    let (values, _) = read_to_end(client, "sp", "progress", 0).await?;
    let values: Vec<Value> = values.into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, [0, 1, 2, 0, 1, 2].map(|i| json!(i)).to_vec());
    Ok(())
}

#[tokio::test]
async fn server_sent_events_follow_a_stream_and_resume_after_the_last_id() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    deploy_streams(client).await?;
    client
        .start(
            "streams",
            "tokens",
            json!({"count": 5, "pause_ms": 100}),
            Some("sse"),
        )
        .await?;
    let path = "/v1/workflows/sse/streams/tokens";
    let mut first = SseStream::open(&host.url, path, &[]).await?;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["content-type"], "text/event-stream");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = first.next(WAIT).await?.expect("a value");
        assert_eq!(event.event, "message");
        seen.push(event);
    }
    drop(first);
    let last_id = seen.last().unwrap().id.clone().unwrap();
    assert_eq!(last_id, "1");
    let resumed = SseStream::open(&host.url, path, &[("last-event-id", &last_id)])
        .await?
        .collect(WAIT)
        .await?;
    let (closed, values) = resumed.split_last().unwrap();
    assert_eq!(closed.event, "cairn:closed");
    assert_eq!(closed.json(), json!({"next_offset": 5}));
    let ids: Vec<&str> = values.iter().map(|e| e.id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["2", "3", "4"]);
    let data: Vec<Value> = values.iter().map(|e| e.json()).collect();
    assert_eq!(data, vec![token(2), token(3), token(4)]);
    // From an offset in the query, for a client that keeps its own.
    let from_query = SseStream::open(&host.url, &format!("{path}?offset=4"), &[])
        .await?
        .collect(WAIT)
        .await?;
    assert_eq!(from_query.len(), 2);
    assert_eq!(from_query[0].json(), token(4));
    Ok(())
}

#[tokio::test]
async fn workflows_and_handlers_read_another_runs_stream() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Readers park after 50 ms: the follower waits without an instance.
    let host = Host::start(dir.path(), &["--park-after-ms", "50"]).await?;
    let client = &host.client;
    deploy_streams(client).await?;
    deploy_event_listener(client).await?;
    // The follower starts first: it waits for a run that does not exist yet.
    client
        .start("streams", "follow", json!({"run": "src"}), Some("reader"))
        .await?;
    let parked = async {
        for _ in 0..200 {
            let run = client.status("reader").await?.body;
            if run["waiting"]["parked"] == true {
                return anyhow::Ok(run);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("the follower never parked")
    }
    .await?;
    assert_eq!(parked["waiting"]["kind"], "stream", "{parked}");
    client
        .start(
            "streams",
            "tokens",
            json!({"count": 4, "pause_ms": 120}),
            Some("src"),
        )
        .await?;
    // A handler reads it too, from offset 1.
    let handled = client.get("/app/streams/src/tokens?offset=1").await?;
    assert_eq!(handled.status, 200, "{}", handled.body);
    assert_eq!(handled.body["values"][0], token(1), "{}", handled.body);

    let run = host.result("reader", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(
        run["output"]["values"],
        json!([token(0), token(1), token(2), token(3)])
    );
    assert_eq!(run["output"]["closed"], true);
    // Each read is journaled as a read-stream, with what it read.
    let steps = client.steps("reader").await?.body;
    let reads: Vec<&Value> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "read-stream")
        .collect();
    assert_eq!(reads.len() as u64, run["output"]["reads"].as_u64().unwrap());
    assert_eq!(reads[0]["name"], "src/tokens@0");
    Ok(())
}

#[tokio::test]
async fn a_crash_between_appends_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = host.client.clone();
    deploy_streams(&client).await?;
    client
        .start(
            "streams",
            "tokens",
            json!({"count": 8, "pause_ms": 250}),
            Some("crashy"),
        )
        .await?;
    // Read the first three values, then kill the host mid-stream.
    let mut got: Vec<(u64, Value)> = Vec::new();
    while got.len() < 3 {
        let reply = client
            .get(&format!(
                "/v1/workflows/crashy/streams/tokens?offset={}&timeout_ms=10000",
                got.len()
            ))
            .await?;
        for entry in reply.body["values"].as_array().unwrap() {
            got.push((entry["offset"].as_u64().unwrap(), entry["value"].clone()));
        }
    }
    host.kill().await?;
    let host = Host::start(dir.path(), &[]).await?;
    // The reader resumes at its offset.
    let (rest, _) = read_to_end(&host.client, "crashy", "tokens", got.len() as u64).await?;
    got.extend(rest);
    let expected: Vec<(u64, Value)> = (0..8).map(|i| (i, token(i))).collect();
    assert_eq!(got, expected);
    let run = host.result("crashy", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    // One journal entry per append and the close, none twice.
    let steps = host.client.steps("crashy").await?.body;
    let writes = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "write-stream")
        .count();
    assert_eq!(writes, 8);
    Ok(())
}

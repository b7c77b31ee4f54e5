//! Listing runs: filters, newest first, and cursor pagination that neither
//! skips nor repeats a run, pages bounded by bytes as well as by count, and a
//! run's steps and event history read a page at a time.

use std::collections::HashSet;

use cairn_tests::Host;
use serde_json::json;

#[tokio::test]
async fn runs_are_listed_newest_first_page_by_page_with_filters() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;
    let mut started = Vec::new();
    for i in 0..7 {
        let id = format!("run-{i}");
        client
            .start("steps", "steps_workflow", json!(null), Some(&id))
            .await?;
        started.push(id);
    }
    client
        .start("faulty", "trap", json!(null), Some("broken"))
        .await?;
    for id in started.iter().chain([&"broken".to_owned()]) {
        host.result(id, std::time::Duration::from_secs(30)).await?;
    }

    // All steps runs, three at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/workflows?module=steps&limit=3".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = client.get(&path).await?;
        assert_eq!(page.status, 200, "{}", page.body);
        let runs = page.body["workflows"].as_array().unwrap();
        assert!(runs.len() <= 3);
        seen.extend(runs.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7, "no repeats");
    let mut newest_first = started.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "newest first");

    let errors = client.get("/v1/workflows?status=ERROR").await?;
    assert_eq!(errors.body["workflows"].as_array().unwrap().len(), 1);
    assert_eq!(errors.body["workflows"][0]["id"], "broken");
    let none = client
        .get("/v1/workflows?workflow=steps_with_pause")
        .await?;
    assert_eq!(none.body, json!({"workflows": [], "next_cursor": null}));

    for bad in ["status=DONE", "limit=0", "cursor=zz", "colour=red"] {
        let reply = client.get(&format!("/v1/workflows?{bad}")).await?;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        assert_eq!(reply.error_code(), Some("invalid_query"), "{bad}");
    }
    Ok(())
}

/// Every page of `first_path` (a listing or `/steps`), following
/// `next_field` into `param`, until it ends.
async fn all_pages(
    host: &Host,
    first_path: &str,
    items: &str,
    (next_field, param): (&str, &str),
) -> anyhow::Result<Vec<Vec<serde_json::Value>>> {
    let mut pages = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            None => first_path.to_owned(),
            Some(next) => format!("{first_path}&{param}={next}"),
        };
        let page = host.client.get(&path).await?;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        pages.push(page.body[items].as_array().unwrap().clone());
        next = match &page.body[next_field] {
            serde_json::Value::Null => return Ok(pages),
            serde_json::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        };
        assert!(pages.len() < 100, "the pages never end");
    }
}

#[tokio::test]
async fn a_page_of_runs_is_bounded_by_bytes_as_well_as_by_count() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    // Twelve runs of about 1.8 MB each (an input of 900 kB, echoed as the
    // error): 21 MB in all, more than a page holds.
    let reason = "x".repeat(900 * 1024);
    for i in 0..12 {
        let id = format!("big-{i}");
        host.client
            .start("faulty", "fail", json!(reason), Some(&id))
            .await?;
        host.result(&id, std::time::Duration::from_secs(30)).await?;
    }
    let pages = all_pages(
        &host,
        "/v1/workflows?module=faulty&limit=50",
        "workflows",
        ("next_cursor", "cursor"),
    )
    .await?;
    assert!(pages.len() >= 3, "{} pages", pages.len());
    assert!(
        pages.iter().all(|page| page.len() <= 6),
        "a page stops near 8 MiB"
    );
    let ids: HashSet<String> = pages
        .iter()
        .flatten()
        .map(|run| run["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 12, "each run once, none skipped");
    Ok(())
}

#[tokio::test]
async fn a_runs_steps_and_event_history_come_a_page_at_a_time() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &["--max-journal-entries", "50"]).await?;
    cairn_tests::deploy_example(
        &host.client,
        "hostile",
        cairn_tests::examples::HOSTILE,
        None,
    )
    .await?;
    host.client
        .start("hostile", "event_flood", json!(null), Some("flood"))
        .await?;
    let run = host
        .result("flood", std::time::Duration::from_secs(30))
        .await?;
    assert_eq!(run["status"], "ERROR", "{run}");

    let pages = all_pages(
        &host,
        "/v1/workflows/flood/steps?limit=20",
        "steps",
        ("next_after_op", "after_op"),
    )
    .await?;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [20, 20, 10]);
    let ops: Vec<u64> = pages
        .iter()
        .flatten()
        .map(|step| step["op"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ops,
        (0..50).collect::<Vec<u64>>(),
        "every operation once, in order"
    );
    let refused = host.client.get("/v1/workflows/flood/steps?limit=0").await?;
    assert_eq!(refused.status, 400, "{}", refused.body);

    // The stream reads the history in pages too, and misses nothing.
    let stream = cairn_tests::SseStream::open(&host.url, "/v1/workflows/flood/events", &[]).await?;
    let events = stream.collect(std::time::Duration::from_secs(30)).await?;
    let keys: Vec<&str> = events
        .iter()
        .filter(|e| e.event != "cairn:finished")
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(keys.len(), 50);
    assert_eq!(keys[49], "key-49");
    Ok(())
}

#[tokio::test]
async fn runs_are_listed_by_parent_by_id_prefix_and_by_time() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    cairn_tests::deploy_example(&host.client, "fanout", cairn_tests::examples::FANOUT, None)
        .await?;
    let wait = std::time::Duration::from_secs(30);
    host.client
        .start(
            "fanout",
            "fan_out",
            json!({"items": [1, 2, 3]}),
            Some("fan"),
        )
        .await?;
    host.result("fan", wait).await?;
    for id in ["batch-7-a", "batch-7-b", "batch-8-a"] {
        host.client
            .start("steps", "steps_workflow", json!(null), Some(id))
            .await?;
        host.result(id, wait).await?;
    }
    let ids = async |query: &str| -> anyhow::Result<Vec<String>> {
        let page = host.client.get(&format!("/v1/workflows?{query}")).await?;
        assert_eq!(page.status, 200, "{query}: {}", page.body);
        let mut ids: Vec<String> = page.body["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| run["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        Ok(ids)
    };
    assert_eq!(ids("parent=fan").await?, ["fan.0", "fan.1", "fan.2"]);
    assert_eq!(ids("id_prefix=batch-7-").await?, ["batch-7-a", "batch-7-b"]);
    // A time range: from the first batch run's creation, before the last's.
    let created = async |id: &str| -> anyhow::Result<String> {
        Ok(host.client.status(id).await?.body["created_at"]
            .as_str()
            .unwrap()
            .to_owned())
    };
    let (from, until) = (created("batch-7-a").await?, created("batch-8-a").await?);
    let range = ids(&format!(
        "created_from={from}&created_until={until}&module=steps"
    ))
    .await?;
    assert_eq!(range, ["batch-7-a", "batch-7-b"]);
    let refused = host
        .client
        .get("/v1/workflows?created_from=yesterday")
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    Ok(())
}

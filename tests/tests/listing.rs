//! Listing runs: filters, newest first, and cursor pagination that neither
//! skips nor repeats a run.

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

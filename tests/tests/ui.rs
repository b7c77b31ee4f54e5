//! The operator console (`/ui/`) in a real browser: headless Chromium,
//! driven over the DevTools protocol, loads each page against a host with
//! real runs, waits until the page shows what the host holds, checks it,
//! and writes a screenshot of it to `target/tmp/screenshots/` (the README's
//! pictures are taken from there).

use std::time::Duration;

use cairn_tests::browser::Browser;
use cairn_tests::{Host, deploy_example, examples};
use serde_json::json;

const ADMIN: &str = "admin-secret-0123456789";
const INVOKE: &str = "invoke-secret-0123456789";
const FINISH: Duration = Duration::from_secs(60);

/// The number of elements matching `selector`, as a JavaScript expression.
fn count(selector: &str) -> String {
    format!("document.querySelectorAll({selector:?}).length")
}

#[tokio::test]
async fn the_runs_page_filters_pages_and_charts_the_runs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    for n in 0..30 {
        let id = format!("list-{n:02}");
        host.client
            .start("steps", "steps_workflow", json!(null), Some(&id))
            .await?;
        host.result(&id, FINISH).await?;
    }
    for n in 0..3 {
        let id = format!("broken-{n}");
        host.client
            .start("faulty", "fail", json!("out of stock"), Some(&id))
            .await?;
        host.result(&id, FINISH).await?;
    }
    let mut browser = Browser::launch().await?;

    // Newest first, a page of 25 of the 33, then the other 8.
    browser.goto(&format!("{}/ui/", host.url)).await?;
    browser
        .wait_for(
            &format!("{} === 25", count("#runs-table tbody tr")),
            "the first page",
        )
        .await?;
    let first = browser
        .eval("document.querySelector('#runs-table tbody tr').dataset.runId")
        .await?;
    assert_eq!(first, "broken-2", "newest first");
    browser.click("#older").await?;
    browser
        .wait_for(
            &format!("{} === 8", count("#runs-table tbody tr")),
            "the second page",
        )
        .await?;
    assert_eq!(
        browser
            .eval("document.querySelector('#runs-table tbody tr:last-child').dataset.runId")
            .await?,
        "list-00"
    );
    assert!(browser.text("#page-info").await?.starts_with("page 2"));
    browser.click("#newer").await?;
    browser
        .wait_for(
            &format!("{} === 25", count("#runs-table tbody tr")),
            "the first page again",
        )
        .await?;

    // Filters come from the address, so a filtered listing can be shared.
    browser
        .goto(&format!("{}/ui/runs?status=ERROR&module=faulty", host.url))
        .await?;
    browser
        .wait_for(
            &format!("{} === 3", count("#runs-table tbody tr")),
            "the failed runs",
        )
        .await?;
    assert_eq!(
        browser
            .eval(&count("#runs-table tbody tr:not([data-status=ERROR])"))
            .await?,
        0
    );
    assert_eq!(
        browser
            .eval("document.querySelector('select[name=status]').value")
            .await?,
        "ERROR",
        "the form shows the filter in force"
    );
    browser
        .goto(&format!(
            "{}/ui/runs?created_until=2000-01-01T00:00:00Z",
            host.url
        ))
        .await?;
    browser
        .wait_for("document.querySelector('#no-runs')", "an empty listing")
        .await?;

    // The filter form writes the address and lists what it selects.
    browser.goto(&format!("{}/ui/runs", host.url)).await?;
    browser
        .wait_for(
            &format!("{} === 25", count("#runs-table tbody tr")),
            "the listing",
        )
        .await?;
    browser
        .eval("document.querySelector('input[name=id_prefix]').value = 'broken-1'")
        .await?;
    browser.click("#filters button[type=submit]").await?;
    browser
        .wait_for(
            &format!(
                "location.search.includes('id_prefix=broken-1') && {} === 1",
                count("#runs-table tbody tr")
            ),
            "the listing of one id prefix",
        )
        .await?;

    // The live chart samples /metrics: runs started while the page is open
    // show in its started and finished rates.
    browser.goto(&format!("{}/ui/", host.url)).await?;
    browser
        .wait_for(
            "Number(document.querySelector('#live-chart').dataset.samples) >= 1",
            "a first sample",
        )
        .await?;
    let started = host.client.clone();
    let load = tokio::spawn(async move {
        for n in 0..40 {
            let id = format!("live-{n:02}");
            started
                .start("steps", "steps_workflow", json!(null), Some(&id))
                .await?;
        }
        anyhow::Ok(())
    });
    browser
        .wait_for(
            "Number(document.querySelector('#live-chart').dataset.startedMax) > 0 \
             && Number(document.querySelector('#live-chart').dataset.finishedMax) > 0",
            "the chart to show runs started and finished",
        )
        .await?;
    load.await??;
    assert!(
        browser.text("#card-store").await?.contains("ok"),
        "the load cards show the store"
    );
    browser
        .wait_for(
            &format!("{} === 25", count("#runs-table tbody tr")),
            "the listing",
        )
        .await?;
    browser.screenshot("runs").await?;
    Ok(())
}

#[tokio::test]
async fn the_run_page_shows_the_journal_as_a_timeline() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    deploy_example(&host.client, "payments", examples::PAYMENTS, None).await?;
    deploy_example(&host.client, "fanout", examples::FANOUT, None).await?;
    let mut browser = Browser::launch().await?;

    // A step retried twice: one item, three attempts with their errors;
    // the clock and random readings outside it folded into one.
    host.client
        .start(
            "payments",
            "charge",
            json!({"order_id": "o-1", "amount_cents": 5, "declines": 2, "retry_ms": 20}),
            Some("pay-1"),
        )
        .await?;
    host.result("pay-1", FINISH).await?;
    browser.goto(&format!("{}/ui/runs/pay-1", host.url)).await?;
    browser
        .wait_for(
            "document.querySelector('#journal li[data-kind=step]')",
            "the step",
        )
        .await?;
    let step = browser
        .eval(
            "(() => { const s = document.querySelector('#journal li[data-kind=step]');
                return { name: s.dataset.name, attempts: s.dataset.attempts,
                         errors: [...s.querySelectorAll('li.error-text')].map(e => e.innerText) }; })()",
        )
        .await?;
    assert_eq!(step["name"], "charge", "{step}");
    assert_eq!(step["attempts"], "3", "{step}");
    assert_eq!(step["errors"].as_array().map(Vec::len), Some(2), "{step}");
    assert!(
        step["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("card network timeout (attempt 1)")),
        "{step}"
    );
    assert_eq!(
        browser
            .eval(&count("#journal li[data-kind=readings]"))
            .await?,
        1
    );
    assert!(
        browser
            .text("#journal li[data-kind=readings] summary")
            .await?
            .starts_with("2 clock and random readings"),
    );
    assert_eq!(browser.text("#status").await?, "SUCCESS");
    assert!(browser.text("#output").await?.contains("ch_o-1_"));
    browser
        .wait_for(&count("#events li[data-key=status]"), "the live events")
        .await?;
    browser.screenshot("run-timeline").await?;

    // A wait shows what it waits for while it waits, and how it ended.
    host.client
        .start(
            "orders",
            "order",
            json!({"order_id": "o-2", "amount_cents": 7}),
            Some("order-2"),
        )
        .await?;
    browser
        .goto(&format!("{}/ui/runs/order-2", host.url))
        .await?;
    // The run and its journal are two reads: the journal may show the
    // open wait a refresh before the run's "waiting for" line does.
    browser
        .wait_for(
            "document.querySelector('#journal li[data-kind=\"get-event\"].open') \
             && document.querySelector('#waiting').innerText\
                .startsWith('Waiting for event payment-o-2/outcome')",
            "the open wait and what it waits for",
        )
        .await?;
    host.client
        .start(
            "orders",
            "payment",
            json!({"order_id": "o-2", "approve": true}),
            Some("payment-o-2"),
        )
        .await?;
    browser
        .wait_for(
            "document.querySelector('#status').dataset.status === 'SUCCESS' \
             && !document.querySelector('#journal li.open')",
            "the order to finish",
        )
        .await?;
    assert!(
        browser
            .text("#journal li[data-kind=\"get-event\"]")
            .await?
            .contains("got it after")
    );

    // Children as a tree under their parent, each linking to its own page.
    host.client
        .start(
            "fanout",
            "fan_out",
            json!({"items": [1, 2, 3], "work_ms": 0}),
            Some("fan-1"),
        )
        .await?;
    host.result("fan-1", FINISH).await?;
    browser.goto(&format!("{}/ui/runs/fan-1", host.url)).await?;
    browser
        .wait_for(
            &format!("{} === 3", count("#children li[data-child-id]")),
            "the children",
        )
        .await?;
    assert_eq!(
        browser
            .eval(
                "[...document.querySelectorAll('#journal li[data-kind=\"start-child\"] a.child-link')]\
                 .map(a => a.getAttribute('href'))"
            )
            .await?,
        json!(["/ui/runs/fan-1.0", "/ui/runs/fan-1.1", "/ui/runs/fan-1.2"]),
        "each start links to its child's page"
    );
    browser.screenshot("run-children").await?;
    browser.click("#children li[data-child-id] a").await?;
    browser
        .wait_for(
            "document.querySelector('#parent-link')?.innerText === 'fan-1'",
            "the child's page",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn an_admin_cancels_resumes_and_forks_from_the_run_page() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(
        dir.path(),
        &["--admin-token", ADMIN, "--invoke-token", INVOKE],
    )
    .await?;
    let admin = host.client.with_token(ADMIN);
    deploy_example(&admin, "approvals", examples::APPROVALS, None).await?;
    admin
        .start(
            "approvals",
            "approval",
            json!({"subject": "leave"}),
            Some("leave-1"),
        )
        .await?;
    admin
        .send_message("leave-1", "note", json!("not the decision"), None)
        .await?;
    let mut browser = Browser::launch().await?;

    // An invoke token reads the page; its cancel is refused, and says why.
    browser
        .goto(&format!("{}/ui/runs/leave-1#token={INVOKE}", host.url))
        .await?;
    browser
        .wait_for(
            "document.querySelector('#journal li[data-kind=recv].open')",
            "the open recv",
        )
        .await?;
    assert_eq!(
        browser.eval("location.hash").await?,
        "",
        "the token leaves the address bar"
    );
    assert_eq!(
        browser.eval(&count("#messages-table tr[data-seq]")).await?,
        1
    );
    browser.click("#cancel").await?;
    browser
        .wait_for(
            "document.querySelector('#action-result').innerText.includes('refused')",
            "the refusal",
        )
        .await?;
    assert_eq!(admin.status("leave-1").await?.body["status"], "PENDING");

    // The admin cancels, resumes and forks it.
    browser.click("#forget-token").await?;
    browser
        .wait_for("document.querySelector('#token-input')", "the token form")
        .await?;
    // (A new document: the same address with only a new fragment would not
    // load the page again.)
    browser.goto("about:blank").await?;
    browser
        .goto(&format!("{}/ui/runs/leave-1#token={ADMIN}", host.url))
        .await?;
    browser
        .wait_for(
            "document.querySelector('#cancel:not([disabled])')",
            "cancel",
        )
        .await?;
    browser.click("#cancel").await?;
    browser
        .wait_for(
            "document.querySelector('#status').dataset.status === 'CANCELLED'",
            "the cancel",
        )
        .await?;
    assert_eq!(admin.status("leave-1").await?.body["status"], "CANCELLED");
    browser
        .wait_for(
            "document.querySelector('#resume:not([disabled])')",
            "resume",
        )
        .await?;
    browser.click("#resume").await?;
    browser
        .wait_for(
            "document.querySelector('#status').dataset.status === 'PENDING' \
             && document.querySelector('#journal li[data-kind=recv].open')",
            "the resumed run, waiting again",
        )
        .await?;
    browser.screenshot("run-actions").await?;
    browser
        .eval("document.querySelector('#fork-from').value = 2")
        .await?;
    browser.click("#fork").await?;
    let forked = browser
        .wait_for(
            "document.querySelector('#forked-link')?.innerText",
            "the fork's link",
        )
        .await?;
    let forked = forked.as_str().expect("a run id");
    let record = admin.status(forked).await?;
    assert_eq!(record.body["forked_from"], "leave-1", "{}", record.body);

    // The decision that ends the original shows on its page.
    admin
        .send_message(
            "leave-1",
            "decision",
            json!({"approved": true, "by": "kim"}),
            None,
        )
        .await?;
    browser
        .wait_for(
            "document.querySelector('#status').dataset.status === 'SUCCESS'",
            "the end",
        )
        .await?;
    browser
        .wait_for(
            &format!("{} === 2", count("#messages-table tr[data-seq]")),
            "both messages",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_modules_pages_show_versions_routes_and_workflows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let routes = std::fs::read(examples::ORDERS_ROUTES)?;
    deploy_example(&host.client, "orders", examples::ORDERS, Some(routes)).await?;
    // A second version of `shop`: the first deployment of another build.
    deploy_example(&host.client, "shop", examples::STEPS, None).await?;
    deploy_example(&host.client, "shop", examples::APPROVALS, None).await?;
    let mut browser = Browser::launch().await?;

    browser.goto(&format!("{}/ui/modules", host.url)).await?;
    browser
        .wait_for(
            &format!("{} === 4", count("#modules-table tr[data-module]")),
            "the modules",
        )
        .await?;
    assert_eq!(
        browser
            .text("#modules-table tr[data-module=shop] td:last-child")
            .await?,
        "2"
    );
    browser.screenshot("modules").await?;

    browser
        .click("#modules-table tr[data-module=orders] a")
        .await?;
    browser
        .wait_for(
            "document.querySelector('#routes-table tr[data-path]')",
            "the routes",
        )
        .await?;
    let workflows = browser
        .eval("[...document.querySelectorAll('#workflows li')].map(li => li.dataset.workflow)")
        .await?;
    assert_eq!(workflows, json!(["order", "payment"]));
    assert_eq!(
        browser
            .text("#routes-table tr[data-path=\"/orders\"] td:nth-child(2)")
            .await?,
        "/app/orders",
        "a route shows where it is served"
    );
    assert_eq!(
        browser
            .eval(&count("#versions-table tr[data-version]"))
            .await?,
        1
    );
    browser.screenshot("module").await?;

    // A workflow's link lists its runs.
    host.client
        .start(
            "orders",
            "payment",
            json!({"order_id": "m-1", "approve": true}),
            Some("payment-m-1"),
        )
        .await?;
    host.result("payment-m-1", FINISH).await?;
    browser
        .click("#workflows li[data-workflow=payment] a")
        .await?;
    browser
        .wait_for(
            "document.querySelector('#runs-table tr[data-run-id=\"payment-m-1\"]')",
            "the workflow's runs",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_console_asks_for_a_token_where_one_is_needed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(
        dir.path(),
        &["--admin-token", ADMIN, "--invoke-token", INVOKE],
    )
    .await?;
    let client = host.client.with_token(INVOKE);
    client
        .start("steps", "steps_workflow", json!(null), Some("page-2"))
        .await?;
    let mut browser = Browser::launch().await?;

    browser
        .goto(&format!("{}/ui/runs/page-2", host.url))
        .await?;
    browser
        .wait_for(
            "document.querySelector('#status').dataset.status === 'disconnected' \
             && document.querySelector('[data-error-code=unauthorized]')",
            "the refusal",
        )
        .await?;
    assert_eq!(browser.eval(&count("#events li")).await?, 0);

    // The token form keeps the token for the tab.
    browser
        .eval(&format!(
            "document.querySelector('#token-input').value = {INVOKE:?}"
        ))
        .await?;
    browser.click("#token-box button[type=submit]").await?;
    browser
        .wait_for(
            "document.querySelector('#status').dataset.status === 'SUCCESS' \
             && document.querySelector('#events li[data-key=step2]')",
            "the run, with the token",
        )
        .await?;
    browser.goto(&format!("{}/ui/modules", host.url)).await?;
    browser
        .wait_for(
            &format!("{} === 3", count("#modules-table tr[data-module]")),
            "the modules",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_run_page_follows_events_as_they_arrive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &["--park-after-ms", "0"]).await?;
    host.client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 3000}),
            Some("page-3"),
        )
        .await?;
    let mut browser = Browser::launch().await?;
    browser
        .goto(&format!("{}/ui/runs/page-3", host.url))
        .await?;
    // While it sleeps, parked: step1 is in, step2 not yet.
    browser
        .wait_for(
            "document.querySelector('#waiting[data-parked=true]')",
            "the parked wait",
        )
        .await?;
    assert!(
        browser
            .text("#waiting")
            .await?
            .starts_with("Waiting for sleep 3000"),
    );
    assert_eq!(browser.eval(&count("#events li[data-key=step1]")).await?, 1);
    assert_eq!(browser.eval(&count("#events li[data-key=step2]")).await?, 0);
    browser
        .wait_for(
            "document.querySelector('#status').dataset.status === 'SUCCESS'",
            "the end",
        )
        .await?;
    let keys = browser
        .eval("[...document.querySelectorAll('#events li')].map(li => li.dataset.key)")
        .await?;
    assert_eq!(keys, json!(["step1", "step2"]), "in write order");
    assert!(
        browser
            .eval("document.querySelector('#waiting').hidden")
            .await?
            == true
    );
    Ok(())
}

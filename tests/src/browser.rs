//! Headless Chromium, driven over the DevTools protocol, for the console's
//! tests: open a page, wait until a condition holds in it, read it, click,
//! and write a screenshot a person can look at.
//!
//! Chromium is a requirement of the suite (`scripts/test.sh` installs
//! Debian's): without it these tests fail rather than skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a page may take to reach a condition a test waits for.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium binary: `CAIRN_CHROMIUM`, else Debian's.
pub fn chromium() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(
        std::env::var("CAIRN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    if !path.exists() {
        bail!(
            "{} is missing: install Debian's chromium (scripts/test.sh does) or set CAIRN_CHROMIUM",
            path.display()
        );
    }
    Ok(path)
}

/// Where the tests write their screenshots: `target/tmp/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/screenshots");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|target| PathBuf::from(target).join("tmp/screenshots"))
        .unwrap_or(dir);
    std::fs::create_dir_all(&dir).expect("creating the screenshot directory");
    dir
}

/// One headless Chromium with one tab.
#[allow(missing_debug_implementations, reason = "holds a process and a socket")]
pub struct Browser {
    _process: Child,
    _profile: tempfile::TempDir,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Start Chromium with a fresh profile and attach to its tab. The
    /// flags keep it off the network (this machine's is closed) and quiet.
    pub async fn launch() -> anyhow::Result<Browser> {
        let profile = tempfile::tempdir()?;
        let mut process = Command::new(chromium()?)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromium")?;
        // Chromium says where its DevTools endpoint listens on stderr.
        let stderr = process.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let browser_url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Ok(url.trim().to_owned());
                }
            }
            Err(anyhow!("chromium exited before listening for DevTools"))
        })
        .await
        .context("chromium did not start its DevTools endpoint in 60 s")??;
        // Keep draining stderr, so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let authority = browser_url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("unexpected DevTools address {browser_url}"))?
            .to_owned();
        let (_, targets) = cairn::client::Client::new(&format!("http://{authority}"))?
            .get_text("/json/list")
            .await?;
        let targets: Value = serde_json::from_str(&targets)?;
        let page_url = targets
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .with_context(|| format!("no page among Chromium's targets: {targets}"))?
            .to_owned();
        let (page, _) = tokio_tungstenite::connect_async(page_url.as_str())
            .await
            .context("connecting to the page's DevTools socket")?;
        let mut browser = Browser {
            _process: process,
            _profile: profile,
            page,
            next_id: 1,
        };
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await?;
        Ok(browser)
    }

    /// Send one DevTools command and return its result (events that arrive
    /// meanwhile are not needed and are dropped).
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({"id": id, "method": method, "params": params});
        self.page.send(Message::text(command.to_string())).await?;
        let reply = tokio::time::timeout(PAGE_TIMEOUT + Duration::from_secs(10), async {
            while let Some(message) = self.page.next().await {
                let Message::Text(text) = message? else {
                    continue;
                };
                let reply: Value = serde_json::from_str(&text)?;
                if reply["id"] == id {
                    return Ok(reply);
                }
            }
            Err(anyhow!("Chromium closed its DevTools socket"))
        })
        .await
        .with_context(|| format!("{method} got no answer"))??;
        if let Some(error) = reply.get("error") {
            bail!("{method} failed: {error}");
        }
        Ok(reply["result"].clone())
    }

    /// Open `url` and wait for its document to have loaded.
    pub async fn goto(&mut self, url: &str) -> anyhow::Result<()> {
        let navigated = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(error) = navigated.get("errorText") {
            bail!("opening {url}: {error}");
        }
        self.wait_for("document.readyState === 'complete'", "the page to load")
            .await?;
        Ok(())
    }

    /// The value of JavaScript `expression` in the page (awaited if it is
    /// a promise).
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{expression} threw: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Wait, inside the page, until `predicate` (a JavaScript expression)
    /// is truthy, re-checking it on every animation frame and timer tick;
    /// fail with `what` after [`PAGE_TIMEOUT`], showing the page's text.
    pub async fn wait_for(&mut self, predicate: &str, what: &str) -> anyhow::Result<Value> {
        let script = format!(
            r#"new Promise((resolve) => {{
                const deadline = Date.now() + {timeout};
                (function check() {{
                    let value;
                    try {{ value = ({predicate}); }} catch (_) {{ value = undefined; }}
                    if (value) return resolve({{ ok: true, value }});
                    if (Date.now() > deadline) return resolve({{ ok: false }});
                    setTimeout(check, 25);
                }})();
            }})"#,
            timeout = PAGE_TIMEOUT.as_millis(),
        );
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        let outcome = loop {
            match self.eval(&script).await {
                Ok(outcome) => break outcome,
                // A click that loads another document destroys the one the
                // check ran in: check again in the new one.
                Err(error)
                    if tokio::time::Instant::now() < deadline
                        && [
                            "navigated or closed",
                            "context was destroyed",
                            "Cannot find context",
                        ]
                        .iter()
                        .any(|gone| error.to_string().contains(gone)) =>
                {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(error) => return Err(error),
            }
        };
        if outcome["ok"] != true {
            let text = self
                .eval("document.body ? document.body.innerText : ''")
                .await
                .unwrap_or_default();
            bail!(
                "waited {} s for {what} ({predicate}); the page shows:\n{}",
                PAGE_TIMEOUT.as_secs(),
                text.as_str().unwrap_or_default()
            );
        }
        Ok(outcome["value"].clone())
    }

    /// The text of the first element matching `selector`.
    pub async fn text(&mut self, selector: &str) -> anyhow::Result<String> {
        let value = self
            .eval(&format!(
                "document.querySelector({selector:?})?.innerText ?? null"
            ))
            .await?;
        value
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no element matches {selector}"))
    }

    /// Click the first element matching `selector`.
    pub async fn click(&mut self, selector: &str) -> anyhow::Result<()> {
        let clicked = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({selector:?}); if (!e || e.disabled) return false; e.click(); return true; }})()"
            ))
            .await?;
        if clicked != true {
            bail!("nothing enabled to click at {selector}");
        }
        Ok(())
    }

    /// Write a PNG of the whole page (beyond the window's height) to
    /// [`screenshot_dir`]`/name.png`, and return its path.
    pub async fn screenshot(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let size = &metrics["cssContentSize"];
        let height = size["height"]
            .as_f64()
            .unwrap_or(900.0)
            .clamp(300.0, 4000.0);
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
                }),
            )
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().context("a screenshot without data")?)?;
        if !png.starts_with(b"\x89PNG") {
            bail!("the screenshot is not a PNG");
        }
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

//! A SQLite host whose disk fills up mid-run, on a real (small, tmpfs)
//! file system: `/healthz` says so, new work is refused with a clear error
//! rather than accepted and lost, and once space is freed the run that was
//! stranded finishes, with nothing lost, without a restart of the host.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_tests::{Host, deploy_example, examples, on_postgres};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A tmpfs of `megabytes` mounted at `path`, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, megabytes: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(path)
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!(
                "cannot mount a tmpfs at {} (this test needs root)",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Write a file until the disk refuses more; returns its path.
    fn fill(&self) -> anyhow::Result<PathBuf> {
        let path = self.path.join("filler");
        let mut file = std::fs::File::create(&path)?;
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        Ok(path)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the host's files may still be open as the test unwinds.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

async fn health(host: &Host) -> anyhow::Result<(u16, Value)> {
    let reply = host.client.get("/healthz").await?;
    Ok((reply.status.as_u16(), reply.body))
}

/// Polls `/healthz` until `done` holds for its answer.
async fn await_health(
    host: &Host,
    done: impl Fn(u16, &Value) -> bool,
) -> anyhow::Result<(u16, Value)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = health(host).await?;
        if done(status, &body) {
            return Ok((status, body));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("/healthz never got there; last: {status} {body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_refuses_new_work_and_strands_no_run() -> anyhow::Result<()> {
    if on_postgres() {
        // SQLite's own disk; this ran in the SQLite pass.
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let disk = SmallDisk::mount(&dir.path().join("data"), 48)?;
    let host = Host::start(&disk.path, &[]).await?;
    deploy_example(&host.client, "hostile", examples::HOSTILE, None).await?;
    deploy_example(&host.client, "steps", examples::STEPS, None).await?;
    assert_eq!(health(&host).await?.0, 200);

    // A run that sleeps, then writes 8 MiB of events: by then the disk is full.
    let filler = json!({"pause_ms": 1500, "events": 16, "bytes": 512 * 1024});
    let started = host
        .client
        .start("hostile", "fill_after_pause", filler, Some("stranded"))
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    let filler_file = disk.fill()?;

    let (status, body) = await_health(&host, |_, body| body["store"]["disk_full"] == true).await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let error = body["store"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("disk is full"), "{body}");

    // New work is refused with a clear error, not accepted and lost. (One
    // start in a while is let through to see whether space came back; it
    // fails at the disk then, with the same error.)
    let mut refusals = Vec::new();
    for n in 0..3 {
        let reply = host
            .client
            .start(
                "steps",
                "steps_workflow",
                json!(null),
                Some(&format!("late-{n}")),
            )
            .await?;
        if reply.status == 507 {
            refusals.push(reply.body);
        }
    }
    assert!(
        !refusals.is_empty(),
        "no start was refused while the disk was full"
    );
    for refusal in &refusals {
        assert_eq!(refusal["error"]["code"], "storage_full", "{refusal}");
        let message = refusal["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("disk is full"), "{refusal}");
    }
    assert_eq!(
        host.client.status("stranded").await?.body["status"],
        "PENDING"
    );

    // Space comes back: the stranded run finishes, here, with every event.
    std::fs::remove_file(&filler_file)?;
    let run = host.result("stranded", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["output"], 16);
    let events = host.client.events("stranded").await?.body;
    let filled = events.as_object().map_or(0, |events| events.len());
    assert_eq!(filled, 16, "every event of the stranded run is there");
    let (_, body) = await_health(&host, |status, _| status == 200).await?;
    assert_eq!(body["store"]["ok"], true, "{body}");

    let accepted = host
        .client
        .start("steps", "steps_workflow", json!(null), Some("after"))
        .await?;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(host.result("after", WAIT).await?["status"], "SUCCESS");
    drop(host);
    Ok(())
}

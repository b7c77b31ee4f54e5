//! The seed benchmark over HTTP. One operation = start a `steps_workflow`
//! run, then read its events `step1` and `step2` through the long-poll
//! route. Reports throughput and latency for each number of concurrent
//! clients, against a real `cairn serve` (release build, default durable
//! settings unless told otherwise).
//!
//! cargo run --release -p cairn-tests --bin bench -- [--seconds N] [--clients 1,16]
//!     [--hosts N] [--steps-module FILE] [--server URL | -- serve args]
//!
//! With `--otlp-sink`, the hosts export their traces (`--otlp-endpoint`) to
//! a sink in this process that takes each export and drops it: the cost of
//! tracing on, for the figure "tracing on is at least 95% of off".
//!
//! With `--otlp-paired ROUNDS`, two hosts are started, one exporting to the
//! sink and one not, and each round measures both at the same time, each
//! with its own clients: both see the same machine at the same moment, so
//! the ratio of their throughputs is not swamped by how the machine's speed
//! drifts from one run to the next (±20% here between rounds of 10 s).
//! `--paired-control` runs the same with neither host exporting: the
//! comparison's own noise. The throughput ratio flatters the exporting
//! host: on a busy machine the scheduler gives the host that needs more
//! CPU per operation more of it. The host CPU per operation, printed
//! beside it, is the cost itself: on a machine of its own, busy, a host's
//! throughput goes as its inverse. (Pinning each host to a core of its own
//! was tried: this machine's two cores differ by 20-40%, round to round.)
//!
//! With `--hosts N`, N hosts are started with the same serve args (give them
//! one PostgreSQL database: `-- --database postgres://...`), and the clients
//! are spread over them, each client on one host.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use cairn_tests::seed::measure;
use cairn_tests::{Client, Host, examples};

struct Options {
    seconds: u64,
    /// Measure an already running host instead of starting one.
    server: Option<String>,
    clients: Vec<usize>,
    hosts: usize,
    /// The component deployed as `steps` (default: the Rust example); it
    /// must define `steps_workflow`.
    steps_module: Option<String>,
    serve_args: Vec<String>,
    otlp_sink: bool,
    /// Rounds of the paired comparison, tracing on against off.
    otlp_paired: Option<usize>,
    /// In the paired comparison, the second host does not export either.
    paired_control: bool,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        seconds: 10,
        server: None,
        clients: vec![1, 16],
        hosts: 1,
        steps_module: None,
        serve_args: Vec::new(),
        otlp_sink: false,
        otlp_paired: None,
        paired_control: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.next().context("--seconds N")?.parse()?,
            "--clients" => {
                options.clients = args
                    .next()
                    .context("--clients 1,16")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--hosts" => options.hosts = args.next().context("--hosts N")?.parse()?,
            "--server" => options.server = Some(args.next().context("--server URL")?),
            "--steps-module" => {
                options.steps_module = Some(args.next().context("--steps-module FILE")?)
            }
            "--otlp-sink" => options.otlp_sink = true,
            "--paired-control" => options.paired_control = true,
            "--otlp-paired" => {
                options.otlp_paired = Some(args.next().context("--otlp-paired ROUNDS")?.parse()?)
            }
            "--" => options.serve_args.extend(args.by_ref()),
            other => bail!("unknown argument {other:?}; see the comment at the top of bench.rs"),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut options = parse_options()?;
    if let Some(rounds) = options.otlp_paired {
        return otlp_paired(&options, rounds).await;
    }
    if options.otlp_sink {
        let sink = otlp_sink().await?;
        options
            .serve_args
            .extend(["--otlp-endpoint".to_owned(), sink]);
    }
    let dir = tempfile::tempdir()?;
    let serve_args: Vec<&str> = options.serve_args.iter().map(String::as_str).collect();
    let mut hosts = Vec::new();
    let clients: Vec<Client> = match &options.server {
        Some(url) => vec![Client::new(url)?],
        None => {
            for n in 0..options.hosts.max(1) {
                hosts.push(Host::start(&dir.path().join(n.to_string()), &serve_args).await?);
            }
            hosts.iter().map(|host| host.client.clone()).collect()
        }
    };
    let component = examples::bytes(options.steps_module.as_deref().unwrap_or(examples::STEPS));
    let uploaded = std::time::Instant::now();
    let deployed = clients[0].deploy("steps", component.clone()).await?;
    ensure!(deployed.status.is_success(), "deploy: {}", deployed.body);
    println!(
        "upload (validate + compile) of {} bytes: {:.2} s",
        component.len(),
        uploaded.elapsed().as_secs_f64()
    );
    // The first run after the upload, then a later one.
    for which in ["first", "later"] {
        let started = std::time::Instant::now();
        let id = format!("latency-{which}");
        clients[0]
            .start(
                "steps",
                "steps_workflow",
                serde_json::json!(null),
                Some(&id),
            )
            .await?;
        let done = clients[0]
            .get(&format!("/v1/workflows/{id}/result?timeout_ms=30000"))
            .await?;
        ensure!(done.status == 200, "{}", done.body);
        println!(
            "{which} run (start + result): {:.2} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    println!(
        "seed benchmark: start steps_workflow + read step1 + read step2, over HTTP; {} s per setting; {} host(s); serve args: {:?}",
        options.seconds,
        clients.len(),
        options.serve_args
    );
    // Warm up: connections, the instance cache, SQLite's page cache.
    measure(&clients, 4, Duration::from_secs(1)).await?;
    for &concurrency in &options.clients {
        measure(&clients, concurrency, Duration::from_secs(options.seconds))
            .await?
            .print();
    }
    Ok(())
}

/// Tracing on against off, measured at the same time on two hosts: per
/// round both lines and the ratio, then the ratio of the totals.
async fn otlp_paired(options: &Options, rounds: usize) -> anyhow::Result<()> {
    ensure!(
        options.server.is_none() && options.hosts <= 1,
        "--otlp-paired starts its own two hosts; leave out --server and --hosts"
    );
    let dir = tempfile::tempdir()?;
    let mut on_args = options.serve_args.clone();
    if !options.paired_control {
        on_args.extend(["--otlp-endpoint".to_owned(), otlp_sink().await?]);
    }
    let off = Host::start(&dir.path().join("off"), &str_args(&options.serve_args)).await?;
    let on = Host::start(&dir.path().join("on"), &str_args(&on_args)).await?;
    let component = examples::bytes(options.steps_module.as_deref().unwrap_or(examples::STEPS));
    for host in [&off, &on] {
        let deployed = host.client.deploy("steps", component.clone()).await?;
        ensure!(deployed.status.is_success(), "deploy: {}", deployed.body);
        measure(
            std::slice::from_ref(&host.client),
            4,
            Duration::from_secs(1),
        )
        .await?;
    }
    let clients = options.clients.last().copied().unwrap_or(16);
    let seconds = Duration::from_secs(options.seconds);
    let on_is = if options.paired_control {
        "a second host not exporting either (the control)"
    } else {
        "tracing on (exporting to a sink)"
    };
    println!(
        "{on_is} against off, at the same time, {clients} clients each, {rounds} rounds of {} s; serve args: {:?}",
        options.seconds, options.serve_args
    );
    let (mut ops_off, mut ops_on, mut ratios) = (0.0, 0.0, Vec::new());
    let (mut cpu_off, mut cpu_on, mut n_off, mut n_on) = (0.0, 0.0, 0.0, 0.0);
    for round in 1..=rounds {
        let (report_off, report_on) = tokio::try_join!(
            measure(std::slice::from_ref(&off.client), clients, seconds),
            measure(std::slice::from_ref(&on.client), clients, seconds),
        )?;
        let ratio = report_on.throughput() / report_off.throughput();
        println!("round {round}: on/off {:.1}%", ratio * 100.0);
        print!("  off ");
        report_off.print();
        print!("  on  ");
        report_on.print();
        ops_off += report_off.throughput();
        ops_on += report_on.throughput();
        cpu_off += report_off.hosts.cpu_us.unwrap_or_default() as f64;
        cpu_on += report_on.hosts.cpu_us.unwrap_or_default() as f64;
        n_off += report_off.operations as f64;
        n_on += report_on.operations as f64;
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "tracing on/off: {:.1}% of the throughput over all rounds (median round {:.1}%, lowest {:.1}%)",
        ops_on / ops_off * 100.0,
        ratios[ratios.len() / 2] * 100.0,
        ratios[0] * 100.0
    );
    let (per_op_off, per_op_on) = (cpu_off / n_off.max(1.0), cpu_on / n_on.max(1.0));
    println!(
        "host cpu: on {per_op_on:.0} µs/op, off {per_op_off:.0} µs/op; off/on {:.1}% (the throughput ratio on a machine of its own)",
        per_op_off / per_op_on.max(1.0) * 100.0
    );
    Ok(())
}

fn str_args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// An OTLP/HTTP endpoint that reads each export and answers 200: a
/// collector that costs the hosts nothing but the export itself.
async fn otlp_sink() -> anyhow::Result<String> {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async {
                    let _ = request.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::new(),
                    )))
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    Ok(url)
}

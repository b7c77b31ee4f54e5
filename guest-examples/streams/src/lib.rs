//! Streams: a workflow that streams tokens as it makes them (as a model's
//! output would arrive), and one that reads another run's stream to its end.
use std::time::Duration;

use cairn_sdk::{
    Result, RetryPolicy, StreamChunk, close_stream, current_attempt, read_stream, sleep, step_with,
    write_stream,
};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Tokens {
    /// How many tokens to write.
    count: u32,
    /// The durable pause after each token, in milliseconds.
    #[serde(default)]
    pause_ms: u64,
    /// Whether to close the stream when done (the run's end closes it too).
    #[serde(default = "yes")]
    close: bool,
    /// Whether each token carries the wall-clock time it was written at
    /// (`at_us`, µs since the Unix epoch), for latency benchmarks.
    #[serde(default)]
    stamp: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Token {
    i: u32,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    at_us: Option<u64>,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// Writes `count` tokens to stream `tokens`, pausing durably after each,
/// then closes it; returns how many it wrote.
fn tokens(input: Tokens) -> Result<u32> {
    for i in 0..input.count {
        let at_us = input.stamp.then(now_us);
        write_stream(
            "tokens",
            &Token {
                i,
                text: format!("t{i}"),
                at_us,
            },
        )?;
        if input.pause_ms > 0 {
            sleep(Duration::from_millis(input.pause_ms));
        }
    }
    if input.close {
        close_stream("tokens")?;
    }
    Ok(input.count)
}

/// Writes `count` values to stream `progress` from inside a step whose
/// first attempt fails after writing them: a step's writes are at least
/// once, so the second attempt writes them again.
fn step_progress(input: Tokens) -> Result<u32> {
    let policy = RetryPolicy::attempts(2).interval(Duration::from_millis(10));
    step_with("report", policy, || -> Result<u32> {
        for i in 0..input.count {
            write_stream("progress", &i)?;
        }
        if current_attempt() == 1 {
            return Err("the first attempt fails after writing".into());
        }
        Ok(input.count)
    })
}

#[derive(Deserialize)]
struct Follow {
    run: String,
    #[serde(default = "default_stream")]
    stream: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_stream() -> String {
    "tokens".into()
}

fn default_timeout_ms() -> u64 {
    30_000
}

#[derive(Serialize)]
struct Followed {
    values: Vec<serde_json::Value>,
    closed: bool,
    reads: u32,
}

/// Reads stream `stream` of run `run` from the start until it ends (or a
/// read waits `timeout_ms` in vain), and returns what it read.
fn follow(input: Follow) -> Result<Followed> {
    let mut values = Vec::new();
    let mut reads = 0;
    loop {
        let offset = values.len() as u64;
        let chunk: StreamChunk<serde_json::Value> = read_stream(
            &input.run,
            &input.stream,
            offset,
            Duration::from_millis(input.timeout_ms),
        )?;
        reads += 1;
        let empty = chunk.values.is_empty();
        values.extend(chunk.values);
        if chunk.closed || empty {
            return Ok(Followed {
                values,
                closed: chunk.closed,
                reads,
            });
        }
    }
}

/// Writes to a stream after closing it: refused (`not-allowed`); returns
/// the refusal's message.
fn write_after_close(_input: ()) -> Result<String> {
    write_stream("tokens", &1)?;
    close_stream("tokens")?;
    match write_stream("tokens", &2) {
        Ok(()) => Err("a write after close was accepted".into()),
        Err(refusal) => Ok(refusal.message().to_owned()),
    }
}

cairn_sdk::workflows!(tokens, step_progress, follow, write_after_close);

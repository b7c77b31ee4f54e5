//! Guests that misbehave on purpose, for the sandbox tests: each must end in
//! an `ERROR` run with a useful message while the host keeps serving others.
//! Never deploy these in earnest.
use std::hint::black_box;
use std::time::Duration;

use cairn_sdk::{Result, log, set_event, sleep, workflow_id};

/// Computes forever without calling the host: stopped by the CPU slice.
fn spin(_input: ()) -> Result<()> {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates until it is refused: stopped by the memory limit.
fn memory_bomb(_input: ()) -> Result<()> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1; 1 << 20]);
        black_box(&hoard);
    }
}

/// Recursion whose frames live on the WebAssembly stack (no locals in
/// linear memory), so it runs into the engine's stack limit.
fn dive(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    dive(depth + 1).wrapping_add(depth)
}

/// Recurses without end: stopped by the stack limit.
fn recursion(_input: ()) -> Result<u64> {
    Ok(dive(0))
}

/// Publishes an event larger than the host accepts: refused with an error
/// the workflow passes on.
fn giant_event(_input: ()) -> Result<()> {
    let big = "x".repeat(2 * 1024 * 1024);
    set_event("big", &big)
}

/// Publishes events without end: stopped by the journal limit.
fn event_flood(_input: ()) -> Result<()> {
    for i in 0u64.. {
        set_event(&format!("key-{i}"), &i)?;
    }
    Ok(())
}

/// Traps in the middle of a sequence of events: those before stay.
fn trap_mid_sequence(_input: ()) -> Result<()> {
    set_event("a", &1)?;
    set_event("b", &2)?;
    let empty: Vec<u8> = Vec::new();
    let _ = empty[black_box(5)];
    set_event("c", &3)
}

/// Spins calling only the host's imports that journal nothing (its id, a
/// log line), each of which used to restart its CPU slice: stopped by the
/// CPU budget, its log bounded.
fn chatter(_input: ()) -> Result<()> {
    loop {
        log::info("chatter", &[("id", &workflow_id())]);
    }
}

#[derive(serde::Deserialize)]
struct Filler {
    pause_ms: u64,
    events: u32,
    bytes: usize,
}

/// After a durable pause, publishes `events` events of `bytes` bytes each:
/// a run whose writes need the disk space that is gone by then.
fn fill_after_pause(input: Filler) -> Result<u32> {
    sleep(Duration::from_millis(input.pause_ms));
    let value = "x".repeat(input.bytes);
    for i in 0..input.events {
        set_event(&format!("fill-{i}"), &value)?;
    }
    Ok(input.events)
}

cairn_sdk::workflows!(
    spin,
    memory_bomb,
    recursion,
    giant_event,
    event_flood,
    trap_mid_sequence,
    fill_after_pause,
    chatter
);

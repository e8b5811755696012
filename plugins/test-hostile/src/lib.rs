//! A plugin that misbehaves on purpose, for the host's tests. Each message
//! payload picks the misbehaviour: `loop`, `oom`, `recurse`, `recurse-shadow`, `panic`,
//! `flood` (one verdict too many), `big-header`, `error`, `bad-partition`,
//! `slow` (busy for a while, then passes), `tag:T` (adds header `tags: T`);
//! anything else passes. Init fails when the config is `fail`. Must never
//! be attached to a real topic.

use std::hint::black_box;

use weir_guest::{BatchContext, Message, Patch, Plugin, Verdict, export_plugin};

/// Stateless troublemaker.
pub struct Hostile;

impl Plugin for Hostile {
    fn init(config: &str) -> Result<Self, String> {
        if config == "fail" { Err("config says fail".to_string()) } else { Ok(Hostile) }
    }

    fn on_batch(&mut self, context: &BatchContext, messages: &[Message]) -> Result<Vec<Verdict>, String> {
        let mut verdicts = Vec::with_capacity(messages.len());
        for message in messages {
            let verdict = match message.payload.as_slice() {
                b"loop" => spin(),
                b"oom" => hoard(),
                b"recurse" => Verdict::Drop(format!("depth {}", recurse(black_box(u64::MAX)))),
                b"recurse-shadow" => Verdict::Drop(format!("depth {}", recurse_shadow(black_box(u64::MAX)))),
                b"panic" => panic!("hostile plugin panicked on purpose"),
                b"flood" => {
                    verdicts.push(Verdict::Pass);
                    Verdict::Pass
                }
                b"big-header" => Patch::new().header("big", vec![b'x'; 1 << 20]).into(),
                b"bad-partition" => Patch::new().partition(context.partitions).into(),
                b"error" => return Err("guest refused the batch".to_string()),
                b"slow" => slow(),
                other => match other.strip_prefix(b"tag:") {
                    Some(tag) => Patch::new().header("tags", tag).into(),
                    None => Verdict::Pass,
                },
            };
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }
}

fn spin() -> Verdict {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Busy for a while (a few hundred milliseconds), then passes.
fn slow() -> Verdict {
    let mut n = 0u64;
    for _ in 0..300_000_000u64 {
        n = black_box(n.wrapping_add(1));
    }
    black_box(n);
    Verdict::Pass
}

fn hoard() -> Verdict {
    let mut hoard = Vec::new();
    loop {
        hoard.push(black_box(vec![1u8; 1 << 20]));
        black_box(&hoard);
    }
}

/// Recursion that keeps everything in wasm locals, so it exhausts the wasm
/// stack the host bounds (`max_wasm_stack`).
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 { 0 } else { recurse(n - 1).wrapping_mul(3).wrapping_add(n) }
}

/// Recursion with frames in linear memory, so it runs off the guest's own
/// shadow stack first (an out-of-bounds access).
fn recurse_shadow(n: u64) -> u64 {
    let frame = black_box([n; 16]);
    if n == 0 { 0 } else { black_box(recurse_shadow(black_box(frame[3] - 1))) + 1 }
}

export_plugin!(Hostile);

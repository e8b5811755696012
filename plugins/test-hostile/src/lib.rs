//! A plugin that misbehaves on purpose, for the host's tests. Each message
//! payload picks the misbehaviour: `loop`, `oom`, `recurse`, `recurse-shadow`, `panic`,
//! `flood` (one verdict too many), `big-header`, `error`, `bad-partition`,
//! `slow` (busy for a while, then passes), `tag:T` (adds header `tags: T`);
//! `log-flood` (1,000 long log lines), `probe` (reports clock, env, args,
//! files and a std hash in headers); anything else passes. Init fails when
//! the config is `fail` and loops forever when it is `init-loop`. Must never
//! be attached to a real topic.

use std::hint::black_box;

use weir_guest::{BatchContext, Message, Patch, Plugin, Verdict, export_plugin};

/// Stateless troublemaker.
pub struct Hostile;

impl Plugin for Hostile {
    fn init(config: &str) -> Result<Self, String> {
        match config {
            "fail" => Err("config says fail".to_string()),
            "init-loop" => {
                spin();
            }
            _ => Ok(Hostile),
        }
    }

    fn on_batch(
        &mut self,
        context: &BatchContext,
        messages: &[Message<'_>],
    ) -> Result<Vec<Verdict>, String> {
        let mut verdicts = Vec::with_capacity(messages.len());
        for message in messages {
            let verdict = match message.payload {
                b"loop" => spin(),
                b"oom" => hoard(),
                b"recurse" => Verdict::Drop(format!("depth {}", recurse(black_box(u64::MAX)))),
                b"recurse-shadow" => {
                    Verdict::Drop(format!("depth {}", recurse_shadow(black_box(u64::MAX))))
                }
                b"panic" => panic!("hostile plugin panicked on purpose"),
                b"flood" => {
                    verdicts.push(Verdict::Pass);
                    Verdict::Pass
                }
                b"big-header" => Patch::new().header("big", vec![b'x'; 1 << 20]).into(),
                b"bad-partition" => Patch::new().partition(context.partitions).into(),
                b"error" => return Err("guest refused the batch".to_string()),
                b"slow" => slow(),
                b"log-flood" => {
                    for i in 0..1_000 {
                        weir_guest::log::info(&format!("line {i} {}", "x".repeat(4096)));
                    }
                    Verdict::Pass
                }
                b"probe" => probe(),
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

/// Reports what the guest can see of its environment, in headers.
fn probe() -> Verdict {
    use std::hash::BuildHasher;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(u128::MAX);
    let hash = std::collections::hash_map::RandomState::new().hash_one("weir");
    let files = if std::fs::read_dir("/").is_ok() || std::fs::read_dir(".").is_ok() {
        "visible"
    } else {
        "none"
    };
    Patch::new()
        .header("now-ns", now_ns.to_string())
        .header("env", std::env::vars().count().to_string())
        .header("args", std::env::args().count().to_string())
        .header("files", files)
        .header("hash", hash.to_string())
        .into()
}

fn spin() -> ! {
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
    if n == 0 {
        0
    } else {
        recurse(n - 1).wrapping_mul(3).wrapping_add(n)
    }
}

/// Recursion with frames in linear memory, so it runs off the guest's own
/// shadow stack first (an out-of-bounds access).
fn recurse_shadow(n: u64) -> u64 {
    let frame = black_box([n; 16]);
    if n == 0 {
        0
    } else {
        black_box(recurse_shadow(black_box(frame[3] - 1))) + 1
    }
}

export_plugin!(Hostile);

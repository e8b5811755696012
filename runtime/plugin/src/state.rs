//! Per-instance store data: the empty WASI context, the memory limiter and
//! the log import. Owns what a guest can observe of the host; must never
//! give it files, sockets, environment, arguments, real clocks or real
//! randomness, and must never panic on anything the guest passes in.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{Level, weir::plugin::host, weir::plugin::types};
use crate::limits::Limits;

pub(crate) struct GuestState {
    plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    log: LogState,
}

/// Memory and table caps; remembers a refusal so a later trap can be
/// reported as the limit hit rather than as the allocator's abort.
pub(crate) struct MemoryLimiter {
    memory_bytes_max: usize,
    table_elements_max: usize,
    pub(crate) refused_bytes: Option<usize>,
}

struct LogState {
    lines_max: usize,
    line_bytes_max: usize,
    lines: usize,
    suppressed: usize,
    last_error: Option<String>,
}

impl GuestState {
    pub(crate) fn new(plugin: &str, limits: &Limits) -> Self {
        GuestState {
            plugin: plugin.to_string(),
            wasi: deterministic_wasi(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                memory_bytes_max: limits.memory_bytes_max,
                table_elements_max: limits.table_elements_max,
                refused_bytes: None,
            },
            log: LogState {
                lines_max: limits.log_lines_per_call_max,
                line_bytes_max: limits.log_line_bytes_max,
                lines: 0,
                suppressed: 0,
                last_error: None,
            },
        }
    }

    /// Forgets what the previous call logged.
    pub(crate) fn start_call(&mut self) {
        self.log.lines = 0;
        self.log.suppressed = 0;
        self.log.last_error = None;
    }

    /// Reports lines dropped by the per-call cap, once per call.
    pub(crate) fn end_call(&mut self) {
        if self.log.suppressed > 0 {
            tracing::warn!(plugin = %self.plugin, suppressed = self.log.suppressed, "plugin log lines over the per-call cap were dropped");
        }
    }

    pub(crate) fn last_error_line(&self) -> Option<String> {
        self.log.last_error.clone()
    }
}

/// A WASI context with nothing in it: no preopens, env, args or network;
/// stdin empty, stdout and stderr discarded; clocks frozen at zero;
/// randomness from a fixed seed, so two runs of a plugin on the same input
/// behave the same.
fn deterministic_wasi() -> WasiCtx {
    use rand::SeedableRng;
    let mut builder = WasiCtx::builder();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(rand::rngs::StdRng::seed_from_u64(0x7765_6972))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(0x7765_6972))
        .insecure_random_seed(0x7765_6972)
        .max_random_size(64 << 10);
    builder.build()
}

struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

// The types interface has no functions; the trait only marks it linked.
impl types::Host for GuestState {}

impl host::Host for GuestState {
    fn log(&mut self, level: Level, message: String) {
        if matches!(level, Level::Error) {
            self.log.last_error = Some(truncate(&message, self.log.line_bytes_max).to_string());
        }
        if self.log.lines >= self.log.lines_max {
            self.log.suppressed += 1;
            return;
        }
        self.log.lines += 1;
        let line = truncate(&message, self.log.line_bytes_max);
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{line}"),
            Level::Debug => tracing::debug!(plugin, "{line}"),
            Level::Info => tracing::info!(plugin, "{line}"),
            Level::Warn => tracing::warn!(plugin, "{line}"),
            Level::Error => tracing::error!(plugin, "{line}"),
        }
    }
}

/// The longest prefix of `s` within `max` bytes that ends on a char boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.refused_bytes = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements_max)
    }

    // A plugin component links a handful of core instances (the guest, the
    // WASI adapter, shims); far below these.
    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}

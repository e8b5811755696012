//! The bounds a plugin runs under and the checks on what it returns. Owns
//! every number that limits a guest; must never let a guest's output reach
//! the node without passing [`check_verdicts`].

use std::time::Duration;

use crate::bindings::{Header, Partition, Verdict};

/// Limits for every instance the host creates.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of an uploaded component; larger uploads are refused before
    /// compiling.
    pub component_bytes_max: usize,
    /// Bytes of an attachment's config string.
    pub config_bytes_max: usize,
    /// Time limit for one `on-batch` call. It is wall time measured in
    /// epoch ticks, so a host thread preempted by others eats into it:
    /// leave headroom over what a batch needs.
    pub call_timeout: Duration,
    /// Time limit for `init` (it may parse a large config).
    pub init_timeout: Duration,
    /// Epoch tick; deadlines are rounded up to whole ticks. At least 1 ms
    /// is used whatever is set here.
    pub tick: Duration,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes_max: usize,
    /// Wasm stack per call, in bytes. The host thread needs this much plus
    /// headroom (call from threads with at least 1 MiB of stack).
    pub wasm_stack_bytes_max: usize,
    /// Table elements per instance.
    pub table_elements_max: usize,
    /// Destination topics one verdict may name.
    pub topics_per_verdict_max: usize,
    /// Bytes in one topic name.
    pub topic_name_bytes_max: usize,
    /// Headers one verdict may add.
    pub headers_per_verdict_max: usize,
    /// Bytes in one header name.
    pub header_name_bytes_max: usize,
    /// Bytes in one header value.
    pub header_value_bytes_max: usize,
    /// Bytes in a dedup key or a partition hash key.
    pub key_bytes_max: usize,
    /// Bytes in a drop or reject reason.
    pub reason_bytes_max: usize,
    /// Log lines one call may write; further lines are counted, not written.
    pub log_lines_per_call_max: usize,
    /// Bytes of one log line; longer lines are truncated.
    pub log_line_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            component_bytes_max: 16 << 20,
            config_bytes_max: 64 << 10,
            call_timeout: Duration::from_millis(200),
            init_timeout: Duration::from_secs(1),
            tick: Duration::from_millis(5),
            memory_bytes_max: 64 << 20,
            wasm_stack_bytes_max: 512 << 10,
            table_elements_max: 20_000,
            topics_per_verdict_max: 64,
            topic_name_bytes_max: 249,
            headers_per_verdict_max: 32,
            header_name_bytes_max: 256,
            header_value_bytes_max: 16 << 10,
            key_bytes_max: 1024,
            reason_bytes_max: 1024,
            log_lines_per_call_max: 64,
            log_line_bytes_max: 1024,
        }
    }
}

impl Limits {
    /// Whole epoch ticks covering `deadline`, plus one because the current
    /// tick may already be almost over.
    pub(crate) fn ticks(&self, deadline: Duration) -> u64 {
        let tick_ns = self.tick.max(Duration::from_millis(1)).as_nanos();
        let ticks = deadline.as_nanos().div_ceil(tick_ns);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}

/// Checks a guest's verdicts against the batch and the limits; the error
/// text says which bound and which message.
pub(crate) fn check_verdicts(
    verdicts: &[Verdict],
    messages: usize,
    partitions: u32,
    limits: &Limits,
) -> Result<(), String> {
    if verdicts.len() != messages {
        return Err(format!(
            "returned {} verdicts for {} messages",
            verdicts.len(),
            messages
        ));
    }
    for (index, verdict) in verdicts.iter().enumerate() {
        check_verdict(verdict, partitions, limits).map_err(|e| format!("message {index}: {e}"))?;
    }
    Ok(())
}

fn check_verdict(verdict: &Verdict, partitions: u32, limits: &Limits) -> Result<(), String> {
    let patch = match verdict {
        Verdict::Pass => return Ok(()),
        Verdict::Drop(reason) | Verdict::Reject(reason) => {
            return bounded("reason", reason.len(), limits.reason_bytes_max);
        }
        Verdict::Patch(patch) => patch,
    };
    if let Some(topics) = &patch.topics {
        if topics.is_empty() {
            return Err("empty topic list (drop the message instead)".to_string());
        }
        bounded("topic count", topics.len(), limits.topics_per_verdict_max)?;
        for topic in topics {
            if topic.is_empty() {
                return Err("empty topic name".to_string());
            }
            bounded("topic name", topic.len(), limits.topic_name_bytes_max)?;
        }
    }
    match &patch.partition {
        Some(Partition::Index(index)) if *index >= partitions => {
            return Err(format!(
                "partition {index} out of range (topic has {partitions})"
            ));
        }
        Some(Partition::HashKey(key)) => bounded("hash key", key.len(), limits.key_bytes_max)?,
        _ => {}
    }
    if let Some(key) = &patch.dedup_key {
        bounded("dedup key", key.len(), limits.key_bytes_max)?;
    }
    bounded(
        "added header count",
        patch.add_headers.len(),
        limits.headers_per_verdict_max,
    )?;
    patch
        .add_headers
        .iter()
        .try_for_each(|h| check_header(h, limits))
}

fn check_header(header: &Header, limits: &Limits) -> Result<(), String> {
    if header.name.is_empty() {
        return Err("empty header name".to_string());
    }
    bounded(
        "header name",
        header.name.len(),
        limits.header_name_bytes_max,
    )?;
    bounded(
        "header value",
        header.value.len(),
        limits.header_value_bytes_max,
    )
}

fn bounded(what: &str, value: usize, max: usize) -> Result<(), String> {
    if value > max {
        Err(format!("{what} of {value} exceeds the limit of {max}"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Patch;

    fn patch() -> Patch {
        Patch {
            topics: None,
            partition: None,
            dedup_key: None,
            add_headers: vec![],
        }
    }

    #[test]
    fn verdict_count_must_equal_message_count() {
        let limits = Limits::default();
        assert!(check_verdicts(&[Verdict::Pass], 1, 1, &limits).is_ok());
        let err = check_verdicts(&[Verdict::Pass, Verdict::Pass], 1, 1, &limits)
            .expect_err("must be refused");
        assert!(err.contains("2 verdicts for 1 messages"), "{err}");
        assert!(check_verdicts(&[], 1, 1, &limits).is_err());
    }

    #[test]
    fn partition_index_must_exist() {
        let mut p = patch();
        p.partition = Some(Partition::Index(4));
        let err = check_verdicts(&[Verdict::Patch(p)], 1, 4, &Limits::default())
            .expect_err("must be refused");
        assert!(err.contains("partition 4 out of range"), "{err}");
    }

    #[test]
    fn oversized_header_names_the_bound() {
        let mut p = patch();
        p.add_headers.push(Header {
            name: "h".into(),
            value: vec![0; 17 << 10],
        });
        let err = check_verdicts(
            &[Verdict::Pass, Verdict::Patch(p)],
            2,
            1,
            &Limits::default(),
        )
        .expect_err("must be refused");
        assert!(err.starts_with("message 1: header value"), "{err}");
    }

    #[test]
    fn empty_topic_list_is_refused() {
        let mut p = patch();
        p.topics = Some(vec![]);
        let err = check_verdicts(&[Verdict::Patch(p)], 1, 1, &Limits::default())
            .expect_err("must be refused");
        assert!(err.contains("empty topic list"), "{err}");
    }

    #[test]
    fn deadline_rounds_up_to_ticks() {
        let limits = Limits {
            tick: Duration::from_millis(5),
            ..Limits::default()
        };
        assert_eq!(limits.ticks(Duration::from_millis(10)), 3);
        assert_eq!(limits.ticks(Duration::from_millis(11)), 4);
    }
}

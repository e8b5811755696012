//! How a member joins: the group, the topic, its name, its prefetch, the
//! group options it states and when it acks. Plain values and their
//! checks; no I/O. It must never state an option the caller did not set,
//! since a stated option that differs from the group's is refused.

use std::time::Duration;

use weir_proto::frame::{
    GroupMode, GroupOptions, MAX_BACKOFF_STEPS, MAX_MEMBER_BYTES, StartAt, validate_name,
};

use crate::{ClientError, ConsumerConfig};

/// When a member's messages count as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AckMode {
    /// The application acks (queue mode) or commits (stream mode) each
    /// message itself; nothing is sent on its behalf.
    #[default]
    Manual,
    /// The member acks (queue mode) or commits the next offset (stream
    /// mode) of every message as it hands it to the application,
    /// coalesced. A message the application then fails on is not
    /// redelivered.
    Auto,
}

/// What [`Client::join_group`](crate::Client::join_group) needs.
///
/// ```
/// use std::time::Duration;
/// use weir_client::{AckMode, GroupConfig, GroupMode};
///
/// let config = GroupConfig::new("billing", "orders")
///     .with_mode(GroupMode::Queue)
///     .with_ack_wait(Duration::from_secs(60))
///     .with_prefetch(100)
///     .with_ack(AckMode::Manual);
/// assert_eq!(config.options.ack_wait_ms, Some(60_000));
/// assert_eq!(config.options.max_deliveries, None, "left to the group");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// This member's name in `describe-group`; the client's name and a
    /// random suffix when `None`.
    pub member: Option<String>,
    /// Queue mode: most messages delivered to this member and not yet
    /// acked (0: the node's default, 1000).
    pub prefetch: u32,
    /// The group's options as this member states them; absent ones take
    /// the group's.
    pub options: GroupOptions,
    /// Who acks or commits.
    pub ack: AckMode,
    /// Stream mode: the credit window, as for a subscription. In both
    /// modes, `resume_for`: how long a member that lost its stream keeps
    /// joining the group again (see [`ConsumerConfig::resume_for`]).
    pub window: ConsumerConfig,
}

impl GroupConfig {
    /// Joins `group` on `topic`, stating no options, with the node's
    /// prefetch, manual acks and the default window.
    pub fn new(group: impl Into<String>, topic: impl Into<String>) -> GroupConfig {
        GroupConfig {
            group: group.into(),
            topic: topic.into(),
            member: None,
            prefetch: 0,
            options: GroupOptions::default(),
            ack: AckMode::Manual,
            window: ConsumerConfig::default(),
        }
    }

    /// Names this member.
    pub fn with_member(mut self, name: impl Into<String>) -> GroupConfig {
        self.member = Some(name.into());
        self
    }

    /// Sets the prefetch (queue mode).
    pub fn with_prefetch(mut self, prefetch: u32) -> GroupConfig {
        self.prefetch = prefetch;
        self
    }

    /// Replaces every stated option.
    pub fn with_options(mut self, options: GroupOptions) -> GroupConfig {
        self.options = options;
        self
    }

    /// States the group's mode.
    pub fn with_mode(mut self, mode: GroupMode) -> GroupConfig {
        self.options.mode = Some(mode);
        self
    }

    /// States where a new group starts.
    pub fn with_start(mut self, start: StartAt) -> GroupConfig {
        self.options.start = Some(start);
        self
    }

    /// States the ack wait (queue mode).
    pub fn with_ack_wait(mut self, wait: Duration) -> GroupConfig {
        self.options.ack_wait_ms = Some(millis(wait));
        self
    }

    /// States the deliveries before a message is dead-lettered (queue mode).
    pub fn with_max_deliveries(mut self, n: u32) -> GroupConfig {
        self.options.max_deliveries = Some(n);
        self
    }

    /// States the retry backoff schedule (queue mode; the last step
    /// repeats; at most 64 steps).
    pub fn with_backoff(mut self, steps: &[Duration]) -> GroupConfig {
        self.options.backoff_ms = Some(steps.iter().copied().map(millis).collect());
        self
    }

    /// States whether messages with the same key are handed out one at a
    /// time (queue mode).
    pub fn with_ordered(mut self, ordered: bool) -> GroupConfig {
        self.options.ordered = Some(ordered);
        self
    }

    /// Sets who acks.
    pub fn with_ack(mut self, ack: AckMode) -> GroupConfig {
        self.ack = ack;
        self
    }

    /// Sets the stream-mode credit window.
    pub fn with_window(mut self, window: ConsumerConfig) -> GroupConfig {
        self.window = window;
        self
    }

    /// Checks what the node would refuse, and names the member.
    pub(crate) fn checked_member(&self, client_name: &str) -> Result<String, ClientError> {
        let invalid = |e: String| ClientError::Invalid(e);
        validate_name("group name", &self.group).map_err(|e| invalid(e.to_string()))?;
        validate_name("topic name", &self.topic).map_err(|e| invalid(e.to_string()))?;
        if let Some(steps) = &self.options.backoff_ms {
            if steps.len() > MAX_BACKOFF_STEPS {
                return Err(invalid(format!(
                    "a backoff schedule of {} steps is longer than the {MAX_BACKOFF_STEPS} allowed",
                    steps.len()
                )));
            }
            if steps.is_empty() {
                return Err(invalid("a backoff schedule needs at least one step".into()));
            }
        }
        match &self.member {
            Some(name) if name.len() > MAX_MEMBER_BYTES => Err(invalid(format!(
                "member name of {} bytes is longer than the {MAX_MEMBER_BYTES} allowed",
                name.len()
            ))),
            Some(name) if name.is_empty() => Err(invalid("the member name is empty".into())),
            Some(name) => Ok(name.clone()),
            None => Ok(default_member(client_name, &random_suffix())),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `CLIENT-SUFFIX`, the client's name cut (at a character boundary) so
/// that the whole fits a member name.
fn default_member(client_name: &str, suffix: &str) -> String {
    let mut end = client_name
        .len()
        .min(MAX_MEMBER_BYTES.saturating_sub(suffix.len() + 1));
    while !client_name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{suffix}", &client_name[..end])
}

/// 8 hex digits from the TLS provider's secure generator, or from the
/// clock if it has none to give.
fn random_suffix() -> String {
    let mut bytes = [0u8; 4];
    let random = rustls::crypto::ring::default_provider().secure_random;
    match random.fill(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => format!(
            "{:08x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stated_options_are_set() {
        let c = GroupConfig::new("g", "t")
            .with_max_deliveries(3)
            .with_backoff(&[Duration::from_millis(10), Duration::from_secs(1)])
            .with_ordered(true);
        assert_eq!(
            c.options,
            GroupOptions {
                max_deliveries: Some(3),
                backoff_ms: Some(vec![10, 1000]),
                ordered: Some(true),
                ..GroupOptions::default()
            }
        );
        assert_eq!(c.ack, AckMode::Manual);
    }

    #[test]
    fn default_member_names_fit() {
        assert_eq!(
            default_member("weir-cli/0.1.0", "0a1b2c3d"),
            "weir-cli/0.1.0-0a1b2c3d"
        );
        let long = "é".repeat(200);
        let name = default_member(&long, "0a1b2c3d");
        assert!(name.len() <= MAX_MEMBER_BYTES, "{}", name.len());
        assert!(name.ends_with("-0a1b2c3d"));
        let c = GroupConfig::new("g", "t");
        let a = c.checked_member("x").expect("valid");
        let b = c.checked_member("x").expect("valid");
        assert_ne!(a, b, "two members of one client differ");
        assert_eq!(random_suffix().len(), 8);
    }

    #[test]
    fn refuses_what_the_node_would() {
        assert!(
            GroupConfig::new("bad name", "t")
                .checked_member("c")
                .is_err()
        );
        assert!(GroupConfig::new("g", "").checked_member("c").is_err());
        let long = GroupConfig::new("g", "t").with_member("m".repeat(256));
        assert!(long.checked_member("c").is_err());
        let steps = vec![Duration::from_secs(1); 65];
        let err = GroupConfig::new("g", "t")
            .with_backoff(&steps)
            .checked_member("c")
            .expect_err("too many steps");
        assert!(err.to_string().contains("65 steps"), "{err}");
        assert!(
            GroupConfig::new("g", "t")
                .with_backoff(&[])
                .checked_member("c")
                .is_err()
        );
    }
}

//! The producer's resend decisions, with no I/O and no clock of its own:
//! after a transient failure, how long to wait before sending again, and
//! when a message has waited too long and must fail. This module never
//! sends, sleeps or reads the time; callers pass `now`.

use std::time::{Duration, Instant};

use crate::ClientError;

/// How an idempotent producer resends after transient failures (a lost
/// connection, a reset stream, a node restarting, no answer within the
/// request timeout).
///
/// ```
/// use std::time::Duration;
/// use weir_client::{ProducerConfig, RetryConfig};
///
/// let config = ProducerConfig {
///     retry: RetryConfig {
///         max_elapsed: Duration::from_secs(30),
///         ..RetryConfig::default()
///     },
///     ..ProducerConfig::default()
/// };
/// assert_eq!(config.retry.backoff_min, Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// The longest a message is kept for resending, counted from `send`;
    /// past it its handle fails with [`ClientError::GaveUp`]. Keep it
    /// within the topic's dedup window (both default to 2 minutes), or a
    /// resend may be stored twice.
    pub max_elapsed: Duration,
    /// The wait after the first failure; it doubles with each further
    /// failure in a row.
    pub backoff_min: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            max_elapsed: Duration::from_secs(120),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// The wait before the next attempt after `failures` failures in a row
/// (at least 1): `backoff_min` doubled per further failure, capped at
/// `backoff_max`.
pub(crate) fn backoff(config: &RetryConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    config
        .backoff_min
        .saturating_mul(1u32 << doublings)
        .min(config.backoff_max.max(config.backoff_min))
}

/// Failures in a row and when sending may resume.
#[derive(Debug)]
pub(crate) struct Retry {
    config: RetryConfig,
    failures: u32,
    due: Option<Instant>,
    last: Option<ClientError>,
}

impl Retry {
    pub(crate) fn new(config: RetryConfig) -> Retry {
        Retry {
            config,
            failures: 0,
            due: None,
            last: None,
        }
    }

    /// A transient failure at `now`: sending waits until the returned time.
    pub(crate) fn failed(&mut self, now: Instant, err: ClientError) -> Instant {
        self.failures = self.failures.saturating_add(1);
        let due = now + backoff(&self.config, self.failures);
        self.due = Some(due);
        self.last = Some(err);
        due
    }

    /// The node answered: the next failure starts the backoff afresh.
    pub(crate) fn answered(&mut self) {
        self.failures = 0;
        self.due = None;
        self.last = None;
    }

    /// Failures since the last answer.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// When sending may resume, while backing off.
    pub(crate) fn due(&self, now: Instant) -> Option<Instant> {
        self.due.filter(|d| *d > now)
    }

    /// Whether a message accepted at `accepted` may still be sent at `now`;
    /// if not, the error its handle fails with. Only messages waiting to be
    /// resent expire: with no failure since the last answer, nothing does.
    pub(crate) fn expired(
        &self,
        accepted: Instant,
        attempts: u32,
        now: Instant,
    ) -> Option<ClientError> {
        let last = self.last.as_ref()?;
        let elapsed = now.saturating_duration_since(accepted);
        (elapsed >= self.config.max_elapsed).then(|| ClientError::GaveUp {
            attempts,
            elapsed,
            deadline: self.config.max_elapsed,
            last: Box::new(last.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RetryConfig {
        RetryConfig {
            max_elapsed: Duration::from_secs(10),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
        let c = config();
        let waits: Vec<u128> = (1..=8).map(|n| backoff(&c, n).as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(&c, 0), Duration::from_millis(50));
        assert_eq!(backoff(&c, u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn a_maximum_below_the_minimum_waits_the_minimum() {
        let c = RetryConfig {
            backoff_max: Duration::from_millis(1),
            ..config()
        };
        assert_eq!(backoff(&c, 5), Duration::from_millis(50));
    }

    #[test]
    fn failures_in_a_row_back_off_and_an_answer_resets() {
        let t0 = Instant::now();
        let mut r = Retry::new(config());
        assert_eq!(r.due(t0), None);
        let lost = ClientError::ConnectionLost("x".into());
        assert_eq!(r.failed(t0, lost.clone()), t0 + Duration::from_millis(50));
        assert_eq!(r.due(t0), Some(t0 + Duration::from_millis(50)));
        assert_eq!(r.due(t0 + Duration::from_millis(50)), None, "due now");
        let t1 = t0 + Duration::from_millis(60);
        assert_eq!(r.failed(t1, lost.clone()), t1 + Duration::from_millis(100));
        assert_eq!(r.failures(), 2);
        r.answered();
        assert_eq!(r.failures(), 0);
        assert_eq!(r.due(t1), None);
        assert_eq!(r.failed(t1, lost), t1 + Duration::from_millis(50));
    }

    #[test]
    fn messages_expire_at_the_deadline_naming_the_last_error() {
        let t0 = Instant::now();
        let mut r = Retry::new(config());
        let later = t0 + Duration::from_secs(11);
        assert!(
            r.expired(t0, 1, later).is_none(),
            "nothing expires without a failure"
        );
        r.failed(t0, ClientError::ConnectionLost("first".into()));
        r.failed(
            t0 + Duration::from_secs(1),
            ClientError::ConnectionLost("the node is shutting down".into()),
        );
        assert!(r.expired(t0, 2, t0 + Duration::from_secs(9)).is_none());
        let err = r
            .expired(t0, 2, t0 + Duration::from_secs(10))
            .expect("expired at the deadline");
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(text.contains("after 2 attempts"), "{text}");
        assert!(
            text.contains("last error: connection lost: the node is shutting down"),
            "{text}"
        );
    }
}

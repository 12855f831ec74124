//! Retrying operations a plugin says may succeed later (`CallError::Retriable`),
//! bounded by Connect's `errors.retry.timeout` and `errors.retry.delay.max.ms`.
//!
//! Connect retries a transform's retriable failure only for
//! `errors.retry.timeout` (default 0: not at all), but retries a sink's put and
//! a source's poll until they succeed. Wharf does the same, and lets an explicit
//! `errors.retry.timeout` bound put and poll too, so a dead downstream fails the
//! task (and the automatic restart takes over) instead of hanging silently.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{ConfigError, ConnectorConfig};
use crate::plugin::CallError;

/// Connect's first retry delay; each further one doubles up to the cap.
const FIRST_DELAY: Duration = Duration::from_millis(300);
/// Put, poll and flush wait at most this long between tries (or
/// `errors.retry.delay.max.ms` if lower): a sink whose store comes back
/// resumes within seconds, not a minute later.
const TASK_DELAY_CAP: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryTimeout {
    /// `errors.retry.timeout` unset or 0.
    Unset,
    /// `-1`: retry forever.
    Forever,
    Bounded(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub timeout: RetryTimeout,
    pub delay_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: RetryTimeout::Unset,
            delay_max: Duration::from_secs(60),
        }
    }
}

/// Which kind of operation is retried decides what an unset timeout means.
#[derive(Clone, Copy, Debug)]
pub enum Operation {
    /// Transforms: unset means no retry.
    Record,
    /// A sink's put or a source's poll: unset means retry until it works.
    Task,
}

impl RetryPolicy {
    pub fn from_connector(c: &ConnectorConfig) -> Result<Self, ConfigError> {
        let int = |key: &str, default: i64| -> Result<i64, ConfigError> {
            match c.get(key).map(str::trim) {
                None | Some("") => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .map_err(|_| c.key_error(key, format!("'{v}' is not an integer"))),
            }
        };
        let timeout = match int("errors.retry.timeout", 0)? {
            0 => RetryTimeout::Unset,
            -1 => RetryTimeout::Forever,
            ms if ms > 0 => RetryTimeout::Bounded(Duration::from_millis(ms as u64)),
            ms => {
                return Err(c.key_error(
                    "errors.retry.timeout",
                    format!("{ms} must be -1 (forever), 0 (none) or a positive number of ms"),
                ))
            }
        };
        let delay_max = match int("errors.retry.delay.max.ms", 60_000)? {
            ms if ms >= 1 => Duration::from_millis(ms as u64),
            ms => {
                return Err(c.key_error(
                    "errors.retry.delay.max.ms",
                    format!("{ms} must be at least 1"),
                ))
            }
        };
        Ok(RetryPolicy { timeout, delay_max })
    }

    pub fn start(&self, op: Operation) -> Retry {
        let deadline = match (self.timeout, op) {
            (RetryTimeout::Unset, Operation::Record) => Some(Instant::now()),
            (RetryTimeout::Unset, Operation::Task) | (RetryTimeout::Forever, _) => None,
            (RetryTimeout::Bounded(d), _) => Some(Instant::now() + d),
        };
        let delay_max = match op {
            Operation::Record => self.delay_max,
            Operation::Task => self.delay_max.min(TASK_DELAY_CAP),
        };
        Retry {
            deadline,
            delay_max,
            attempt: 0,
        }
    }
}

/// One operation's retries: call [`Retry::again`] after each failure.
#[derive(Debug)]
pub struct Retry {
    deadline: Option<Instant>,
    delay_max: Duration,
    attempt: u32,
}

impl Retry {
    /// After a failure: waits the next backoff and returns true when the
    /// operation should be tried again; false when the error is fatal, the
    /// timeout has passed or the task is stopping.
    pub async fn again(&mut self, err: &CallError, shutdown: &mut watch::Receiver<bool>) -> bool {
        if !matches!(err, CallError::Retriable(_)) || *shutdown.borrow() {
            return false;
        }
        let delay = self.next_delay();
        let now = Instant::now();
        let delay = match self.deadline {
            Some(d) if now >= d => return false,
            // The last wait ends at the deadline, then one final attempt.
            Some(d) => delay.min(d - now),
            None => delay,
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => {}
        }
        !*shutdown.borrow()
    }

    /// Connect's schedule: 300 ms doubling up to the cap, with ±25% jitter so
    /// tasks failing together do not retry in lockstep.
    fn next_delay(&mut self) -> Duration {
        let base = FIRST_DELAY
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.delay_max);
        self.attempt += 1;
        let quarter = base.as_millis() as u64 / 4;
        let jitter = if quarter == 0 {
            0
        } else {
            rand::random::<u64>() % (2 * quarter + 1)
        };
        Duration::from_millis((base.as_millis() as u64 - quarter) + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(timeout: RetryTimeout) -> RetryPolicy {
        RetryPolicy {
            timeout,
            delay_max: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn unset_timeout_does_not_retry_records_but_retries_tasks() {
        let (_tx, mut rx) = watch::channel(false);
        let err = CallError::Retriable("later".into());
        let p = policy(RetryTimeout::Unset);
        assert!(!p.start(Operation::Record).again(&err, &mut rx).await);
        let mut task = p.start(Operation::Task);
        for _ in 0..5 {
            assert!(task.again(&err, &mut rx).await);
        }
    }

    #[tokio::test]
    async fn fatal_errors_are_never_retried() {
        let (_tx, mut rx) = watch::channel(false);
        let p = policy(RetryTimeout::Forever);
        assert!(
            !p.start(Operation::Task)
                .again(&CallError::Fatal("no".into()), &mut rx)
                .await
        );
    }

    #[tokio::test]
    async fn bounded_timeout_stops_after_the_deadline() {
        let (_tx, mut rx) = watch::channel(false);
        let err = CallError::Retriable("later".into());
        let p = policy(RetryTimeout::Bounded(Duration::from_millis(60)));
        let started = Instant::now();
        let mut r = p.start(Operation::Record);
        let mut tries = 0;
        while r.again(&err, &mut rx).await {
            tries += 1;
            assert!(tries < 100, "never gave up");
        }
        assert!(tries >= 2, "retried {tries} times");
        assert!(started.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    fn delays_double_and_respect_the_cap() {
        let mut r = RetryPolicy {
            timeout: RetryTimeout::Forever,
            delay_max: Duration::from_millis(1000),
        }
        .start(Operation::Task);
        let d: Vec<u128> = (0..5).map(|_| r.next_delay().as_millis()).collect();
        assert!((225..=375).contains(&d[0]), "{d:?}");
        assert!((450..=750).contains(&d[1]), "{d:?}");
        assert!(d[2..].iter().all(|&x| (750..=1250).contains(&x)), "{d:?}");
    }
}

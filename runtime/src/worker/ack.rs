//! Acknowledgement of one source batch by everything downstream of it (sink
//! tasks in-process, or the Kafka brokers): source offsets are committed only
//! for batches whose every part was acknowledged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct BatchAck {
    remaining: AtomicUsize,
    lost: AtomicBool,
    /// The first failure's reason, for the task's trace.
    reason: Mutex<Option<String>>,
}

impl BatchAck {
    /// A batch waiting for `parts` acknowledgements.
    pub fn new(parts: usize) -> Self {
        BatchAck {
            remaining: AtomicUsize::new(parts),
            ..BatchAck::default()
        }
    }

    pub fn settle_one(&self) {
        self.remaining.fetch_sub(1, Ordering::AcqRel);
    }

    /// Marks the batch lost: its offsets must never be committed.
    pub fn fail(&self, reason: impl FnOnce() -> String) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            if let Ok(mut r) = self.reason.lock() {
                *r = Some(reason());
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0 && !self.lost.load(Ordering::Acquire)
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }
}

//! Acknowledgement of one source batch by everything downstream of it (sink
//! tasks in-process, or the Kafka brokers): source offsets are committed only
//! for batches whose every part was acknowledged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use wharf_records::Record;

/// A record Kafka refused for itself (too large, invalid), passed over
/// under `errors.tolerance=all` (Connect's KIP-779): the source reports it
/// and commits past it instead of failing for good.
#[derive(Debug)]
pub struct Skipped {
    pub record: Record,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct BatchAck {
    remaining: AtomicUsize,
    lost: AtomicBool,
    /// The first failure's reason, for the task's trace.
    reason: Mutex<Option<String>>,
    /// Record-level refusals may be skipped rather than lose the batch.
    tolerant: bool,
    skipped: Mutex<Vec<Skipped>>,
}

impl BatchAck {
    /// A batch waiting for `parts` acknowledgements.
    pub fn new(parts: usize) -> Self {
        BatchAck {
            remaining: AtomicUsize::new(parts),
            ..BatchAck::default()
        }
    }

    /// A batch whose records Kafka refuses one by one (too large, invalid)
    /// are skipped and reported, not the batch lost.
    pub fn tolerant(parts: usize) -> Self {
        BatchAck {
            tolerant: true,
            ..BatchAck::new(parts)
        }
    }

    pub fn tolerates_skips(&self) -> bool {
        self.tolerant
    }

    /// One part refused for a reason of its own, passed over: it settles,
    /// and the task reports it before committing past it.
    pub fn skip(&self, record: Record, reason: String) {
        if let Ok(mut s) = self.skipped.lock() {
            s.push(Skipped { record, reason });
        }
        self.settle_one();
    }

    /// The records skipped so far, each handed out once.
    pub fn take_skipped(&self) -> Vec<Skipped> {
        self.skipped
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
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

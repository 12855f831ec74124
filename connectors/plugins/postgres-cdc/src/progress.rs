//! Where the connector stands, and what the slot may confirm.
//!
//! Every event's stored offset names its transaction's commit LSN and its
//! index in that transaction (`lsn_commit`, `seq`), next to Debezium's `lsn`,
//! `txId` and `ts_usec`. After a crash the server resends every transaction
//! committed after the slot's confirmed position; the events at or before the
//! stored (commit, seq) are skipped, so a transaction cut in half is finished,
//! not doubled. The slot confirms a transaction's end only once Kafka acked
//! its last event.

use std::collections::VecDeque;

use serde_json::{json, Value};

pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= 0xFFFF_FFFF && lo <= 0xFFFF_FFFF).then_some((hi << 32) | lo)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// A position in the change stream: transaction commit LSN, then the event's
/// index inside it. Snapshot events sit at (consistent point, -1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub commit: u64,
    pub seq: i64,
}

/// What a stored offset says about where to resume.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resume {
    pub position: Option<Position>,
    /// The snapshot had started but not finished.
    pub snapshot_incomplete: bool,
    /// The whole stored offset (null if none), for the incremental snapshot.
    pub offset: Value,
}

impl Resume {
    pub fn from_offsets(offsets: &[(String, String)], prefix: &str) -> Resume {
        let mine = offsets.iter().find(|(p, _)| {
            serde_json::from_str::<Value>(p)
                .ok()
                .is_some_and(|p| p["server"].as_str() == Some(prefix))
        });
        let Some(o) = mine.and_then(|(_, o)| serde_json::from_str::<Value>(o).ok()) else {
            return Resume::default();
        };
        let commit = o["lsn_commit"].as_u64().or_else(|| o["lsn"].as_u64());
        Resume {
            position: commit.map(|commit| Position {
                commit,
                seq: o["seq"].as_i64().unwrap_or(i64::MAX),
            }),
            snapshot_incomplete: o["snapshot"].as_bool() == Some(true)
                && o["last_snapshot_record"].as_bool() != Some(true),
            offset: o,
        }
    }
}

pub fn source_partition(prefix: &str) -> String {
    json!({ "server": prefix }).to_string()
}

/// The offset of a streamed event; `extra` is more fields, each after a
/// comma (an incremental snapshot's progress), or empty.
pub fn stream_offset(p: Position, event_lsn: u64, xid: u32, ts_usec: i64, extra: &str) -> String {
    use crate::envelope::push_int;
    // Written directly: one per event, and json!/format! cost more than the rest.
    let mut out = String::with_capacity(112 + extra.len());
    out.push_str("{\"lsn\":");
    push_int(&mut out, event_lsn);
    out.push_str(",\"lsn_commit\":");
    push_int(&mut out, p.commit);
    out.push_str(",\"lsn_proc\":");
    push_int(&mut out, event_lsn);
    out.push_str(",\"seq\":");
    push_int(&mut out, p.seq);
    out.push_str(",\"txId\":");
    push_int(&mut out, xid);
    out.push_str(",\"ts_usec\":");
    push_int(&mut out, ts_usec);
    out.push_str(extra);
    out.push('}');
    out
}

/// The offset of a snapshot row.
pub fn snapshot_offset(point: u64, xid: u32, ts_usec: i64, last: bool) -> String {
    json!({
        "lsn": point,
        "lsn_commit": point,
        "seq": -1,
        "txId": xid,
        "ts_usec": ts_usec,
        "snapshot": true,
        "last_snapshot_record": last,
    })
    .to_string()
}

/// Transactions whose events were emitted but whose end the slot has not
/// confirmed yet, in commit order.
#[derive(Debug, Default)]
pub struct Confirmations {
    /// (commit LSN, index of the last event emitted, end LSN).
    done: VecDeque<(u64, i64, u64)>,
    /// The last position emitted and the last one Kafka acked.
    emitted: Option<Position>,
    acked: Option<Position>,
}

impl Confirmations {
    /// Picks up where an earlier run's acked offsets left off.
    pub fn start(&mut self, resume: Option<Position>) {
        self.emitted = resume;
        self.acked = resume;
    }

    pub fn emitted(&mut self, p: Position) {
        self.emitted = Some(p);
    }

    /// A transaction ended; `last_seq` is -1 when none of its events was emitted.
    pub fn committed(&mut self, commit: u64, last_seq: i64, end: u64) {
        self.done.push_back((commit, last_seq, end));
    }

    /// Kafka acked everything up to `p`; returns the LSN the slot may
    /// confirm now, if it moved.
    pub fn acked(&mut self, p: Position) -> Option<u64> {
        self.acked = Some(p);
        let mut confirm = None;
        while let Some(&(commit, last, end)) = self.done.front() {
            let finished = commit < p.commit || (commit == p.commit && last <= p.seq);
            // An empty transaction after finished ones has nothing to wait for.
            if !(finished || last < 0 && confirm.is_some()) {
                break;
            }
            confirm = Some(end);
            self.done.pop_front();
        }
        confirm
    }

    /// Everything emitted is acked, so every ended transaction is finished:
    /// the slot may confirm up to the server's WAL end when no transaction
    /// is open (idle tables, transactions that touched no captured table).
    pub fn idle(&self) -> bool {
        self.emitted == self.acked
    }

    /// When idle, forgets the ended transactions and returns the last end.
    pub fn drain_if_idle(&mut self) -> Option<u64> {
        if !self.idle() {
            return None;
        }
        let last = self.done.back().map(|d| d.2);
        self.done.clear();
        last
    }

    pub fn last_emitted(&self) -> Option<Position> {
        self.emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(commit: u64, seq: i64) -> Position {
        Position { commit, seq }
    }

    #[test]
    fn a_transaction_confirms_only_when_its_last_event_is_acked() {
        let mut c = Confirmations::default();
        c.emitted(p(100, 0));
        c.emitted(p(100, 1));
        c.committed(100, 1, 110);
        c.emitted(p(200, 0));
        c.committed(200, 0, 210);
        assert_eq!(c.acked(p(100, 0)), None);
        assert_eq!(c.acked(p(100, 1)), Some(110));
        assert!(!c.idle());
        assert_eq!(c.acked(p(200, 0)), Some(210));
        assert!(c.idle());
    }

    #[test]
    fn empty_transactions_follow_finished_ones() {
        let mut c = Confirmations::default();
        c.emitted(p(100, 0));
        c.committed(100, 0, 110);
        c.committed(150, -1, 160);
        assert_eq!(c.acked(p(100, 0)), Some(160));
    }

    #[test]
    fn offsets_resume_by_commit_and_index() {
        let offsets = vec![(
            source_partition("shop"),
            stream_offset(p(0x1_0000_0010, 7), 0x1_0000_0008, 42, 5, ""),
        )];
        let r = Resume::from_offsets(&offsets, "shop");
        assert_eq!(r.position, Some(p(0x1_0000_0010, 7)));
        assert!(!r.snapshot_incomplete);
        let snap = vec![(source_partition("shop"), snapshot_offset(9, 1, 2, false))];
        assert!(Resume::from_offsets(&snap, "shop").snapshot_incomplete);
        assert_eq!(Resume::from_offsets(&snap, "other"), Resume::default());
        assert_eq!(parse_lsn(&format_lsn(0x16_B374_D848)), Some(0x16_B374_D848));
    }
}

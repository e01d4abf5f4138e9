//! Datagram and event counters, shared lock-free between the gossip task and
//! handles.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::keyring::OpenError;

/// A snapshot of the counters of one membership instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipCounters {
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    /// Not a `GossipDatagram` (garbage, truncated, wrong nonce size).
    pub dropped_bad_envelope: u64,
    /// Sealed with a key id that is not in our ring (wrong cluster key).
    pub dropped_unknown_key: u64,
    /// Known key id but the tag did not verify (tampered or forged).
    pub dropped_auth_failed: u64,
    /// Authentic, but foca could not decode or refused the packet.
    pub dropped_bad_payload: u64,
    /// Authentic, but a replay: its counter was accepted before or is below the
    /// sender's window, or it is from an older life of its sender.
    pub dropped_replayed: u64,
    pub send_errors: u64,
    /// Node-id and syncid conflicts reported.
    pub conflicts: u64,
    /// Events lost because the event receiver was full.
    pub events_dropped: u64,
    /// Owner-to-heir heartbeats sent (one per target) and accepted.
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    /// Authentic heartbeats, new to the replay window, not newer than the last
    /// beacon from their sender (reordered).
    pub heartbeats_stale: u64,
}

impl MembershipCounters {
    /// Every counter by name, for status output.
    pub fn named(&self) -> [(&'static str, u64); 13] {
        [
            ("received", self.datagrams_received),
            ("sent", self.datagrams_sent),
            ("dropped_bad_envelope", self.dropped_bad_envelope),
            ("dropped_unknown_key", self.dropped_unknown_key),
            ("dropped_auth_failed", self.dropped_auth_failed),
            ("dropped_bad_payload", self.dropped_bad_payload),
            ("dropped_replayed", self.dropped_replayed),
            ("send_errors", self.send_errors),
            ("conflicts", self.conflicts),
            ("events_dropped", self.events_dropped),
            ("heartbeats_sent", self.heartbeats_sent),
            ("heartbeats_received", self.heartbeats_received),
            ("heartbeats_stale", self.heartbeats_stale),
        ]
    }
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    bad_envelope: AtomicU64,
    unknown_key: AtomicU64,
    auth_failed: AtomicU64,
    bad_payload: AtomicU64,
    replayed: AtomicU64,
    send_errors: AtomicU64,
    conflicts: AtomicU64,
    events_dropped: AtomicU64,
    heartbeats_sent: AtomicU64,
    heartbeats_received: AtomicU64,
    heartbeats_stale: AtomicU64,
}

impl Counters {
    pub fn received(&self) {
        self.received.fetch_add(1, Relaxed);
    }

    pub fn sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }

    pub fn dropped(&self, reason: OpenError) {
        match reason {
            OpenError::BadEnvelope => &self.bad_envelope,
            OpenError::UnknownKey => &self.unknown_key,
            OpenError::AuthFailed => &self.auth_failed,
            OpenError::Replayed => &self.replayed,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn bad_payload(&self) {
        self.bad_payload.fetch_add(1, Relaxed);
    }

    pub fn send_error(&self) {
        self.send_errors.fetch_add(1, Relaxed);
    }

    pub fn conflict(&self) {
        self.conflicts.fetch_add(1, Relaxed);
    }

    pub fn event_dropped(&self) {
        self.events_dropped.fetch_add(1, Relaxed);
    }

    pub fn heartbeat_sent(&self) {
        self.heartbeats_sent.fetch_add(1, Relaxed);
    }

    pub fn heartbeat_received(&self, fresh: bool) {
        if fresh {
            &self.heartbeats_received
        } else {
            &self.heartbeats_stale
        }
        .fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> MembershipCounters {
        MembershipCounters {
            datagrams_received: self.received.load(Relaxed),
            datagrams_sent: self.sent.load(Relaxed),
            dropped_bad_envelope: self.bad_envelope.load(Relaxed),
            dropped_unknown_key: self.unknown_key.load(Relaxed),
            dropped_auth_failed: self.auth_failed.load(Relaxed),
            dropped_bad_payload: self.bad_payload.load(Relaxed),
            dropped_replayed: self.replayed.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            conflicts: self.conflicts.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            heartbeats_sent: self.heartbeats_sent.load(Relaxed),
            heartbeats_received: self.heartbeats_received.load(Relaxed),
            heartbeats_stale: self.heartbeats_stale.load(Relaxed),
        }
    }
}

//! Anti-replay for sealed gossip datagrams: an IPsec-style sliding window
//! (RFC 4303 §3.4.3) per sender, over the authenticated `(sender, epoch,
//! counter)` of every `GossipDatagram`.
//!
//! A sender numbers its datagrams from 0 within one life (`epoch`, its
//! incarnation). A receiver accepts a counter once, and only within
//! [`WINDOW`] of the highest one accepted from that life; a newer epoch
//! starts a fresh window, an older epoch than the newest accepted is refused
//! (a restarted node's previous life sends nothing, so its datagrams can only
//! be replays).
//!
//! Only authenticated datagrams reach the window, so nobody without a cluster
//! key can move it. Pure: the driver passes the clock in.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

/// Counters accepted out of order behind the highest one. One sender numbers
/// the datagrams to all its peers in one sequence, so two datagrams to one
/// receiver may be many counters apart; on a LAN, reordering across 128 of a
/// sender's datagrams does not happen, and 128 bits is one `u128`.
pub const WINDOW: u64 = 128;

/// Senders tracked at once (~150 bytes each, so ~600 KB at most); beyond it
/// the least recently accepted sender is forgotten. Four times the largest
/// cluster the gossip sizing targets (1,000 members, see `lan_swim_config`):
/// an entry is per node id, not per life, so only departed node ids fill the
/// spare room, and a live member (heard every probe period) is never the
/// least recent.
pub const MAX_SENDERS: usize = 4096;

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// This counter of this life was accepted before.
    Duplicate,
    /// [`WINDOW`] or more below the highest counter accepted from this life.
    BelowWindow,
    /// From an older life of the sender than the newest accepted.
    OldEpoch,
}

/// The sliding window of one sender life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Highest counter accepted.
    top: u64,
    /// Bit `i` set: counter `top - i` was accepted (bit 0 is `top` itself).
    seen: u128,
}

impl Window {
    /// The window after accepting the first counter of a life.
    pub fn new(counter: u64) -> Self {
        Self {
            top: counter,
            seen: 1,
        }
    }

    /// Accepts `counter` once (and records it) if it is inside the window.
    pub fn accept(&mut self, counter: u64) -> Result<(), Replay> {
        if counter > self.top {
            let shift = counter - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            } | 1;
            self.top = counter;
            return Ok(());
        }
        let age = self.top - counter;
        if age >= WINDOW {
            return Err(Replay::BelowWindow);
        }
        let bit = 1u128 << age;
        if self.seen & bit != 0 {
            return Err(Replay::Duplicate);
        }
        self.seen |= bit;
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Sender {
    epoch: u64,
    window: Window,
    /// When a datagram of this sender was last accepted.
    accepted: Instant,
}

/// The windows of every sender heard, by sender id (the node id).
#[derive(Debug)]
pub struct ReplayGuard {
    senders: HashMap<String, Sender>,
    max_senders: usize,
    forget_after: Option<Duration>,
}

impl ReplayGuard {
    /// `forget_after`: a sender not accepted from for this long is forgotten, so
    /// its next datagram starts a window whatever its epoch (`None`: never).
    /// The driver passes foca's `remove_down_after` (24 h by default): by then
    /// foca has forgotten that member too, and a node whose clock stepped back
    /// across a restart (a lower epoch) is accepted again.
    pub fn new(max_senders: usize, forget_after: Option<Duration>) -> Self {
        Self {
            senders: HashMap::new(),
            max_senders: max_senders.max(1),
            forget_after,
        }
    }

    /// Checks and records one authenticated datagram.
    pub fn check(
        &mut self,
        sender: &str,
        epoch: u64,
        counter: u64,
        now: Instant,
    ) -> Result<(), Replay> {
        let forget_after = self.forget_after;
        let forgotten =
            |s: &Sender| forget_after.is_some_and(|d| now.duration_since(s.accepted) > d);
        match self.senders.get_mut(sender) {
            Some(known) if !forgotten(known) => {
                if epoch < known.epoch {
                    return Err(Replay::OldEpoch);
                }
                if epoch > known.epoch {
                    known.epoch = epoch;
                    known.window = Window::new(counter);
                } else {
                    known.window.accept(counter)?;
                }
                known.accepted = now;
            }
            Some(known) => {
                *known = Sender {
                    epoch,
                    window: Window::new(counter),
                    accepted: now,
                };
            }
            None => {
                if self.senders.len() >= self.max_senders {
                    self.evict_least_recent();
                }
                self.senders.insert(
                    sender.to_owned(),
                    Sender {
                        epoch,
                        window: Window::new(counter),
                        accepted: now,
                    },
                );
            }
        }
        Ok(())
    }

    /// A linear scan, run only when a new sender arrives at the cap: a few µs
    /// for 4,096 entries, and only authenticated senders get that far.
    fn evict_least_recent(&mut self) {
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, s)| s.accepted)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.senders.remove(&id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;
    use proptest::prelude::*;

    fn guard() -> ReplayGuard {
        ReplayGuard::new(MAX_SENDERS, None)
    }

    #[test]
    fn each_counter_is_accepted_once() {
        let mut w = Window::new(5);
        assert_eq!(w.accept(5), Err(Replay::Duplicate));
        assert_eq!(w.accept(7), Ok(()));
        assert_eq!(w.accept(6), Ok(()));
        assert_eq!(w.accept(6), Err(Replay::Duplicate));
        assert_eq!(w.accept(7), Err(Replay::Duplicate));
    }

    #[test]
    fn the_window_is_128_counters_wide() {
        let mut w = Window::new(0);
        assert_eq!(w.accept(200), Ok(()));
        // 200 - 73 = 127: the oldest counter still inside.
        assert_eq!(w.accept(73), Ok(()));
        assert_eq!(w.accept(72), Err(Replay::BelowWindow));
        assert_eq!(w.accept(0), Err(Replay::BelowWindow));
        // A jump of exactly the width clears every earlier bit.
        assert_eq!(w.accept(328), Ok(()));
        assert_eq!(w.accept(201), Ok(()));
        assert_eq!(w.accept(200), Err(Replay::BelowWindow));
    }

    #[test]
    fn a_newer_epoch_resets_and_an_older_one_is_refused() {
        let now = Instant::now();
        let mut g = guard();
        assert_eq!(g.check("lb1", 10, 500, now), Ok(()));
        assert_eq!(g.check("lb1", 11, 0, now), Ok(()));
        assert_eq!(g.check("lb1", 11, 0, now), Err(Replay::Duplicate));
        assert_eq!(g.check("lb1", 10, 501, now), Err(Replay::OldEpoch));
        // Windows are per sender.
        assert_eq!(g.check("lb2", 10, 500, now), Ok(()));
    }

    #[test]
    fn refused_datagrams_do_not_keep_a_sender_remembered() {
        let start = Instant::now();
        let mut g = ReplayGuard::new(MAX_SENDERS, Some(Duration::from_secs(60)));
        assert_eq!(g.check("lb1", 20, 0, start), Ok(()));
        let later = start + Duration::from_secs(50);
        assert_eq!(g.check("lb1", 19, 0, later), Err(Replay::OldEpoch));
        // 61 s after the last accepted datagram: a lower epoch (a clock stepped
        // back across a restart) starts a fresh window.
        let after = start + Duration::from_secs(61);
        assert_eq!(g.check("lb1", 19, 0, after), Ok(()));
        assert_eq!(g.check("lb1", 19, 0, after), Err(Replay::Duplicate));
    }

    #[test]
    fn at_the_cap_the_least_recently_accepted_sender_goes() {
        let start = Instant::now();
        let mut g = ReplayGuard::new(3, None);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let at = start + Duration::from_secs(i as u64);
            assert_eq!(g.check(id, 1, 0, at), Ok(()));
        }
        // "a" heard again: "b" is now the least recent.
        assert_eq!(g.check("a", 1, 1, start + Duration::from_secs(3)), Ok(()));
        assert_eq!(g.check("d", 1, 0, start + Duration::from_secs(4)), Ok(()));
        assert_eq!(g.len(), 3);
        let at = start + Duration::from_secs(5);
        assert_eq!(g.check("a", 1, 1, at), Err(Replay::Duplicate));
        assert_eq!(g.check("c", 1, 0, at), Err(Replay::Duplicate));
        // "b" was forgotten, so its replay is accepted again: the price of the cap.
        assert_eq!(g.check("b", 1, 0, at), Ok(()));
    }

    /// The specification the window implements, without bits.
    #[derive(Default)]
    struct Model {
        epoch: Option<u64>,
        accepted: BTreeSet<u64>,
    }

    impl Model {
        fn check(&mut self, epoch: u64, counter: u64) -> bool {
            match self.epoch {
                Some(e) if epoch < e => return false,
                Some(e) if epoch == e => {
                    let top = *self.accepted.last().expect("a life has a counter");
                    if self.accepted.contains(&counter) || counter + WINDOW <= top {
                        return false;
                    }
                }
                _ => {
                    self.epoch = Some(epoch);
                    self.accepted.clear();
                }
            }
            self.accepted.insert(counter);
            true
        }
    }

    proptest! {
        /// The guard agrees with the model on any sequence of one sender's
        /// datagrams: few epochs and counters near each other, so that
        /// duplicates, reordering and jumps past the window all occur.
        #[test]
        fn the_window_matches_its_specification(
            datagrams in prop::collection::vec((0u64..3, 0u64..400), 1..300),
        ) {
            let now = Instant::now();
            let mut g = guard();
            let mut model = Model::default();
            for (epoch, counter) in datagrams {
                let got = g.check("lb1", epoch, counter, now).is_ok();
                prop_assert_eq!(got, model.check(epoch, counter), "epoch {} counter {}", epoch, counter);
            }
        }

        /// No (sender, epoch, counter) is ever accepted twice, whatever the
        /// order, even with full counter ranges.
        #[test]
        fn nothing_is_accepted_twice(
            datagrams in prop::collection::vec((0u8..3, 0u64..4, any::<u64>()), 1..200),
            repeats in prop::collection::vec(any::<prop::sample::Index>(), 0..100),
        ) {
            let now = Instant::now();
            let mut g = guard();
            let mut accepted = HashSet::new();
            let replayed = repeats.iter().map(|i| datagrams[i.index(datagrams.len())]);
            for (sender, epoch, counter) in datagrams.iter().copied().chain(replayed) {
                if g.check(&sender.to_string(), epoch, counter, now).is_ok() {
                    prop_assert!(accepted.insert((sender, epoch, counter)));
                }
            }
        }

        /// Distinct counters reordered within the window are all accepted.
        #[test]
        fn reordering_within_the_window_loses_nothing(
            base in 0u64..1_000_000,
            order in Just((0..WINDOW).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let now = Instant::now();
            let mut g = guard();
            for offset in order {
                prop_assert_eq!(g.check("lb1", 7, base + offset, now), Ok(()));
            }
        }

        /// Memory stays bounded however many senders appear.
        #[test]
        fn the_sender_count_is_capped(cap in 1usize..50, senders in 0usize..200) {
            let start = Instant::now();
            let mut g = ReplayGuard::new(cap, None);
            for i in 0..senders {
                let at = start + Duration::from_millis(i as u64);
                let sender = format!("lb{i}");
                prop_assert!(g.check(&sender, 1, 0, at).is_ok());
                prop_assert!(g.len() <= cap);
            }
        }
    }
}

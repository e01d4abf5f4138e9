//! Owners presumed down on heartbeat silence (pure).
//!
//! The membership reports the owners this node listens to (as their heir) that went
//! silent. Such a peer is taken for down here, out of the local election, so this node
//! takes the groups it is heir of at once, as a keepalived backup does when its
//! master-down timer fires; SWIM stays the authority on membership.
//!
//! The presumption ends, for the rest of the silence episode (until the peer is heard
//! again), when the peer shows it is alive (a VRRP advert), SWIM settles its fate
//! (down, or a new life), or at the latest after SWIM's failure-detection bound with the
//! peer still live in SWIM (`expire`): then only its heartbeats fail to reach us. A live owner whose heartbeats were lost then holds its groups
//! beside the heir for at most one advert interval: both see each other's adverts and
//! keep the one the election ranks first (`decide::claim_winner`). At most one takeover
//! per episode, so lossy heartbeats cannot make a group flap.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Since then (ms).
    PresumedDown(u64),
    /// Alive or settled by SWIM while still silent, or the presumption ran out: back in
    /// the election.
    Refuted,
}

/// Silent peers by node id, each in one silence episode.
#[derive(Clone, Debug, Default)]
pub struct Silences {
    peers: BTreeMap<String, State>,
}

impl Silences {
    /// The membership's new silent set. A peer is presumed down when it is newly
    /// silent, this node listens to it (`watched`) and it is live (`is_live`); returns
    /// the peers presumed down by this call. Peers no longer silent are forgotten.
    pub fn update(
        &mut self,
        silent: &BTreeSet<String>,
        watched: &BTreeSet<String>,
        is_live: impl Fn(&str) -> bool,
        now_ms: u64,
    ) -> Vec<String> {
        self.peers.retain(|peer, _| silent.contains(peer));
        let fresh: Vec<String> = silent
            .iter()
            .filter(|p| !self.peers.contains_key(*p) && watched.contains(*p) && is_live(p))
            .cloned()
            .collect();
        for peer in &fresh {
            self.peers.insert(peer.clone(), State::PresumedDown(now_ms));
        }
        fresh
    }

    /// The peer showed it is alive, or SWIM settled it: back in the election until its
    /// next silence episode. True when it was presumed down.
    pub fn refute(&mut self, peer: &str) -> bool {
        match self.peers.get_mut(peer) {
            Some(state @ State::PresumedDown(_)) => {
                *state = State::Refuted;
                true
            }
            _ => false,
        }
    }

    /// Ends the presumptions older than `cap`: SWIM has had the time to declare a dead
    /// peer down (its detection bound), so a peer it still counts as live is alive,
    /// only its heartbeats do not reach us. Returns the peers back in the election.
    pub fn expire(&mut self, now_ms: u64, cap_ms: u64) -> Vec<String> {
        let mut expired = Vec::new();
        for (peer, state) in &mut self.peers {
            if let State::PresumedDown(since) = *state {
                if now_ms >= since.saturating_add(cap_ms) {
                    *state = State::Refuted;
                    expired.push(peer.clone());
                }
            }
        }
        expired
    }

    /// When the oldest presumption runs out, given `cap`.
    pub fn next_expiry(&self, cap_ms: u64) -> Option<u64> {
        self.peers
            .values()
            .filter_map(|s| match s {
                State::PresumedDown(since) => Some(since.saturating_add(cap_ms)),
                State::Refuted => None,
            })
            .min()
    }

    /// Since when (ms) `peer` is presumed down, if it is.
    pub fn presumed_since(&self, peer: &str) -> Option<u64> {
        match self.peers.get(peer) {
            Some(State::PresumedDown(since)) => Some(*since),
            _ => None,
        }
    }

    pub fn is_presumed_down(&self, peer: &str) -> bool {
        matches!(self.peers.get(peer), Some(State::PresumedDown(_)))
    }

    /// Peers presumed down: keep listening to them, to hear them come back.
    pub fn presumed_down(&self) -> impl Iterator<Item = &String> {
        self.peers
            .iter()
            .filter(|(_, s)| matches!(s, State::PresumedDown(_)))
            .map(|(peer, _)| peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_takeover_per_silence_episode() {
        let mut s = Silences::default();
        let watched = set(&["lb1", "lb2"]);
        assert_eq!(s.update(&set(&["lb1"]), &watched, |_| true, 0), ["lb1"]);
        assert!(s.is_presumed_down("lb1"));
        assert_eq!(s.presumed_since("lb1"), Some(0));
        assert_eq!(s.presumed_since("lb2"), None);
        assert_eq!(
            s.update(&set(&["lb1"]), &watched, |_| true, 0),
            Vec::<String>::new()
        );

        // Its advert shows it alive: back in the election, and still silent it is not
        // presumed down again.
        assert!(s.refute("lb1"));
        assert!(!s.refute("lb1"));
        assert!(!s.is_presumed_down("lb1"));
        assert!(s.update(&set(&["lb1"]), &watched, |_| true, 0).is_empty());

        // Heard again, then silent again: a new episode.
        assert!(s.update(&set(&[]), &watched, |_| true, 0).is_empty());
        assert_eq!(s.update(&set(&["lb1"]), &watched, |_| true, 0), ["lb1"]);
    }

    #[test]
    fn a_presumption_runs_out_after_the_cap() {
        let mut s = Silences::default();
        let watched = set(&["lb1"]);
        assert_eq!(s.update(&set(&["lb1"]), &watched, |_| true, 1000), ["lb1"]);
        assert_eq!(s.next_expiry(10_000), Some(11_000));
        assert!(s.expire(10_999, 10_000).is_empty());
        assert_eq!(s.expire(11_000, 10_000), ["lb1"]);
        assert!(!s.is_presumed_down("lb1"));
        assert_eq!(s.next_expiry(10_000), None);
        // Still silent: not presumed down again in this episode.
        assert!(s
            .update(&set(&["lb1"]), &watched, |_| true, 12_000)
            .is_empty());
    }

    #[test]
    fn only_watched_live_peers_are_presumed_down() {
        let mut s = Silences::default();
        assert!(s
            .update(&set(&["lb3"]), &set(&["lb1"]), |_| true, 0)
            .is_empty());
        assert!(s
            .update(&set(&["lb1"]), &set(&["lb1"]), |p| p != "lb1", 0)
            .is_empty());
        assert_eq!(s.presumed_down().count(), 0);
    }

    proptest! {
        #[test]
        fn presumed_down_peers_are_silent_watched_and_live(
            steps in proptest::collection::vec(
                (proptest::collection::btree_set("lb[1-4]", 0..4), any::<bool>(), "lb[1-4]"),
                1..30,
            ),
        ) {
            let watched = set(&["lb1", "lb2", "lb3"]);
            let mut s = Silences::default();
            for (silent, refute, peer) in steps {
                s.update(&silent, &watched, |p| p != "lb3", 0);
                if refute {
                    s.refute(&peer);
                }
                for p in s.presumed_down() {
                    prop_assert!(silent.contains(p) && watched.contains(p) && p != "lb3");
                }
            }
        }
    }
}

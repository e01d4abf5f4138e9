//! One VIP group's virtual router on this node: a pure state machine in the shape of
//! RFC 5798 §6.4 (Initialize → Backup → Master). `Router::step` takes one input and the
//! clock and returns the effects; the runtime performs them (netlink, sockets) and
//! feeds the results back as inputs. No I/O, no clock of its own.
//!
//! Who should hold a group is the gossip election's answer (`ownership::elect`, given
//! to the router as a `View`); VRRP is the safety net under it:
//! - **Start as Backup.** After start, and after the link comes back, a Backup claims
//!   nothing for Master_Down_Interval (3 × advert_int + skew), as RFC 5798 §6.4.1 has
//!   it: whatever master is on the link is heard first. A node that is not (yet) in the
//!   cluster (no `join`, a wrong key) therefore never grabs a group that a running agent
//!   or a keepalived master holds. A hand-over from the holder ends the wait.
//! - **Heard masters are obeyed.** A valid advert for the group (that the group's
//!   `vrrp_obey` lets through) from another router makes that router the heard master
//!   until Master_Down_Interval passes without one; a Backup with a heard master claims
//!   nothing, whatever gossip says. An agent's advert is always followed by a Backup:
//!   agents move groups among themselves only through the election and hand-overs,
//!   never by VRRP preemption. A foreign router (keepalived) is followed by the VRRP
//!   rules: with `preempt` and a higher priority we take over when the election names
//!   us and our wait is over.
//! - **Preemption breaks before it makes.** A lower-priority foreign master lets go
//!   when it hears our advert, and says nothing when it does. So the router first
//!   advertises without the addresses (`Effect::Preempt`: the runtime also probes who
//!   answers for them, `vip::probe`), and claims when the runtime reports that nobody
//!   answers any more (`Input::LetGo`), or after one advert interval at the latest (a
//!   master that keeps them is preempted as VRRP does, both holding until it hears us).
//! - **Two masters settle by VRRP precedence** (priority, then primary address), which
//!   both sides compute alike: the loser releases and follows, the winner advertises at
//!   once and re-announces its addresses (gratuitous ARP / NA), as keepalived does. So
//!   two holders cannot outlast one advert interval while adverts flow, even when gossip
//!   between them is cut.
//! - **The heard master ends** on its priority-0 advert after the skew time, on a
//!   hand-over from it (or from anyone, once it has resigned), on heartbeat silence
//!   (`PresumedDown`: the fast crash path, 0.3 s by default; should the node be alive
//!   with only gossip cut, its next advert settles the two masters by precedence), or
//!   after Master_Down_Interval without adverts.
//! - **Planned moves hand over.** A Master the election no longer names releases and
//!   names its successor (`Effect::Release { to }`): the runtime removes the addresses,
//!   then sends the successor a sealed hand-over and the others a priority-0 advert;
//!   the successor claims at once (the others wait the skew time). The election only
//!   names ready peers (settled, links up, caught up on sync), so the group is without
//!   holder only for one message's flight and one address add. A node handed a group its own election
//!   no longer names (it learnt of a better node a moment before the holder did)
//!   claims it all the same and hands it on at its next view.

use crate::ms;
use std::net::IpAddr;
use std::time::Duration;

use crate::vrrp::{self, Advert, Decision, Local, Mismatch, Role, Version};

/// The router's state (RFC 5798 §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running on a link yet, or the link is down: holds nothing, claims nothing.
    Initialize,
    Backup,
    /// Holds the group's addresses, announces them and advertises.
    Master,
}

/// This node's side of the group's virtual router (from the config and the uplink).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub version: Version,
    pub priority: u8,
    /// Our primary address on the group's link, family of the group: the VRRP source
    /// of our adverts and the tie-break between masters of equal priority.
    pub primary: IpAddr,
    pub preempt: bool,
    pub advert_int: Duration,
}

impl Settings {
    fn local(&self, state: State) -> Local {
        Local {
            role: if state == State::Master {
                Role::Master
            } else {
                Role::Backup
            },
            version: self.version,
            priority: self.priority,
            primary: self.primary,
            preempt: self.preempt,
            advert_interval: self.advert_int,
        }
    }

    /// Master_Down_Interval for our own advert interval: how long a starting Backup
    /// listens before it may claim.
    pub fn master_down(&self) -> Duration {
        self.advert_int * 3 + vrrp::skew_time(self.version, self.priority, self.advert_int)
    }
}

/// What the gossip side says about the group now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The election names this node.
    pub elected_me: bool,
    /// The group's link is up.
    pub link_up: bool,
    /// Gossip has not settled yet (start, rejoin): hold nothing new.
    pub settling: bool,
    /// When the election names another node: that node, if it is a live, ready agent to
    /// hand the group to.
    pub successor: Option<String>,
}

/// A VRRP master this router heard and follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub src: IpAddr,
    /// The agent's node id when the source is a known agent; `None` for a foreign router.
    pub node: Option<String>,
    pub priority: u8,
    /// Followed up to this time (ms) unless another advert comes.
    pub until_ms: u64,
}

/// One input to the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// The election (re)ran, or a blocker changed.
    View(View),
    /// A valid advert for the group, let through by `vrrp_obey`, from another router.
    Advert {
        src: IpAddr,
        /// Node id when `src` is a known agent's VRRP source.
        node: Option<&'a str>,
        advert: &'a Advert,
    },
    /// The holder handed the group to this node (sealed, over the heartbeat channel).
    Handover { from: &'a str },
    /// Heartbeat silence: `node` is presumed down (its last advert came before).
    PresumedDown(&'a str),
    /// Planned stop: release, handing over to `heir`.
    Shutdown { heir: Option<String> },
    /// While preempting: nobody answers for the group's addresses any more (the lower
    /// master let go).
    LetGo,
    /// This node ran `late_ms` after a wake it was due (a loaded host, a paused VM):
    /// the adverts that arrived meanwhile wait unread, so the stall is no evidence
    /// that the heard master went quiet.
    Stalled { late_ms: u64 },
}

/// What the runtime must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Add the addresses, start announcing them, advertise now.
    Acquire,
    /// Remove the addresses, stop announcing, hand the group to `to` (if any), send a
    /// priority-0 advert.
    Release { to: Option<String> },
    /// Advertise now (a backup's master resigned, or a lower master must hear us).
    AdvertiseNow,
    /// Re-announce the addresses (gratuitous ARP / NA burst): neighbours may have
    /// learnt another master's MAC.
    Announce,
    /// Advertise now without holding the addresses, and report `Input::LetGo` once
    /// nobody answers for them: a lower-priority foreign master holds them.
    Preempt,
}

/// One group's router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Router {
    state: State,
    /// A Backup claims nothing before then (ms) unless handed the group.
    wait_until_ms: u64,
    heard: Option<Heard>,
    /// A lower-priority foreign master heard (not followed: we preempt it), until its
    /// adverts stop for Master_Down_Interval or it lets go.
    lower: Option<Heard>,
    /// Preempting `lower` since `Effect::Preempt`: claim at `Input::LetGo`, or at this
    /// time (ms) at the latest.
    preempt_until_ms: Option<u64>,
    /// The holder handed the group here: claim despite the wait and settling.
    handed: bool,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    pub fn new() -> Self {
        Router {
            state: State::Initialize,
            wait_until_ms: 0,
            heard: None,
            lower: None,
            preempt_until_ms: None,
            handed: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    #[cfg(test)]
    pub fn is_master(&self) -> bool {
        self.state == State::Master
    }

    /// The master followed now, if any.
    pub fn heard(&self, now_ms: u64) -> Option<&Heard> {
        self.heard.as_ref().filter(|h| h.until_ms > now_ms)
    }

    /// The lower-priority foreign master being preempted, if any.
    pub fn preempting(&self) -> Option<&Heard> {
        self.preempt_until_ms.and(self.lower.as_ref())
    }

    /// The heard master at `src` turns out to be agent `node` (it joined the gossip
    /// since): its hand-over ends the following.
    pub fn identify(&mut self, src: IpAddr, node: &str) {
        if let Some(h) = self
            .heard
            .as_mut()
            .filter(|h| h.src == src && h.node.is_none())
        {
            h.node = Some(node.to_owned());
        }
    }

    /// Claim at the next view that names this node, without the start-up wait: the
    /// group's addresses were this node's a moment ago (a group renamed by a reload).
    pub fn hand_over(&mut self) {
        if self.state != State::Master {
            self.handed = true;
        }
    }

    /// The runtime could not add the addresses after `Effect::Acquire`: back to Backup,
    /// to claim again at a later view.
    pub fn acquire_failed(&mut self) {
        if self.state == State::Master {
            self.state = State::Backup;
        }
    }

    /// When the router wants to be stepped again with the same view (a wait or a heard
    /// master running out).
    pub fn next_wake_ms(&self, now_ms: u64) -> Option<u64> {
        let waits = [
            (self.state == State::Backup).then_some(self.wait_until_ms),
            self.heard.as_ref().map(|h| h.until_ms),
            self.lower.as_ref().map(|h| h.until_ms),
            self.preempt_until_ms,
        ];
        waits.into_iter().flatten().filter(|&t| t > now_ms).min()
    }

    /// Applies one input. Adverts from a router configured differently (version, v2
    /// interval) are refused with the mismatch and change nothing.
    pub fn step(
        &mut self,
        input: Input<'_>,
        settings: &Settings,
        now_ms: u64,
    ) -> Result<Vec<Effect>, Mismatch> {
        if let Input::Stalled { late_ms } = input {
            // Before the expiry below: a master heard when the stall began is still
            // followed.
            self.stalled(late_ms, settings, now_ms);
            return Ok(Vec::new());
        }
        if self.heard.as_ref().is_some_and(|h| h.until_ms <= now_ms) {
            self.heard = None;
        }
        if self.lower.as_ref().is_some_and(|h| h.until_ms <= now_ms) {
            self.lower = None;
        }
        Ok(match input {
            Input::View(view) => self.on_view(&view, settings, now_ms),
            Input::Advert { src, node, advert } => {
                self.on_advert(src, node, advert, settings, now_ms)?
            }
            Input::Handover { from } => {
                // The holder let go, and a master that resigned (priority 0, followed
                // for the skew time only) holds nothing either: neither blocks the
                // claim. Any other master heard still does.
                if self
                    .heard
                    .as_ref()
                    .is_some_and(|h| h.node.as_deref() == Some(from) || h.priority == 0)
                {
                    self.heard = None;
                }
                self.hand_over();
                Vec::new()
            }
            Input::PresumedDown(node) => {
                if self
                    .heard
                    .as_ref()
                    .is_some_and(|h| h.node.as_deref() == Some(node))
                {
                    self.heard = None;
                }
                Vec::new()
            }
            Input::Stalled { .. } => Vec::new(),
            Input::LetGo => {
                // The next view claims (`try_claim`), if this node should still.
                if self.preempt_until_ms.is_some() {
                    self.lower = None;
                }
                Vec::new()
            }
            Input::Shutdown { heir } => {
                let was_master = self.state == State::Master;
                self.state = State::Initialize;
                self.handed = false;
                self.preempt_until_ms = None;
                if was_master {
                    vec![Effect::Release { to: heir }]
                } else {
                    Vec::new()
                }
            }
        })
    }

    /// A stall of `late_ms` ending now: a heard master (followed or being preempted),
    /// a preemption's bound and a Backup's listening wait that were running when it
    /// began are credited the stall plus one advert
    /// interval, the time to read what waits in the socket. Without it a node starved
    /// past Master_Down_Interval claims the group its live master still holds (seen in
    /// the TCG lab: a director starved for 3 s after joining held a group beside its
    /// owner for 6.7 s).
    fn stalled(&mut self, late_ms: u64, settings: &Settings, now_ms: u64) {
        let began = now_ms.saturating_sub(late_ms);
        let credit = late_ms.saturating_add(ms(settings.advert_int));
        for h in [&mut self.heard, &mut self.lower] {
            if let Some(h) = h.as_mut().filter(|h| h.until_ms > began) {
                h.until_ms = h.until_ms.saturating_add(credit);
            }
        }
        // The probe's report may be among what waited unread.
        if let Some(until) = self.preempt_until_ms.as_mut().filter(|t| **t > began) {
            *until = until.saturating_add(credit);
        }
        if self.state == State::Backup && self.wait_until_ms > began {
            self.wait_until_ms = self.wait_until_ms.saturating_add(credit);
        }
    }

    fn on_view(&mut self, view: &View, settings: &Settings, now_ms: u64) -> Vec<Effect> {
        if !view.link_up {
            let was_master = self.state == State::Master;
            self.state = State::Initialize;
            self.heard = None;
            self.lower = None;
            self.preempt_until_ms = None;
            self.handed = false;
            return if was_master {
                // Nothing can be sent on a dead link: the successor finds out by
                // heartbeat silence or Master_Down_Interval.
                vec![Effect::Release { to: None }]
            } else {
                Vec::new()
            };
        }
        match self.state {
            State::Initialize => {
                self.state = State::Backup;
                self.wait_until_ms = now_ms.saturating_add(ms(settings.master_down()));
                self.try_claim(view, settings, now_ms)
            }
            State::Backup => self.try_claim(view, settings, now_ms),
            State::Master if !view.elected_me => {
                self.state = State::Backup;
                // The successor claims now; should this node's election name it again
                // a moment later (views still converging), it must not claim beside
                // the successor before hearing it: it waits as a starting Backup, and
                // gets the group back by a hand-over.
                self.wait_until_ms = now_ms.saturating_add(ms(settings.master_down()));
                vec![Effect::Release {
                    to: view.successor.clone(),
                }]
            }
            State::Master => Vec::new(),
        }
    }

    fn try_claim(&mut self, view: &View, settings: &Settings, now_ms: u64) -> Vec<Effect> {
        let handed = self.handed;
        if !view.elected_me {
            // Handed a group its election no longer names (views differ for a moment:
            // a node undrained or up elsewhere): claim it all the same, and the next
            // view hands it on. Dropping it would leave it without holder for the skew.
            self.handed = false;
            self.preempt_until_ms = None;
            if !handed {
                return Vec::new();
            }
        }
        let waited = handed || (now_ms >= self.wait_until_ms && !view.settling);
        if !waited || self.heard.is_some() {
            self.preempt_until_ms = None;
            return Vec::new();
        }
        // A hand-over comes from the holder: nothing to preempt.
        if !handed && self.lower.is_some() {
            match self.preempt_until_ms {
                None => {
                    self.preempt_until_ms = Some(now_ms.saturating_add(ms(settings.advert_int)));
                    return vec![Effect::Preempt];
                }
                Some(until) if now_ms < until => return Vec::new(),
                // It kept the addresses for a whole advert interval: preempt as VRRP
                // does, both holding until it hears our adverts.
                Some(_) => {}
            }
        }
        self.state = State::Master;
        self.handed = false;
        self.lower = None;
        self.preempt_until_ms = None;
        vec![Effect::Acquire]
    }

    fn on_advert(
        &mut self,
        src: IpAddr,
        node: Option<&str>,
        advert: &Advert,
        settings: &Settings,
        now_ms: u64,
    ) -> Result<Vec<Effect>, Mismatch> {
        let decision = vrrp::decide(&settings.local(self.state), advert, src)?;
        let from_heard = self.heard.as_ref().is_some_and(|h| h.src == src);
        let mut follow = |until: Duration| {
            self.heard = Some(Heard {
                src,
                node: node.map(str::to_owned),
                priority: advert.priority,
                until_ms: now_ms.saturating_add(ms(until)),
            });
        };
        Ok(match decision {
            Decision::AdvertiseNow => vec![Effect::AdvertiseNow],
            Decision::KeepMaster => vec![Effect::AdvertiseNow, Effect::Announce],
            Decision::Follow { master_down } => {
                follow(master_down);
                if self.lower.as_ref().is_some_and(|l| l.src == src) {
                    self.lower = None;
                }
                self.preempt_until_ms = None;
                if self.state == State::Master {
                    self.state = State::Backup;
                    vec![Effect::Release { to: None }]
                } else {
                    Vec::new()
                }
            }
            // Only a Backup gets these two.
            Decision::TakeOverAfter(skew) => {
                // The master resigns. On an agent's planned move the successor it names
                // claims at its hand-over; the others wait the skew, as RFC 5798 has
                // it, and hear the successor's first advert before it runs out (their
                // elections may still name themselves for a moment: a node undrained
                // or up a moment ago is not yet in every view).
                if from_heard {
                    follow(skew);
                }
                // A lower master that resigns holds nothing more.
                if self.lower.as_ref().is_some_and(|l| l.src == src) {
                    self.lower = None;
                }
                Vec::new()
            }
            Decision::IgnoreLowerPriority => {
                let interval = advert.interval();
                let master_down =
                    interval * 3 + vrrp::skew_time(settings.version, settings.priority, interval);
                if node.is_some() {
                    // Never preempt an agent by VRRP: the election moves groups.
                    follow(master_down);
                } else {
                    // A foreign master that holds the addresses: preempted, break
                    // before make (`try_claim`).
                    self.lower = Some(Heard {
                        src,
                        node: None,
                        priority: advert.priority,
                        until_ms: now_ms.saturating_add(ms(master_down)),
                    });
                }
                Vec::new()
            }
        })
    }
}

#[cfg(test)]
mod tests;

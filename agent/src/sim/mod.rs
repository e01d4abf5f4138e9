//! A deterministic in-process simulation of an lvs-mesh gossip cluster, for the
//! `cluster_sim` benchmark and convergence tests; the agent never uses it.
//!
//! N real `foca` instances with the agent's identity, protobuf codec and sealed
//! `GossipDatagram` envelope exchange datagrams over a virtual network (fixed
//! one-way latency, no loss, no reordering beyond what latency implies) in
//! virtual time; foca's timers run on the same clock. Each node elects VIP
//! group owners on its own membership view, as a director does, so the
//! simulation can tell when every live node agrees on ownership.
//!
//! Simplifications: joiners announce to live seeds only once (the agent's
//! re-announce loop never matters when seeds are up); the groups use the
//! config defaults (everyone at the default priority, `preempt`, no delay), so
//! the correct election depends only on the set of live nodes.
#![doc(hidden)]

mod node;
mod queue;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use foca::Timer;

use crate::{
    membership::{self, ClusterKey, KeyRing, NodeIdentity, NodeMeta, Origin},
    ownership::{self, GroupSpec},
};
use node::{Owners, SimNode};
use queue::Agenda;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Identities created; `Sim::start` brings them up.
    pub nodes: usize,
    /// One-way delay of every datagram.
    pub latency: Duration,
    pub swim: foca::Config,
    /// Number of VIP groups elected on every view.
    pub groups: usize,
    /// Seeds every node's random choices.
    pub seed: u64,
}

impl SimConfig {
    /// The agent's LAN preset sized for `nodes`, 0.5 ms latency, 64 groups.
    pub fn lan(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            latency: Duration::from_micros(500),
            swim: membership::lan_swim_config(u32::try_from(nodes).unwrap_or(u32::MAX)),
            groups: 64,
            seed,
        }
    }
}

/// Datagrams sent and their sizes: `payload_bytes` is foca's packet (the
/// protobuf items), `wire_bytes` the sealed `GossipDatagram` (UDP payload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub datagrams: u64,
    pub payload_bytes: u64,
    pub wire_bytes: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;

    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            datagrams: self.datagrams - earlier.datagrams,
            payload_bytes: self.payload_bytes - earlier.payload_bytes,
            wire_bytes: self.wire_bytes - earlier.wire_bytes,
        }
    }
}

enum Event {
    Deliver {
        to: usize,
        datagram: Vec<u8>,
    },
    Timer {
        node: usize,
        timer: Timer<NodeIdentity>,
    },
}

pub struct Sim {
    latency: Duration,
    now: Duration,
    agenda: Agenda<Event>,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    keys: KeyRing,
    groups: Vec<GroupSpec>,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let nodes: Vec<SimNode> = (0..cfg.nodes)
            .map(|i| {
                let seed = cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                SimNode::new(identity(i), cfg.swim.clone(), seed)
            })
            .collect();
        let by_addr = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.addr(), i))
            .collect();
        let groups = (0..cfg.groups)
            .map(|g| GroupSpec {
                name: format!("vip{g:03}"),
                priorities: BTreeMap::new(),
                default_priority: 100,
                preempt: true,
                preempt_delay: Duration::ZERO,
            })
            .collect();
        Self {
            latency: cfg.latency,
            now: Duration::ZERO,
            agenda: Agenda::new(),
            nodes,
            by_addr,
            keys: KeyRing::new(ClusterKey::from_bytes([0x5a; 32])),
            groups,
        }
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].alive
    }

    /// Brings `node` up and announces it to `seeds`.
    pub fn start(&mut self, node: usize, seeds: &[usize]) {
        let now_ms = self.now_ms();
        self.nodes[node].start(now_ms);
        for &seed in seeds.iter().filter(|&&s| s != node) {
            let dst = NodeIdentity::placeholder(self.nodes[seed].addr());
            let n = &mut self.nodes[node];
            n.foca
                .announce(dst, &mut n.runtime)
                .expect("announcing to a seed");
        }
        self.flush(node);
    }

    /// Stops `node` without a word, like `kill -9`: its timers and the
    /// datagrams addressed to it are dropped from now on.
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].alive = false;
    }

    /// Processes every event due in the next `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        while let Some((at, event)) = self.agenda.pop_due(until) {
            self.now = at;
            self.handle(event);
        }
        self.now = until;
    }

    /// Runs in steps of `tick` until `done` holds (checked after each step) or
    /// `limit` has passed; returns the virtual time it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        tick: Duration,
        mut done: impl FnMut(&mut Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            self.run_for(tick);
            if done(self) {
                return Some(self.now - start);
            }
        }
        None
    }

    /// Every live node sees exactly the other live nodes as live.
    pub fn membership_converged(&self) -> bool {
        let live: HashSet<SocketAddr> = self.live_nodes().map(|n| n.addr()).collect();
        self.live_nodes().all(|n| {
            let mut count = 0;
            let all_live = n.live_peers().all(|peer| {
                count += 1;
                live.contains(&peer)
            });
            all_live && count + 1 == live.len()
        })
    }

    /// No live node has a membership update left to piggyback: only probes
    /// and periodic announces are sent, the cluster is at rest.
    pub fn quiet(&self) -> bool {
        self.live_nodes().all(|n| n.foca.updates_backlog() == 0)
    }

    /// The owners every node should elect: the election over the live nodes.
    pub fn expected_owners(&self) -> Owners {
        let members: Vec<_> = self
            .live_nodes()
            .map(|n| node::member(n.foca.identity(), 0))
            .collect();
        ownership::elect(&members, &self.groups, &BTreeMap::new(), self.now_ms()).owners
    }

    /// Every live node's own election equals [`Sim::expected_owners`].
    pub fn ownership_agreed(&mut self) -> bool {
        let expected = self.expected_owners();
        let now_ms = self.now_ms();
        let groups = &self.groups;
        self.nodes
            .iter_mut()
            .filter(|n| n.alive)
            .all(|n| *n.election(groups, now_ms) == expected)
    }

    /// Totals over every node since the start.
    pub fn traffic(&self) -> Traffic {
        self.nodes
            .iter()
            .fold(Traffic::default(), |sum, n| Traffic {
                datagrams: sum.datagrams + n.traffic.datagrams,
                payload_bytes: sum.payload_bytes + n.traffic.payload_bytes,
                wire_bytes: sum.wire_bytes + n.traffic.wire_bytes,
            })
    }

    pub fn live_count(&self) -> usize {
        self.live_nodes().count()
    }

    fn live_nodes(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes.iter().filter(|n| n.alive)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.now.as_millis()).unwrap_or(u64::MAX)
    }

    fn handle(&mut self, event: Event) {
        let (index, result) = match event {
            Event::Deliver { to, datagram } => {
                let n = &mut self.nodes[to];
                if !n.alive {
                    return;
                }
                // Every datagram is delivered once: no replay window to model.
                let opened = self
                    .keys
                    .open(&datagram)
                    .expect("the simulation seals every datagram with its one key");
                (to, n.foca.handle_data(&opened.plaintext, &mut n.runtime))
            }
            Event::Timer { node, timer } => {
                let n = &mut self.nodes[node];
                if !n.alive {
                    return;
                }
                (node, n.foca.handle_timer(timer, &mut n.runtime))
            }
        };
        // foca rejects some packets by design (e.g. from a member it declared
        // down); the agent logs and drops them, and so does the simulation.
        let _ = result;
        self.flush(index);
    }

    /// Drains what the last foca call produced, as the membership driver does.
    fn flush(&mut self, index: usize) {
        let now_ms = self.now_ms();
        let n = &mut self.nodes[index];
        n.absorb_notifications(now_ms);
        while let Some((after, timer)) = n.runtime.to_schedule() {
            self.agenda
                .push(self.now + after, Event::Timer { node: index, timer });
        }
        while let Some((dst, packet)) = n.runtime.to_send() {
            // Numbered as the agent numbers them, for a true envelope size.
            let id = n.foca.identity();
            let origin = Origin {
                sender: id.node_id.clone(),
                epoch: id.incarnation,
                counter: n.traffic.datagrams,
            };
            let datagram = self.keys.seal(&origin, &packet);
            n.traffic.datagrams += 1;
            n.traffic.payload_bytes += packet.len() as u64;
            n.traffic.wire_bytes += datagram.len() as u64;
            if let Some(&to) = self.by_addr.get(&dst.addr) {
                self.agenda
                    .push(self.now + self.latency, Event::Deliver { to, datagram });
            }
        }
    }
}

/// Node `i`: id `lb0042`, gossip address in 198.51.100.0/24 (250 per port).
fn identity(i: usize) -> NodeIdentity {
    let host = u8::try_from(1 + i % 250).expect("below 251");
    let port = 7946 + u16::try_from(i / 250).expect("fewer than 16 million nodes");
    NodeIdentity {
        node_id: format!("lb{i:04}"),
        addr: SocketAddr::from(([198, 51, 100, host], port)),
        incarnation: 1_700_000_000_000 + i as u64,
        revision: 0,
        meta: NodeMeta {
            syncid: u8::try_from(1 + i % 255).expect("below 256"),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            vrrp_sources: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests;

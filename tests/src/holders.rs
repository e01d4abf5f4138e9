//! Who holds each VIP, measured from the interfaces and the wire.
//!
//! A [`Recorder`] runs one `ip -ts -o monitor address all-nsid` in its own namespace,
//! with every director namespace given a namespace id there (`ip netns set NS auto`):
//! the kernel queues every director's address changes on that one netlink socket in
//! the order it made them, so a hand-over's delete on the old holder is read before
//! the new holder's add, however late the reader runs. (One monitor per namespace,
//! stamped by each process as it woke, once put a delete 6.5 ms after the add that
//! followed it: a false overlap.) Each line carries the time ip read it from the
//! kernel. The recorder also takes an `ip -o addr show` snapshot so the starting state
//! is known, and runs `tcpdump -l -n -e -t -i br0 arp` in the bridge namespace to see
//! gratuitous ARPs (sender MAC, VIP). Polling `ip addr` every 50 ms would miss an
//! overlap shorter than the period; the monitor reports every change as the kernel
//! makes it.
//!
//! [`analyse`] is pure: given the starting holders and the events of one VIP it
//! returns the holder set over a window, the longest time with two or more holders,
//! the longest time with none, the number of holder changes and the GARPs per
//! sender. Every child process is killed on drop, even when the test panics.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One address appearing on or leaving a director's interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrEvent {
    /// Since the recorder started.
    pub at: Duration,
    pub node: String,
    pub addr: IpAddr,
    pub added: bool,
}

/// One gratuitous ARP seen on the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Garp {
    pub at: Duration,
    pub mac: String,
    pub vip: IpAddr,
}

/// What was recorded so far.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// Addresses per node in the starting snapshot.
    pub initial: BTreeMap<String, BTreeSet<IpAddr>>,
    /// When the snapshot was taken; monitor lines that arrived earlier are already in it.
    pub initial_at: Duration,
    pub events: Vec<AddrEvent>,
    pub garps: Vec<Garp>,
    /// Directors cut off by a crash (label, when) and when watched again, if yet: what
    /// their old namespace reported in between (its agent still ran for a moment behind
    /// a downed link) never reached the network, and counts for nothing.
    pub cut: Vec<(String, Duration, Option<Duration>)>,
    /// Links of watched namespaces and of the bridge's going up or down, in order.
    pub links: Vec<LinkEvent>,
}

/// A link's state as the monitor read it: `up` is its UP flag (false once deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    pub at: Duration,
    pub nsid: u32,
    pub name: String,
    pub up: bool,
}

/// One VIP over one window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// The holder set at the window's start, then at every change inside it.
    pub timeline: Vec<(Duration, BTreeSet<String>)>,
    /// Longest interval with two or more holders.
    pub two_holders: Duration,
    /// Longest interval with no holder.
    pub no_holder: Duration,
    /// Times the holder set changed inside the window.
    pub changes: usize,
    /// Gratuitous ARPs for the VIP inside the window, per sender MAC.
    pub garps: BTreeMap<String, usize>,
    /// Start of the final stretch with exactly one holder that lasts to the window's
    /// end; `None` when the window does not end with exactly one holder.
    pub one_holder_since: Option<Duration>,
}

impl Summary {
    pub fn final_holders(&self) -> &BTreeSet<String> {
        &self.timeline.last().expect("a timeline has its start").1
    }

    /// Most holders at once inside the window.
    pub fn max_holders(&self) -> usize {
        self.timeline
            .iter()
            .map(|(_, h)| h.len())
            .max()
            .unwrap_or(0)
    }

    /// Fewest holders at once inside the window.
    pub fn min_holders(&self) -> usize {
        self.timeline
            .iter()
            .map(|(_, h)| h.len())
            .min()
            .unwrap_or(0)
    }

    /// `two_holders_ms=.. no_holder_ms=.. changes=..`, the figures the bench script reads.
    pub fn figures(&self) -> String {
        format!(
            "two_holders_ms={} no_holder_ms={} changes={}",
            fmt_ms(self.two_holders),
            fmt_ms(self.no_holder),
            self.changes
        )
    }
}

/// Milliseconds rounded up to a tenth (`0`, `0.4`, `12.1`): a 40 µs overlap prints as
/// 0.1, never as 0, so a printed 0 means none at all.
pub fn fmt_ms(d: Duration) -> String {
    let tenths = d.as_micros().div_ceil(100);
    if tenths.is_multiple_of(10) {
        format!("{}", tenths / 10)
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// Holder sets of `vip` over `[from, to]`, from the starting `initial` holders and
/// `events` (any order; only `vip`'s and those of `nodes`, when given, count).
pub fn analyse(
    initial: &BTreeSet<String>,
    events: &[AddrEvent],
    garps: &[Garp],
    vip: IpAddr,
    nodes: Option<&[&str]>,
    from: Duration,
    to: Duration,
) -> Summary {
    let counted = |node: &str| nodes.is_none_or(|n| n.contains(&node));
    let mut events: Vec<&AddrEvent> = events
        .iter()
        .filter(|e| e.addr == vip && counted(&e.node))
        .collect();
    events.sort_by_key(|e| e.at);
    let mut holders: BTreeSet<String> = initial.iter().filter(|n| counted(n)).cloned().collect();
    let apply = |holders: &mut BTreeSet<String>, e: &AddrEvent| {
        if e.added {
            holders.insert(e.node.clone())
        } else {
            holders.remove(&e.node)
        }
    };
    let mut rest = events.into_iter().peekable();
    while let Some(e) = rest.next_if(|e| e.at <= from) {
        apply(&mut holders, e);
    }
    let mut summary = Summary {
        timeline: vec![(from, holders.clone())],
        ..Summary::default()
    };
    for e in rest.take_while(|e| e.at <= to) {
        if apply(&mut holders, e) {
            summary.changes += 1;
            // Several changes at one instant are one step.
            if summary.timeline.last().is_some_and(|(at, _)| *at == e.at) {
                summary.timeline.pop();
            }
            summary.timeline.push((e.at, holders.clone()));
        }
    }
    // The final stretch of one-holder steps: {a} → {b} at one instant keeps the count
    // at one.
    summary.one_holder_since = summary
        .timeline
        .iter()
        .rev()
        .take_while(|(_, set)| set.len() == 1)
        .last()
        .map(|(at, _)| *at);
    // Longest runs, not single steps: {a,b} → {a,c} is one two-holder stretch.
    summary.two_holders = longest_run(&summary.timeline, to, |n| n >= 2);
    summary.no_holder = longest_run(&summary.timeline, to, |n| n == 0);
    for g in garps
        .iter()
        .filter(|g| g.vip == vip && g.at >= from && g.at <= to)
    {
        *summary.garps.entry(g.mac.clone()).or_default() += 1;
    }
    summary
}

/// Longest stretch of consecutive timeline steps whose holder count satisfies `when`.
fn longest_run(
    timeline: &[(Duration, BTreeSet<String>)],
    to: Duration,
    when: impl Fn(usize) -> bool,
) -> Duration {
    let (mut longest, mut since) = (Duration::ZERO, None);
    for (at, set) in timeline {
        match (when(set.len()), since) {
            (true, None) => since = Some(*at),
            (false, Some(start)) => {
                longest = longest.max(at.saturating_sub(start));
                since = None;
            }
            _ => {}
        }
    }
    if let Some(start) = since {
        longest = longest.max(to.saturating_sub(start));
    }
    longest
}

/// `[Deleted ]N: IFACE    inet|inet6 ADDR/LEN ...` from `ip -o monitor address` or
/// `ip -o addr show`: (added, interface index, address). The index, not the name:
/// `ip monitor all-nsid` prints the name its own namespace gives the index.
pub fn parse_addr_line(line: &str) -> Option<(bool, u32, IpAddr)> {
    let (added, line) = match line.strip_prefix("Deleted ") {
        Some(rest) => (false, rest),
        None => (true, line),
    };
    let mut words = line.split_whitespace();
    let index = words.next()?.strip_suffix(':')?.parse::<u32>().ok()?;
    words.next()?;
    let family = words.next()?;
    if family != "inet" && family != "inet6" {
        return None;
    }
    let addr = words.next()?.split('/').next()?.parse().ok()?;
    Some((added, index, addr))
}

/// `[Deleted ]N: NAME[@PEER]: <FLAGS> ...` from `ip -o monitor link`: the link's name
/// (from the message itself, not looked up) and whether it is up. `None` for other
/// lines (an address line has no `<FLAGS>`).
pub fn parse_link_line(line: &str) -> Option<(String, bool)> {
    let (deleted, line) = match line.strip_prefix("Deleted ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (index, rest) = line.split_once(": ")?;
    index.parse::<u32>().ok()?;
    let (name, rest) = rest.split_once(": ")?;
    let flags = rest.strip_prefix('<')?.split_once('>')?.0;
    let name = name.split('@').next()?;
    let up = !deleted && flags.split(',').any(|f| f == "UP");
    Some((name.to_owned(), up))
}

/// Splits `ip monitor all-nsid`'s `[nsid N]` prefix off a line: the namespace id, and
/// the rest. Lines from the monitor's own namespace carry none.
pub fn split_nsid(line: &str) -> (Option<u32>, &str) {
    line.strip_prefix("[nsid ")
        .and_then(|rest| {
            let (id, after) = rest.split_once(']')?;
            Some((id.parse().ok()?, after.trim_start()))
        })
        .map_or((None, line), |(id, rest)| (Some(id), rest))
}

/// `N: NAME[@PEER]: <FLAGS> ...` lines of `ip -o link show`: index to name.
pub fn parse_link_names(listing: &str) -> BTreeMap<u32, String> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let index = words.next()?.strip_suffix(':')?.parse().ok()?;
            let name = words.next()?.strip_suffix(':')?;
            Some((index, name.split('@').next()?.to_owned()))
        })
        .collect()
}

/// Microseconds since the Unix epoch, now.
fn unix_micros_now() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_micros()).expect("fits u64")
}

/// Splits `ip -ts` output's `[2026-12-01T08:46:56.544517] ` prefix (UTC, as the
/// recorder runs ip with TZ=UTC) off a line: the stamp in microseconds since the Unix
/// epoch, and the rest. Lines without a stamp come back whole.
pub fn split_stamp(line: &str) -> (Option<u64>, &str) {
    let parsed = line.strip_prefix('[').and_then(|rest| {
        let (stamp, after) = rest.split_once("] ")?;
        let (date, time) = stamp.split_once('T')?;
        let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
        let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
        let (hms, frac) = time.split_once('.')?;
        let mut hms = hms.split(':').map(|p| p.parse::<u64>().ok());
        let (h, min, sec) = (hms.next()??, hms.next()??, hms.next()??);
        let micros: u64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
        // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
        // days_from_civil).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
        let secs = days * 86_400 + h * 3600 + min * 60 + sec;
        Some((secs * 1_000_000 + micros, after))
    });
    match parsed {
        Some((us, rest)) => (Some(us), rest),
        None => (None, line),
    }
}

/// A gratuitous ARP from `tcpdump -n -e -t` output: a request whose target is its
/// sender (`SRC > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request
/// who-has V tell V, length 28`), or a reply announcing `V is-at MAC` to broadcast.
pub fn parse_garp_line(line: &str) -> Option<(String, IpAddr)> {
    let words: Vec<&str> = line
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .collect();
    let mac = words.first()?.to_string();
    let after = |key: &str| {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i + 1)?.parse::<IpAddr>().ok()
    };
    if let (Some(target), Some(sender)) = (after("who-has"), after("tell")) {
        return (target == sender).then_some((mac, target));
    }
    let i = words.iter().position(|w| *w == "Reply")?;
    let vip = words.get(i + 1)?.parse().ok()?;
    (words.get(i + 2) == Some(&"is-at") && words.get(2) == Some(&"ff:ff:ff:ff:ff:ff"))
        .then_some((mac, vip))
}

/// Records address changes on `iface` in each director namespace and GARPs on the
/// bridge, from [`Recorder::start`] until dropped.
pub struct Recorder {
    t0: Instant,
    /// `t0` on the wall clock (µs since the epoch), for ip's `-ts` stamps.
    t0_unix: u64,
    children: Vec<Child>,
    threads: Vec<JoinHandle<()>>,
    log: Arc<Mutex<Recording>>,
    /// The watched namespaces by their id in the recorder's namespace.
    watched: Arc<Mutex<BTreeMap<u32, Watched>>>,
}

/// A director namespace the monitor reports on.
struct Watched {
    label: String,
    ns: String,
    /// Interface names by index, listed when watching began and again at the first
    /// event on an unknown index (an interface re-created since).
    links: BTreeMap<u32, String>,
}

impl Watched {
    fn link_name(&mut self, index: u32) -> Option<&str> {
        if !self.links.contains_key(&index) {
            self.links.extend(link_names(&self.ns));
        }
        self.links.get(&index).map(String::as_str)
    }
}

/// The interfaces of namespace `ns` by index.
fn link_names(ns: &str) -> BTreeMap<u32, String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .expect("run ip link show");
    parse_link_names(&String::from_utf8_lossy(&out.stdout))
}

/// The id namespace `ns` has in this one, assigned first if it has none.
fn nsid_of(ns: &str) -> u32 {
    let listed = || -> Option<u32> {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("run ip netns list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let (name, rest) = line.split_once(' ')?;
                let id = rest.strip_prefix("(id: ")?.strip_suffix(')')?;
                (name == ns).then(|| id.parse().ok())?
            })
    };
    if let Some(id) = listed() {
        return id;
    }
    let status = Command::new("ip")
        .args(["netns", "set", ns, "auto"])
        .status()
        .expect("run ip netns set");
    assert!(status.success(), "ip netns set {ns} auto: {status}");
    listed().unwrap_or_else(|| panic!("namespace {ns} has no id after ip netns set"))
}

impl Recorder {
    /// `directors`: (label, namespace) pairs; `bridge_ns`: the namespace holding `br0`.
    /// Returns once tcpdump listens and the snapshot is taken.
    pub fn start(directors: &[(String, String)], iface: &str, bridge_ns: &str) -> Recorder {
        let mut recorder = Recorder {
            t0: Instant::now(),
            t0_unix: unix_micros_now(),
            children: Vec::new(),
            threads: Vec::new(),
            log: Arc::new(Mutex::new(Recording::default())),
            watched: Arc::default(),
        };
        // An id for the bridge's namespace, so that its links' events reach the monitor.
        nsid_of(bridge_ns);
        recorder.monitor(iface);
        for (label, ns) in directors {
            recorder.watch(label, ns);
        }
        let mut tcpdump = Command::new("ip")
            .args([
                "netns", "exec", bridge_ns, "tcpdump", "-l", "-n", "-e", "-t",
            ])
            .args(["-i", "br0", "arp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start tcpdump in {bridge_ns}: {e}"));
        let stdout = tcpdump.stdout.take().expect("piped stdout");
        let stderr = tcpdump.stderr.take().expect("piped stderr");
        recorder.children.push(tcpdump);
        let (log, t0) = (Arc::clone(&recorder.log), recorder.t0);
        recorder.threads.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = t0.elapsed();
                if let Some((mac, vip)) = parse_garp_line(&line) {
                    log.lock()
                        .expect("recording")
                        .garps
                        .push(Garp { at, mac, vip });
                }
            }
        }));
        wait_listening(stderr, &mut recorder.threads);
        // `ip monitor` gives no sign it has subscribed; it does within a few ms of
        // starting, and tcpdump's start took longer than that.
        std::thread::sleep(Duration::from_millis(100));
        let at = recorder.now();
        let mut initial = BTreeMap::new();
        for (label, ns) in directors {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "addr", "show", "dev", iface])
                .output()
                .expect("run ip addr show");
            let addrs: BTreeSet<IpAddr> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(parse_addr_line)
                .map(|(_, _, addr)| addr)
                .collect();
            initial.insert(label.clone(), addrs);
        }
        {
            let mut log = recorder.log.lock().expect("recording");
            log.initial = initial;
            log.initial_at = at;
        }
        recorder
    }

    /// Records the address changes of director `label` in namespace `ns` (again, after
    /// the namespace was re-created: a director's reboot).
    pub fn watch(&mut self, label: &str, ns: &str) {
        {
            let now = self.now();
            let mut log = self.log.lock().expect("recording");
            for (cut, _, back) in &mut log.cut {
                if cut == label && back.is_none() {
                    *back = Some(now);
                }
            }
        }
        // The reader waits on this lock, so nothing from `ns` goes unattributed.
        let mut watched = self.watched.lock().expect("watched namespaces");
        watched.retain(|_, w| w.label != label);
        let id = nsid_of(ns);
        let links = link_names(ns);
        watched.insert(
            id,
            Watched {
                label: label.to_owned(),
                ns: ns.to_owned(),
                links,
            },
        );
    }

    /// Starts the one address monitor and its reader: events on `iface` of the watched
    /// namespaces go into the recording.
    fn monitor(&mut self, iface: &str) {
        // `-ts`: ip stamps each message as it reads it from the kernel, so the reader
        // thread's own scheduling delay does not count. Real-time priority (SCHED_FIFO
        // 10) keeps the stamps close to the changes when three busy agents share two
        // cores; the order never depended on it.
        let mut child = Command::new("chrt")
            .env("TZ", "UTC")
            .args([
                "-f", "10", "ip", "-ts", "-o", "monitor", "address", "link", "all-nsid",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // A refused priority (chrt: "failed to set pid 0's policy") shows here.
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start chrt -f 10 ip monitor all-nsid: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        self.children.push(child);
        let (log, watched, t0, t0_unix, iface) = (
            Arc::clone(&self.log),
            Arc::clone(&self.watched),
            self.t0,
            self.t0_unix,
            iface.to_owned(),
        );
        self.threads.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let arrived = t0.elapsed();
                let (stamp, line) = split_stamp(&line);
                let at = stamp.map_or(arrived, |us| {
                    Duration::from_micros(us.saturating_sub(t0_unix))
                });
                let (Some(id), line) = split_nsid(line) else {
                    continue;
                };
                if let Some((name, up)) = parse_link_line(line) {
                    let event = LinkEvent {
                        at,
                        nsid: id,
                        name,
                        up,
                    };
                    log.lock().expect("recording").links.push(event);
                    continue;
                }
                let Some((added, index, addr)) = parse_addr_line(line) else {
                    continue;
                };
                let mut watched = watched.lock().expect("watched namespaces");
                let Some(w) = watched.get_mut(&id) else {
                    continue;
                };
                if w.link_name(index) == Some(iface.as_str()) {
                    log.lock().expect("recording").events.push(AddrEvent {
                        at,
                        node: w.label.clone(),
                        addr,
                        added,
                    });
                }
            }
        }));
    }

    /// Director `label` was cut off at `at` (a crash: its link went down, then its
    /// namespace and monitor went away): every address it held at `at` counts as
    /// removed then. The deletions the namespace's teardown reports come later and
    /// may already be recorded: they are not what the network saw.
    pub fn gone(&self, label: &str, at: Duration) {
        let mut log = self.log.lock().expect("recording");
        log.cut.push((label.to_owned(), at, None));
        for addr in log.held_at(label, at) {
            log.events.push(AddrEvent {
                at,
                node: label.to_owned(),
                addr,
                added: false,
            });
        }
    }

    /// When link `name` of namespace `ns` first went down (or was deleted) at or after
    /// `after`, as far as the monitor has read.
    pub fn link_down(&self, ns: &str, name: &str, after: Duration) -> Option<Duration> {
        let id = nsid_of(ns);
        self.log
            .lock()
            .expect("recording")
            .links
            .iter()
            .find(|l| l.nsid == id && l.name == name && !l.up && l.at >= after)
            .map(|l| l.at)
    }

    /// Time since the recorder started, on the clock of every recorded event.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Everything recorded so far; monitor lines older than the snapshot dropped.
    pub fn recording(&self) -> Recording {
        let mut rec = self.log.lock().expect("recording").clone();
        let at = rec.initial_at;
        rec.events.retain(|e| e.at > at);
        rec
    }

    /// [`analyse`] of `vip` over `[from, to]`, counting only `nodes` when given.
    pub fn analyse(
        &self,
        vip: IpAddr,
        nodes: Option<&[&str]>,
        from: Duration,
        to: Duration,
    ) -> Summary {
        self.recording().analyse(vip, nodes, from, to)
    }
}

impl Recording {
    /// Whether `e` reached the network: not from a director between its crash and its
    /// return (the removals [`Recorder::gone`] records at the crash instant count).
    fn seen(&self, e: &AddrEvent) -> bool {
        !self
            .cut
            .iter()
            .any(|(node, at, back)| *node == e.node && e.at > *at && back.is_none_or(|b| e.at < b))
    }

    /// The addresses `label` held at `at`: the snapshot's, then its events up to `at`.
    pub fn held_at(&self, label: &str, at: Duration) -> BTreeSet<IpAddr> {
        let mut held = self.initial.get(label).cloned().unwrap_or_default();
        let mut events: Vec<&AddrEvent> = self
            .events
            .iter()
            .filter(|e| e.node == label && e.at > self.initial_at && e.at <= at)
            .filter(|e| self.seen(e))
            .collect();
        events.sort_by_key(|e| e.at);
        for e in events {
            if e.added {
                held.insert(e.addr);
            } else {
                held.remove(&e.addr);
            }
        }
        held
    }

    pub fn analyse(
        &self,
        vip: IpAddr,
        nodes: Option<&[&str]>,
        from: Duration,
        to: Duration,
    ) -> Summary {
        let initial: BTreeSet<String> = self
            .initial
            .iter()
            .filter(|(_, addrs)| addrs.contains(&vip))
            .map(|(node, _)| node.clone())
            .collect();
        let seen: Vec<AddrEvent> = self
            .events
            .iter()
            .filter(|e| self.seen(e))
            .cloned()
            .collect();
        analyse(
            &initial,
            &seen,
            &self.garps,
            vip,
            nodes,
            from.max(self.initial_at),
            to,
        )
    }

    /// Every address that was on some node at some point (snapshot or event).
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.initial
            .values()
            .flatten()
            .copied()
            .chain(self.events.iter().map(|e| e.addr))
            .collect()
    }
}

/// Waits for tcpdump's "listening on" line (it captures from then on), then drains
/// the rest of its stderr in a thread so it never blocks on a full pipe. Should
/// tcpdump exit first, the panic quotes what it said.
fn wait_listening(stderr: ChildStderr, threads: &mut Vec<JoinHandle<()>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    threads.push(std::thread::spawn(move || {
        let mut said = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(Ok(()));
            } else {
                said.push(line);
            }
        }
        let _ = tx.send(Err(said.join(" / ")));
    }));
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(said)) => panic!("tcpdump on br0 exited: {said:?}"),
        Err(e) => panic!("tcpdump not listening on br0 within 10 s: {e}"),
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The pipes closed with their writers: every reader thread ends.
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_at_ignores_what_was_recorded_after() {
        let vip: IpAddr = "198.51.100.11".parse().unwrap();
        let at = |ms| Duration::from_millis(ms);
        let rec = Recording {
            initial: BTreeMap::from([("lb2".to_owned(), BTreeSet::from([vip]))]),
            initial_at: at(10),
            // The namespace's teardown reports the deletion after the crash.
            events: vec![AddrEvent {
                at: at(300),
                node: "lb2".into(),
                addr: vip,
                added: false,
            }],
            garps: Vec::new(),
            cut: Vec::new(),
            links: Vec::new(),
        };
        assert_eq!(rec.held_at("lb2", at(100)), BTreeSet::from([vip]));
        assert!(rec.held_at("lb2", at(300)).is_empty());
        assert!(rec.held_at("lb1", at(100)).is_empty());
    }

    #[test]
    fn a_crashed_directors_old_namespace_counts_for_nothing_until_it_returns() {
        let vip: IpAddr = "198.51.100.11".parse().unwrap();
        let at = |ms| Duration::from_millis(ms);
        let event = |ms, node: &str, added| AddrEvent {
            at: at(ms),
            node: node.into(),
            addr: vip,
            added,
        };
        let rec = Recording {
            initial: BTreeMap::from([("lb2".to_owned(), BTreeSet::from([vip]))]),
            initial_at: at(10),
            events: vec![
                // Crash at 100 (the removal `gone` records), lb1 takes over at 200.
                event(100, "lb2", false),
                event(200, "lb1", true),
                // lb2's agent, behind its downed link, adds it again: never on the wire.
                event(150, "lb2", true),
                // Back at 1000 (watched again), handed the group at 1200.
                event(1200, "lb1", false),
                event(1201, "lb2", true),
            ],
            garps: Vec::new(),
            cut: vec![("lb2".into(), at(100), Some(at(1000)))],
            links: Vec::new(),
        };
        let s = rec.analyse(vip, None, at(50), at(2000));
        assert_eq!(s.two_holders, Duration::ZERO, "{:?}", s.timeline);
        assert_eq!(s.no_holder, at(100));
        assert_eq!(rec.held_at("lb2", at(500)), BTreeSet::new());
        assert_eq!(rec.held_at("lb2", at(1500)), BTreeSet::from([vip]));
    }
}

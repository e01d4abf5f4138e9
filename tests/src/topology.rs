//! A DR load-balancing topology made of network namespaces on one bridge: directors
//! `lb1..lbN`, real servers `rs1..rsM` (each serving a page that names itself, set up
//! by `lvs-agent realserver up` from a DR service per VIP: the VIPs on `lo`,
//! `arp_ignore=1`/`arp_announce=2` as in the seed), and a `client`
//! with an on-link route to every VIP, so a director that owns a VIP answers ARP
//! for it and real servers reply to the client directly.
//!
//! The bridge lives in its own namespace (`sw`), so a topology touches nothing in
//! the namespace it is built from: the same code runs in the VM and on a host
//! (with a name `prefix` so concurrent host runs do not collide). Dropping the
//! [`Topology`] kills its web servers and deletes its namespaces.
use crate::fetch::FetchSummary;
use crate::shell::Shell;
use anyhow::{bail, Context, Result};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Addresses and names of a topology.
#[derive(Debug, Clone)]
pub struct TopologySpec {
    /// Prepended to every namespace name (empty in the VM).
    pub prefix: String,
    /// Prefix length of the shared LAN the nodes' `eth0` are on.
    pub lan_prefix_len: u8,
    /// `lb1`, `lb2`, ... in order.
    pub directors: Vec<Ipv4Addr>,
    /// `rs1`, `rs2`, ... in order.
    pub real_servers: Vec<Ipv4Addr>,
    pub client: Ipv4Addr,
    /// Configured on every real server's `lo`; the client routes them on-link.
    pub vips: Vec<Ipv4Addr>,
    pub http_port: u16,
    /// Size of each real server's page (a large page makes DR visible in counters).
    pub page_bytes: usize,
}

impl TopologySpec {
    /// The seed's addresses (in the VM): lb1 172.16.0.10, lb2 .11, rs1 .100, rs2 .101,
    /// client .200, VIPs 10.0.0.10 and 10.0.0.11.
    pub fn seed() -> Self {
        Self::with_addresses([172, 16, 0], [10, 0, 0], "", 2, 2)
    }

    /// Documentation addresses for runs on a host (192.0.2.0/24 LAN, VIPs in
    /// 198.51.100.0/24), same host numbers as [`TopologySpec::seed`].
    pub fn documentation(prefix: &str, directors: u8, real_servers: u8) -> Self {
        Self::with_addresses([192, 0, 2], [198, 51, 100], prefix, directors, real_servers)
    }

    fn with_addresses(lan: [u8; 3], vip: [u8; 3], prefix: &str, lbs: u8, rss: u8) -> Self {
        let lan_host = |h: u8| Ipv4Addr::new(lan[0], lan[1], lan[2], h);
        TopologySpec {
            prefix: prefix.to_string(),
            lan_prefix_len: 24,
            directors: (0..lbs).map(|i| lan_host(10 + i)).collect(),
            real_servers: (0..rss).map(|i| lan_host(100 + i)).collect(),
            client: lan_host(200),
            vips: [10, 11]
                .map(|h| Ipv4Addr::new(vip[0], vip[1], vip[2], h))
                .to_vec(),
            http_port: 80,
            page_bytes: 40 * 1024,
        }
    }

    /// Node names with their LAN address: directors, real servers, client.
    pub fn nodes(&self) -> Vec<(String, Ipv4Addr)> {
        let numbered = |kind: &str, addrs: &[Ipv4Addr]| -> Vec<(String, Ipv4Addr)> {
            addrs
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("{kind}{}", i + 1), *a))
                .collect()
        };
        let mut nodes = numbered("lb", &self.directors);
        nodes.extend(numbered("rs", &self.real_servers));
        nodes.push(("client".to_string(), self.client));
        nodes
    }
}

/// A built topology. Namespace names are `prefix + node` (see [`Topology::ns`]).
#[derive(Debug)]
pub struct Topology {
    spec: TopologySpec,
    fetch_tool: PathBuf,
    www: PathBuf,
    servers: Vec<Child>,
    namespaces: Vec<String>,
    /// Next unused client source port (see [`crate::fetch`]).
    next_port: Cell<u16>,
}

const SWITCH: &str = "sw";
/// Client source ports are handed out upwards from here, never reused.
const FIRST_SOURCE_PORT: u16 = 10000;

impl Topology {
    /// Builds `spec`. `fetch_tool` is the `lvs-lab-guest` binary (its `fetch`
    /// subcommand is the client); `lvs-agent` is next to it (the workspace's binaries
    /// are built together). On error, what was built is torn down.
    pub fn build(spec: TopologySpec, fetch_tool: &Path, sh: &mut Shell) -> Result<Topology> {
        let www =
            std::env::temp_dir().join(format!("{}lvs-lab-www-{}", spec.prefix, std::process::id()));
        let mut topo = Topology {
            spec,
            fetch_tool: fetch_tool.to_path_buf(),
            www,
            servers: Vec::new(),
            namespaces: Vec::new(),
            next_port: Cell::new(FIRST_SOURCE_PORT),
        };
        topo.wire(sh)?;
        topo.configure_real_servers(sh)?;
        topo.configure_client(sh)?;
        for (i, _) in topo.spec.directors.iter().enumerate() {
            let lb = topo.ns(&format!("lb{}", i + 1));
            sh.run_in(&lb, "sysctl -qw net.ipv4.ip_forward=1")?;
        }
        topo.wait_for_servers(sh)?;
        Ok(topo)
    }

    pub fn spec(&self) -> &TopologySpec {
        &self.spec
    }

    /// The namespace of `node` (`lb1`, `rs2`, `client`, ...).
    pub fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.spec.prefix)
    }

    /// `count` fresh-connection fetches of `http://addr:http_port/` from `node`,
    /// each from a source port this topology has not used before.
    pub fn fetch(
        &self,
        sh: &mut Shell,
        node: &str,
        addr: Ipv4Addr,
        count: u16,
    ) -> Result<FetchSummary> {
        let first = self.next_port.get();
        let next = first
            .checked_add(count)
            .context("topology ran out of client source ports")?;
        self.next_port.set(next);
        let tool = self.fetch_tool.to_string_lossy();
        let target = format!("{addr}:{}", self.spec.http_port);
        let (count, first) = (count.to_string(), first.to_string());
        let ran = sh.exec(
            Some(&self.ns(node)),
            &[&tool, "fetch", &target, &count, &first],
        )?;
        if !ran.success() {
            bail!(
                "fetch from {node} to {target} exited {:?}: {}",
                ran.code,
                ran.stderr.trim()
            );
        }
        ran.stdout.parse()
    }

    /// The directory real server `node`'s web server serves.
    pub fn www(&self, node: &str) -> PathBuf {
        self.www.join(node)
    }

    /// Bytes sent so far by `node`'s `eth0`.
    pub fn tx_bytes(&self, sh: &mut Shell, node: &str) -> Result<u64> {
        let out = sh.run_in(
            &self.ns(node),
            "cat /sys/class/net/eth0/statistics/tx_bytes",
        )?;
        out.trim()
            .parse()
            .with_context(|| format!("{node} eth0 tx_bytes: {out:?}"))
    }

    fn wire(&mut self, sh: &mut Shell) -> Result<()> {
        let sw = self.add_namespace(sh, SWITCH)?;
        sh.run(&format!(
            "ip -n {sw} link add br0 type bridge mcast_snooping 0"
        ))?;
        sh.run(&format!("ip -n {sw} link set br0 up"))?;
        for (node, addr) in self.spec.nodes() {
            self.add_namespace(sh, &node)?;
            self.plug(sh, &node, addr)?;
        }
        Ok(())
    }

    /// `node`'s eth0 on the bridge with its LAN address, up.
    fn plug(&self, sh: &mut Shell, node: &str, addr: Ipv4Addr) -> Result<()> {
        let (sw, ns) = (self.ns(SWITCH), self.ns(node));
        sh.run(&format!(
            "ip -n {sw} link add {node} type veth peer name eth0 netns {ns}"
        ))?;
        sh.run(&format!("ip -n {sw} link set {node} master br0 up"))?;
        sh.run(&format!("ip -n {ns} link set lo up"))?;
        let len = self.spec.lan_prefix_len;
        sh.run(&format!("ip -n {ns} addr add {addr}/{len} dev eth0"))?;
        sh.run(&format!("ip -n {ns} link set eth0 up"))?;
        Ok(())
    }

    /// Director `node` (`lb1`, ...) crashes: its link goes down on the bridge side
    /// first (nothing reaches it from then on, as after a power cut), then every
    /// process in its namespace is killed (SIGKILL) and the namespace deleted, taking
    /// its addresses, IPVS table and sync daemons with it, as a reboot does. (Deleted
    /// with the link up, the namespace would answer with resets while IPVS is torn
    /// down before its addresses.)
    pub fn crash(&self, sh: &mut Shell, node: &str) -> Result<()> {
        let ns = self.ns(node);
        sh.run(&format!("ip -n {} link set {node} down", self.ns(SWITCH)))?;
        self.kill_all(sh, node, "KILL")?;
        // The veth pair goes with its switch end at once; left to the namespace's
        // deletion, which the kernel finishes later, it can still be there when
        // `boot` plugs the node in again ("File exists").
        sh.run(&format!("ip -n {} link del {node}", self.ns(SWITCH)))?;
        sh.run(&format!("ip netns del {ns}"))?;
        Ok(())
    }

    /// Sends `signal` (e.g. "TERM") to every process in `node`'s namespace. A process
    /// that exits between the listing and the signal (a short-lived child, a probe) is
    /// no failure.
    pub fn kill_all(&self, sh: &mut Shell, node: &str, signal: &str) -> Result<()> {
        let pids = sh.run(&format!("ip netns pids {}", self.ns(node)))?;
        for pid in pids.split_whitespace() {
            let _ = sh.run(&format!("kill -{signal} {pid}"));
        }
        Ok(())
    }

    /// Director `node` boots again after [`Topology::crash`]: a fresh namespace
    /// plugged into the bridge, forwarding on; nothing else runs in it yet.
    pub fn boot(&self, sh: &mut Shell, node: &str) -> Result<()> {
        let addr = self
            .spec
            .nodes()
            .into_iter()
            .find(|(name, _)| name == node)
            .map(|(_, addr)| addr)
            .with_context(|| format!("no node {node} in the topology"))?;
        let ns = self.ns(node);
        sh.run(&format!("ip netns add {ns}"))?;
        self.plug(sh, node, addr)?;
        sh.run_in(&ns, "sysctl -qw net.ipv4.ip_forward=1")?;
        Ok(())
    }

    /// The real-server side of the DR services: one per VIP on `http_port`, every
    /// real server behind it, as an operator writes it for `lvs-agent realserver`.
    fn real_server_config(&self) -> String {
        let mut cluster = "[cluster]\nname = \"lab\"\n".to_owned();
        for vip in &self.spec.vips {
            cluster += &format!(
                "\n[[service]]\nvip = \"{vip}\"\nport = {}\nforwarding = \"dr\"\n",
                self.spec.http_port
            );
            for rs in &self.spec.real_servers {
                cluster += &format!(
                    "[[service.real_server]]\naddress = \"{rs}\"\nport = {}\n",
                    self.spec.http_port
                );
            }
        }
        cluster
    }

    fn configure_real_servers(&mut self, sh: &mut Shell) -> Result<()> {
        let agent = self.fetch_tool.with_file_name("lvs-agent");
        if !agent.exists() {
            bail!(
                "{} not found: the topology sets its real servers up with `lvs-agent realserver` \
                 (cargo build --workspace --bins)",
                agent.display()
            );
        }
        std::fs::create_dir_all(&self.www)
            .with_context(|| format!("create {}", self.www.display()))?;
        let config = self.www.join("realserver.toml");
        std::fs::write(&config, self.real_server_config())?;
        for (i, _) in self.spec.real_servers.clone().iter().enumerate() {
            let node = format!("rs{}", i + 1);
            let ns = self.ns(&node);
            let state = self.www.join(format!("{node}.state"));
            sh.run_in(
                &ns,
                &format!(
                    "{} realserver up -c {} --state {}",
                    agent.display(),
                    config.display(),
                    state.display()
                ),
            )?;
            let dir = self.www.join(&node);
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            std::fs::write(dir.join("index.html"), page(&node, self.spec.page_bytes))?;
            let port = self.spec.http_port.to_string();
            sh.note(format!(
                "[{ns}]# busybox httpd -f -p {port} -h {} &",
                dir.display()
            ));
            let child = Command::new("ip")
                .args([
                    "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", &port, "-h",
                ])
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("start busybox httpd in {ns}"))?;
            self.servers.push(child);
        }
        Ok(())
    }

    fn configure_client(&mut self, sh: &mut Shell) -> Result<()> {
        let client = self.ns("client");
        for vip in &self.spec.vips {
            sh.run(&format!("ip -n {client} route add {vip}/32 dev eth0"))?;
        }
        Ok(())
    }

    /// Each real server answers the client directly (proves the LAN and httpd).
    fn wait_for_servers(&self, sh: &mut Shell) -> Result<()> {
        for (i, addr) in self.spec.real_servers.iter().enumerate() {
            let node = format!("rs{}", i + 1);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let got = self.fetch(sh, "client", *addr, 1)?;
                if got.from(&node) == 1 {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{node} ({addr}) does not answer the client: {got}");
                }
                sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    fn add_namespace(&mut self, sh: &mut Shell, node: &str) -> Result<String> {
        let ns = self.ns(node);
        sh.run(&format!("ip netns add {ns}"))?;
        self.namespaces.push(ns.clone());
        Ok(ns)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace also removes its veths, addresses and IPVS state.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.www);
    }
}

/// A page of `size` bytes whose first line names `node` (see [`crate::fetch`]).
fn page(node: &str, size: usize) -> String {
    let mut text = format!("{}{node}\n", crate::fetch::SERVED_BY);
    let filler = "lvs-mesh lab page filler: the director must not see these bytes in DR.\n";
    while text.len() < size {
        text.push_str(filler);
    }
    text.truncate(size.max(text.find('\n').unwrap_or(0) + 1));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_addresses_and_names() {
        let spec = TopologySpec::seed();
        let nodes = spec.nodes();
        let named = |n: &str| nodes.iter().find(|(name, _)| name == n).unwrap().1;
        assert_eq!(named("lb1"), Ipv4Addr::new(172, 16, 0, 10));
        assert_eq!(named("lb2"), Ipv4Addr::new(172, 16, 0, 11));
        assert_eq!(named("rs1"), Ipv4Addr::new(172, 16, 0, 100));
        assert_eq!(named("rs2"), Ipv4Addr::new(172, 16, 0, 101));
        assert_eq!(named("client"), Ipv4Addr::new(172, 16, 0, 200));
        assert_eq!(
            spec.vips,
            [Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 11)]
        );
        let doc = TopologySpec::documentation("t1-", 3, 1);
        assert_eq!(doc.directors[2], Ipv4Addr::new(192, 0, 2, 12));
        assert_eq!(doc.vips[0], Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(doc.nodes().len(), 5);
    }

    #[test]
    fn page_names_its_server_and_has_the_size() {
        let p = page("rs2", 40 * 1024);
        assert!(p.starts_with("served-by rs2\n"));
        assert_eq!(p.len(), 40 * 1024);
        assert_eq!(page("rs1", 0), "served-by rs1\n");
    }
}

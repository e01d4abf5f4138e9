//! `deploy/bench/control`: the control API's cost, on the host in network namespaces
//! (192.0.2.0/24 on one bridge, no route out). Two agents (lb1 holds the VIP group,
//! lb2 is its heir and hears its heartbeats every 100 ms); calls go to lb1.
//!
//! Phases, each timed by the clock, none asserted: idle (the baseline), `status` calls
//! back to back over the Unix socket, over QUIC with a new connection per call (what
//! `lvs-cli` does; 16 callers side by side) and over one QUIC connection, then 100
//! calls/s over QUIC. Per phase:
//! calls per second, lb1's CPU % (from /proc), and the longest gap between lb1's
//! gossip datagrams as lb2's interface sees them (tcpdump): heartbeats go every 100 ms,
//! so a gap above that is heartbeat timing disturbed.
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use lvs_control::client::{self, Session, Target};
use lvs_control::pki::{self, Role};
use lvs_control::quic::TlsFiles;
use lvs_proto::v1::{control_request::Request, StatusRequest};

const PREFIX: &str = "lvscb";
const PHASE: Duration = Duration::from_secs(10);
const PACED_RATE: u32 = 100;
/// Callers side by side in the connection-per-call phase.
const NEW_CONNECTION_CALLERS: usize = 16;

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn ns(i: usize) -> String {
    format!("{PREFIX}-{i}")
}

fn teardown() {
    for name in [ns(1), ns(2), format!("{PREFIX}-br")] {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
    }
}

fn topology() -> Result<()> {
    teardown();
    let br = format!("{PREFIX}-br");
    ip(&["netns", "add", &br])?;
    ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &br, "link", "set", "br0", "up"])?;
    for i in 1..=2 {
        let n = ns(i);
        ip(&["netns", "add", &n])?;
        let port = format!("p{i}");
        ip(&[
            "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &n,
        ])?;
        ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &n,
            "addr",
            "add",
            &format!("192.0.2.{i}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &n, "link", "set", "eth0", "up"])?;
        ip(&["-n", &n, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

struct Agents {
    children: Vec<Child>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        teardown();
    }
}

fn write_files(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let ca = pki::new_ca("bench")?;
    pki::write(dir, "ca", &ca)?;
    for name in ["lb1", "lb2"] {
        pki::write(
            dir,
            name,
            &pki::issue(&ca.cert_pem, &ca.key_pem, name, Role::Node, 1)?,
        )?;
    }
    pki::write(
        dir,
        "ops",
        &pki::issue(&ca.cert_pem, &ca.key_pem, "ops", Role::Operator, 1)?,
    )?;
    let key = dir.join("cluster.key");
    std::fs::write(&key, "5a".repeat(32))?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::fs::write(
        dir.join("cluster.toml"),
        "[cluster]\nname = \"bench\"\n[[vip_group]]\nname = \"g1\"\nvrrp_id = 51\n\
         addresses = [\"198.51.100.1/24\"]\npriorities = { lb1 = 150 }\n",
    )?;
    for i in 1..=2 {
        let d = dir.display();
        std::fs::write(
            dir.join(format!("lb{i}.toml")),
            format!(
                "[node]\nid = \"lb{i}\"\ninterface = \"eth0\"\naddress = \"192.0.2.{i}\"\n\
                 syncid = {i}\njoin = [\"192.0.2.{}:7946\"]\ncluster_key_files = [\"{d}/cluster.key\"]\n\
                 control_socket = \"{d}/lb{i}.sock\"\n\
                 control_tls = {{ ca = \"{d}/ca.pem\", cert = \"{d}/lb{i}.pem\", key = \"{d}/lb{i}.key\" }}\n",
                3 - i
            ),
        )?;
    }
    Ok(())
}

fn start_agents(dir: &Path) -> Result<Agents> {
    let agent = std::env::current_exe()?.with_file_name("lvs-agent");
    let mut agents = Agents {
        children: Vec::new(),
    };
    for i in 1..=2 {
        let log = std::fs::File::create(dir.join(format!("lb{i}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns(i)])
            .arg(&agent)
            .args(["run", "-c"])
            .arg(dir.join(format!("lb{i}.toml")))
            .arg("-c")
            .arg(dir.join("cluster.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start lvs-agent")?;
        agents.children.push(child);
    }
    Ok(agents)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("stat")? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// Arrival times of lb1's gossip datagrams at lb2.
fn capture() -> Result<(Child, Arc<Mutex<Vec<f64>>>)> {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns(2),
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-tt",
            "-l",
        ])
        .args(["udp and src host 192.0.2.1 and src port 7946"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start tcpdump (Debian package tcpdump)")?;
    let stdout = child.stdout.take().context("tcpdump stdout")?;
    let times = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&times);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(t) = line.split_whitespace().next().and_then(|w| w.parse().ok()) {
                sink.lock().expect("times").push(t);
            }
        }
    });
    Ok((child, times))
}

fn longest_gap_ms(times: &Arc<Mutex<Vec<f64>>>, from: f64, to: f64) -> f64 {
    let times = times.lock().expect("times");
    let inside: Vec<f64> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    inside
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .fold(0.0, f64::max)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn status() -> Request {
    Request::Status(StatusRequest {})
}

#[derive(Clone, Copy)]
enum Load {
    Idle,
    Unix,
    QuicNew,
    QuicSession,
    Paced,
}

/// Runs `load` for `PHASE` inside lb2's namespace (QUIC) or on the host (socket);
/// returns the calls made.
fn run_load(load: Load, dir: PathBuf) -> Result<u64> {
    std::thread::spawn(move || -> Result<u64> {
        let file = std::fs::File::open(format!("/run/netns/{}", ns(2)))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let addr: SocketAddr = "192.0.2.1:7947".parse()?;
            let tls = TlsFiles {
                ca: dir.join("ca.pem"),
                cert: dir.join("ops.pem"),
                key: dir.join("ops.key"),
            };
            let timeout = Duration::from_secs(10);
            let end = Instant::now() + PHASE;
            let mut calls = 0u64;
            match load {
                Load::Idle => tokio::time::sleep(PHASE).await,
                Load::Unix => {
                    let target = Target::Socket(dir.join("lb1.sock"));
                    while Instant::now() < end {
                        client::call(&target, status(), timeout).await?;
                        calls += 1;
                    }
                }
                Load::QuicNew => {
                    // Each caller waits out QUIC's draining period after its call
                    // (as lvs-cli does, so the agent is told at once): 16 of them
                    // side by side measure the agent, not that wait.
                    let target = Target::Quic { addr, tls };
                    let callers = (0..NEW_CONNECTION_CALLERS).map(|_| async {
                        let mut n = 0u64;
                        while Instant::now() < end {
                            client::call(&target, status(), timeout).await?;
                            n += 1;
                        }
                        anyhow::Ok(n)
                    });
                    for n in futures::future::join_all(callers).await {
                        calls += n?;
                    }
                }
                Load::QuicSession | Load::Paced => {
                    let session = Session::open(addr, &tls).await?;
                    let mut tick = tokio::time::interval(Duration::from_secs(1) / PACED_RATE);
                    while Instant::now() < end {
                        if matches!(load, Load::Paced) {
                            tick.tick().await;
                        }
                        session.call(status()).await?;
                        calls += 1;
                    }
                    session.close().await;
                }
            }
            Ok(calls)
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("load thread panicked"))?
}

fn main() -> Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "control-bench needs root (namespaces)"
    );
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id()));
    topology()?;
    write_files(&dir)?;
    let agents = start_agents(&dir)?;
    // lb1 reports lb2 live and holds g1: heartbeats flow.
    let target = Target::Socket(dir.join("lb1.sock"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = rt
            .block_on(client::call(&target, status(), Duration::from_secs(2)))
            .ok()
            .and_then(|r| match r {
                lvs_proto::v1::control_reply::Reply::Status(s) => Some(s),
                _ => None,
            })
            .is_some_and(|s| {
                s.members.iter().filter(|m| m.live).count() == 2 && s.groups.iter().all(|g| g.held)
            });
        if ready {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agents did not form a cluster (logs in {})",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The agent process is `ip netns exec`'s exec: the child itself.
    let pid = agents.children[0].id();
    let (mut tcpdump, times) = capture()?;
    std::thread::sleep(Duration::from_secs(1));
    let hz = ticks_per_second();
    println!(
        "| phase | status calls/s | lb1 CPU % | longest gap between lb1's gossip datagrams, ms |"
    );
    println!("|---|---|---|---|");
    for (name, load) in [
        ("idle (baseline)", Load::Idle),
        ("Unix socket, back to back", Load::Unix),
        ("QUIC, a connection per call (16 callers)", Load::QuicNew),
        ("QUIC, one connection", Load::QuicSession),
        ("QUIC, 100 calls/s", Load::Paced),
    ] {
        let (t0, c0, w0) = (Instant::now(), cpu_ticks(pid)?, unix_now());
        let calls = run_load(load, dir.clone())?;
        let (secs, c1, w1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid)?, unix_now());
        std::thread::sleep(Duration::from_millis(300));
        let cpu = (c1 - c0) as f64 / hz / secs * 100.0;
        println!(
            "| {name} | {:.0} | {cpu:.1} | {:.0} |",
            calls as f64 / secs,
            longest_gap_ms(&times, w0, w1)
        );
    }
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

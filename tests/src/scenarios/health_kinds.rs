//! Every check kind and pool rule, run by lvs-agent on lb1 of the seed topology against
//! real servers in rs1/rs2 (delay_loop 1, retry 1, delay_before_retry 1,
//! connect_timeout 1):
//! - `tcp_check` with `inhibit_on_failure` (10.0.0.10:80): a failed rs1 stays with
//!   weight 0;
//! - `ssl_get` (10.0.0.10:443) against a TLS server with a self-signed certificate the
//!   test makes (`lvs-lab-guest tls-server`);
//! - `ssl_get` with `tls_ca` (10.0.0.10:444) against a TLS server whose certificate for
//!   `www.lab.invalid` the test's CA signed: verified, up; the same with another CA's
//!   file (10.0.0.10:445): no real server ever passes, `status` says why;
//! - `misc_check` with `misc_dynamic` (10.0.0.10:81): a script exits with what a file
//!   says (0 up, 1 down, 5 up with weight 3);
//! - `dns_check` (udp 10.0.0.10:53) against a DNS responder (`lvs-lab-guest
//!   dns-server`) for `www.lab.invalid` A;
//! - quorum 3 with a sorry server (10.0.0.10:8080, rs1 weight 1, rs2 weight 2): rs1
//!   down leaves weight 2, quorum is lost, the sorry server replaces both;
//! - rs1 alone with a sorry server (10.0.0.10:8081): every real server down, the
//!   sorry server serves;
//! - quorum 3, hysteresis 1 (10.0.0.10:8082, rs1 weight 2, rs2 weight 1): rs1 down
//!   leaves 1, below 2: lost; rs1 back brings 3, below 4: the sorry server stays.
//!
//! rs1 fails everything at once (its servers killed, its script set to exit 1); each
//! service's table must change within the check's bound; new connections to :80 keep
//! succeeding on rs2; then rs1 recovers (servers started, script exits 5) and every
//! table is back. Prints one `health-kinds:` line per service with the times.
use crate::scenario::Ctx;
use crate::scenarios::agent::{cluster_key, wait_until, Agent, Background};
use crate::scenarios::agent_restart::node_toml;
use crate::scenarios::probe::{holds, quiet};
use crate::servers::Pki;
use crate::topology::{Topology, TopologySpec};
use anyhow::Result;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A check's worst time to see a failure at these settings: delay_loop + retry ×
/// delay_before_retry + (retry + 1) attempts of connect_timeout, plus a second for the
/// VM (TCG) to schedule the probes and the netlink write.
const OUT_BOUND: Duration = Duration::from_secs(1 + 1 + 2 + 1);
/// Back at the next check: delay_loop + one attempt, plus the VM's second.
const BACK_BOUND: Duration = Duration::from_secs(1 + 1 + 1);
const EXIT_FILE: &str = "/tmp/health-kinds-rs1-exit";
const RS1: &str = "172.16.0.100";
const RS2: &str = "172.16.0.101";
const SORRY: &str = "172.16.0.101:9999";

/// Each service's real servers and weights, by `ipvsadm -L -n` service line.
type Tables = BTreeMap<String, BTreeMap<String, u32>>;

/// One service: its table at start, once rs1 failed, and once rs1 recovered.
struct Expect {
    service: &'static str,
    what: &'static str,
    start: &'static [(&'static str, u32)],
    down: &'static [(&'static str, u32)],
    back: &'static [(&'static str, u32)],
}

const EXPECT: &[Expect] = &[
    Expect {
        service: "TCP 10.0.0.10:80",
        what: "tcp_check, inhibit_on_failure",
        start: &[("172.16.0.100:80", 1), ("172.16.0.101:80", 2)],
        down: &[("172.16.0.100:80", 0), ("172.16.0.101:80", 2)],
        back: &[("172.16.0.100:80", 1), ("172.16.0.101:80", 2)],
    },
    Expect {
        service: "TCP 10.0.0.10:443",
        what: "ssl_get",
        start: &[("172.16.0.100:443", 1), ("172.16.0.101:443", 1)],
        down: &[("172.16.0.101:443", 1)],
        back: &[("172.16.0.100:443", 1), ("172.16.0.101:443", 1)],
    },
    Expect {
        service: "TCP 10.0.0.10:444",
        what: "ssl_get, tls_ca",
        start: &[("172.16.0.100:444", 1), ("172.16.0.101:444", 1)],
        down: &[("172.16.0.101:444", 1)],
        back: &[("172.16.0.100:444", 1), ("172.16.0.101:444", 1)],
    },
    Expect {
        service: "TCP 10.0.0.10:445",
        what: "ssl_get, tls_ca of a CA that signed nothing",
        start: &[],
        down: &[],
        back: &[],
    },
    Expect {
        service: "TCP 10.0.0.10:81",
        what: "misc_check, misc_dynamic",
        start: &[("172.16.0.100:81", 3), ("172.16.0.101:81", 1)],
        down: &[("172.16.0.101:81", 1)],
        back: &[("172.16.0.100:81", 3), ("172.16.0.101:81", 1)],
    },
    Expect {
        service: "UDP 10.0.0.10:53",
        what: "dns_check",
        start: &[("172.16.0.100:53", 1), ("172.16.0.101:53", 1)],
        down: &[("172.16.0.101:53", 1)],
        back: &[("172.16.0.100:53", 1), ("172.16.0.101:53", 1)],
    },
    Expect {
        service: "TCP 10.0.0.10:8080",
        what: "quorum 3, sorry server",
        start: &[("172.16.0.100:8080", 1), ("172.16.0.101:8080", 2)],
        down: &[(SORRY, 1)],
        back: &[("172.16.0.100:8080", 1), ("172.16.0.101:8080", 2)],
    },
    Expect {
        service: "TCP 10.0.0.10:8081",
        what: "every real server down, sorry server",
        start: &[("172.16.0.100:8081", 1)],
        down: &[(SORRY, 1)],
        back: &[("172.16.0.100:8081", 1)],
    },
    Expect {
        service: "TCP 10.0.0.10:8082",
        what: "quorum 3, hysteresis 1",
        start: &[("172.16.0.100:8082", 2), ("172.16.0.101:8082", 1)],
        // Weight 1 up, below 3 - 1: quorum lost.
        down: &[(SORRY, 1)],
        // Weight 3 up, below 3 + 1: not gained back, the sorry server stays.
        back: &[(SORRY, 1)],
    },
];

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let topo = ctx.topology(TopologySpec::seed())?;
    let key = cluster_key(ctx)?;
    std::fs::write(EXIT_FILE, "5")?;
    let dir = std::env::temp_dir().join("health-kinds");
    std::fs::create_dir_all(&dir)?;
    let node = dir.join("lb1.toml");
    std::fs::write(
        &node,
        node_toml(1, "172.16.0.10") + &format!("join = []\ncluster_key_files = [\"{key}\"]\n"),
    )?;
    let pki = Pki::make(&dir)?;
    let cluster = dir.join("cluster.toml");
    std::fs::write(&cluster, cluster_toml(&pki))?;
    let mut servers = Background::default();
    start_servers(ctx, &topo, &mut servers, "rs2", &pki)?;
    start_servers(ctx, &topo, &mut servers, "rs1", &pki)?;
    let agent = Agent::start(
        ctx,
        Some(&topo.ns("lb1")),
        &node,
        &["-c", &cluster.to_string_lossy()],
    )?;
    let lb1 = topo.ns("lb1");
    let ok = wait_until(Duration::from_secs(60), || {
        Ok(holds(&lb1, "10.0.0.10")?
            && EXPECT
                .iter()
                .all(|e| matches(&tables(&lb1), e, Phase::Start)))
    })?;
    ctx.sh
        .note(quiet(&lb1, &["ipvsadm", "-L", "-n"]).unwrap_or_default());
    ctx.check(
        ok,
        "lb1 holds 10.0.0.10 and every service has its starting table",
    )?;
    let agent_bin = ctx.guest_tool().with_file_name("lvs-agent");
    let status = format!(
        "{} status --socket /run/lvs-agent-lb1.sock",
        agent_bin.display()
    );
    let mut last = String::new();
    let why = "(TLS handshake with 172.16.0.100:8444: invalid peer certificate: UnknownIssuer";
    let shown = wait_until(Duration::from_secs(10), || {
        last = quiet(&lb1, &["sh", "-c", &status])?;
        Ok(last.contains("service tcp 10.0.0.10:445 healthy 0/2") && last.contains(why))
    })?;
    ctx.sh.note(format!("[lb1]# lvs-agent status\n{last}"));
    ctx.check(
        shown,
        "lvs-agent status: 10.0.0.10:445 healthy 0/2, the certificate's issuer unknown",
    )?;

    // rs1 fails everything at once.
    let failed = Instant::now();
    topo.kill_all(&mut ctx.sh, "rs1", "TERM")?;
    std::fs::write(EXIT_FILE, "1")?;
    let out = reached(&lb1, Phase::Down, OUT_BOUND * 3);
    ctx.sh
        .note(quiet(&lb1, &["ipvsadm", "-L", "-n"]).unwrap_or_default());
    let got = topo.fetch(&mut ctx.sh, "client", "10.0.0.10".parse()?, 20)?;

    // rs1 recovers.
    let recovered = Instant::now();
    let www = topo.www("rs1").to_string_lossy().into_owned();
    servers.spawn(
        ctx,
        &topo.ns("rs1"),
        &["busybox", "httpd", "-f", "-p", "80", "-h", &www],
    )?;
    start_servers(ctx, &topo, &mut servers, "rs1", &pki)?;
    std::fs::write(EXIT_FILE, "5")?;
    let back = reached(&lb1, Phase::Back, BACK_BOUND * 3);
    ctx.sh
        .note(quiet(&lb1, &["ipvsadm", "-L", "-n"]).unwrap_or_default());
    let secs = |t: Option<Instant>, since: Instant| {
        t.map_or("never".to_owned(), |t| {
            format!("{:.1}", (t - since).as_secs_f64())
        })
    };
    for (e, (o, b)) in EXPECT.iter().zip(out.iter().zip(&back)) {
        ctx.sh.note(format!(
            "health-kinds: {} ({}) out_s={} back_s={}",
            e.service,
            e.what,
            secs(*o, failed),
            secs(*b, recovered)
        ));
    }
    for (e, o) in EXPECT.iter().zip(&out) {
        ctx.check(
            o.is_some_and(|o| o - failed <= OUT_BOUND),
            format!(
                "{} ({}): its table {} s after rs1 failed (bound {} s)",
                e.service,
                e.what,
                secs(*o, failed),
                OUT_BOUND.as_secs()
            ),
        )?;
    }
    ctx.check(
        got.errors == 0 && got.from("rs2") == 20,
        format!("20 new connections to 10.0.0.10:80 while rs1 is down: all on rs2 ({got})"),
    )?;
    for (e, b) in EXPECT.iter().zip(&back) {
        ctx.check(
            b.is_some_and(|b| b - recovered <= BACK_BOUND),
            format!(
                "{} ({}): its table {} s after rs1 recovered (bound {} s)",
                e.service,
                e.what,
                secs(*b, recovered),
                BACK_BOUND.as_secs()
            ),
        )?;
    }
    // Later checks change nothing: the hysteresis keeps its sorry server.
    std::thread::sleep(Duration::from_secs(3));
    let last = tables(&lb1);
    for e in EXPECT {
        ctx.check(
            matches(&last, e, Phase::Back),
            format!("{} ({}): still as expected 3 s later", e.service, e.what),
        )?;
    }
    agent.stop(ctx)?;
    Ok(())
}

/// The TLS and DNS servers of real server `node` (its web server is the topology's).
fn start_servers(
    ctx: &mut Ctx,
    topo: &Topology,
    servers: &mut Background,
    node: &str,
    pki: &Pki,
) -> Result<()> {
    let tool = ctx.guest_tool().to_string_lossy().into_owned();
    let ns = topo.ns(node);
    servers.spawn(ctx, &ns, &[&tool, "tls-server", "0.0.0.0:8443"])?;
    servers.spawn(
        ctx,
        &ns,
        &[
            &tool,
            "tls-server",
            "0.0.0.0:8444",
            &pki.cert.to_string_lossy(),
            &pki.key.to_string_lossy(),
        ],
    )?;
    servers.spawn(
        ctx,
        &ns,
        &[
            &tool,
            "dns-server",
            "0.0.0.0:5353",
            "www.lab.invalid",
            "192.0.2.53",
        ],
    )?;
    Ok(())
}

fn cluster_toml(pki: &Pki) -> String {
    let check = "connect_timeout = 1\nretry = 1\ndelay_before_retry = 1\n";
    let service = |head: &str, rs: &dyn Fn(&str, u32) -> String| {
        let mut s = format!("[[service]]\nvip = \"10.0.0.10\"\ndelay_loop = 1\n{head}");
        for (addr, weight) in [(RS1, 1), (RS2, 2)] {
            s += &rs(addr, weight);
        }
        s
    };
    let mut text = "[cluster]\nname = \"health\"\n\n[[vip_group]]\nname = \"V\"\nvrrp_id = 60\n\
                    addresses = [\"10.0.0.10/24\"]\n\n"
        .to_owned();
    text += &service(
        "port = 80\nscheduler = \"wrr\"\ninhibit_on_failure = true\n",
        &|a, w| {
            format!(
                "[[service.real_server]]\naddress = \"{a}\"\nport = 80\nweight = {w}\n\
                 [[service.real_server.check]]\nkind = \"tcp_check\"\n{check}"
            )
        },
    );
    text += &service("port = 443\n", &|a, _| {
        format!(
            "[[service.real_server]]\naddress = \"{a}\"\nport = 443\n\
             [[service.real_server.check]]\nkind = \"ssl_get\"\nconnect_port = 8443\n\
             url = [{{ path = \"/\" }}]\n{check}"
        )
    });
    for (port, ca) in [(444, pki.ca.display()), (445, pki.other_ca.display())] {
        text += &service(&format!("port = {port}\n"), &|a, _| {
            format!(
                "[[service.real_server]]\naddress = \"{a}\"\nport = {port}\n\
                 [[service.real_server.check]]\nkind = \"ssl_get\"\nconnect_port = 8444\n\
                 virtualhost = \"www.lab.invalid\"\ntls_ca = \"{ca}\"\n\
                 url = [{{ path = \"/\" }}]\n{check}"
            )
        });
    }
    text += &service("port = 81\n", &|a, _| {
        let script = if a == RS1 {
            format!("exit $(cat {EXIT_FILE})")
        } else {
            "exit 0".to_owned()
        };
        format!(
            "[[service.real_server]]\naddress = \"{a}\"\nport = 81\n\
             [[service.real_server.check]]\nkind = \"misc_check\"\nmisc_path = \"{script}\"\n\
             misc_dynamic = true\nmisc_timeout = 1\n{check}"
        )
    });
    text += &service("port = 53\nprotocol = \"udp\"\n", &|a, _| {
        format!(
            "[[service.real_server]]\naddress = \"{a}\"\nport = 53\n\
             [[service.real_server.check]]\nkind = \"dns_check\"\nconnect_port = 5353\n\
             dns_type = \"A\"\ndns_name = \"www.lab.invalid\"\n{check}"
        )
    });
    text += &service(
        &format!(
            "port = 8080\nquorum = 3\nsorry_server = {{ address = \"{RS2}\", port = 9999 }}\n"
        ),
        &|a, w| {
            format!(
                "[[service.real_server]]\naddress = \"{a}\"\nport = 8080\nweight = {w}\n\
                 [[service.real_server.check]]\nkind = \"tcp_check\"\nconnect_port = 80\n{check}"
            )
        },
    );
    text += &format!(
        "[[service]]\nvip = \"10.0.0.10\"\ndelay_loop = 1\nport = 8081\n\
         sorry_server = {{ address = \"{RS2}\", port = 9999 }}\n\
         [[service.real_server]]\naddress = \"{RS1}\"\nport = 8081\n\
         [[service.real_server.check]]\nkind = \"tcp_check\"\nconnect_port = 80\n{check}"
    );
    text += &service(
        &format!(
            "port = 8082\nquorum = 3\nhysteresis = 1\n\
             sorry_server = {{ address = \"{RS2}\", port = 9999 }}\n"
        ),
        // rs1 weight 2, rs2 weight 1.
        &|a, w| {
            format!(
                "[[service.real_server]]\naddress = \"{a}\"\nport = 8082\nweight = {}\n\
                 [[service.real_server.check]]\nkind = \"tcp_check\"\nconnect_port = 80\n{check}",
                3 - w
            )
        },
    );
    text
}

/// `ipvsadm -L -n` in `ns`, by service.
fn tables(ns: &str) -> Tables {
    let text = quiet(ns, &["ipvsadm", "-L", "-n"]).unwrap_or_default();
    let mut out = Tables::new();
    let mut current = None;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            [proto @ ("TCP" | "UDP"), service, ..] => {
                let name = format!("{proto} {service}");
                out.entry(name.clone()).or_default();
                current = Some(name);
            }
            ["->", rs, _, weight, ..] => {
                if let (Some(c), Ok(weight)) = (&current, weight.parse()) {
                    out.entry(c.clone())
                        .or_default()
                        .insert(rs.to_string(), weight);
                }
            }
            _ => {}
        }
    }
    out
}

/// When in the run a table is looked at.
#[derive(Clone, Copy)]
enum Phase {
    Start,
    Down,
    Back,
}

/// The service's table is exactly the one expected in `phase`.
fn matches(tables: &Tables, e: &Expect, phase: Phase) -> bool {
    let want: BTreeMap<String, u32> = match phase {
        Phase::Start => e.start,
        Phase::Down => e.down,
        Phase::Back => e.back,
    }
    .iter()
    .map(|(a, w)| (a.to_string(), *w))
    .collect();
    tables.get(e.service) == Some(&want)
}

/// Polls every 100 ms until every service's table is the one of `phase`, or `limit`
/// passes; when each first matched.
fn reached(ns: &str, phase: Phase, limit: Duration) -> Vec<Option<Instant>> {
    let mut at = vec![None; EXPECT.len()];
    let deadline = Instant::now() + limit;
    while at.iter().any(Option::is_none) && Instant::now() < deadline {
        let t = tables(ns);
        let now = Instant::now();
        for (i, e) in EXPECT.iter().enumerate() {
            if at[i].is_none() && matches(&t, e, phase) {
                at[i] = Some(now);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    at
}

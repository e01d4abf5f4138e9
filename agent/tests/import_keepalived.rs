//! `lvs-agent import-keepalived`: the seed's two configs import to files equivalent to
//! deploy/examples/seed-*.toml; the seed's published ha_lb_02 config is refused at
//! its stray `}` (the line keepalived itself reports); a corpus of real-world configs
//! (keepalived's own `-t` config test is the oracle that they are keepalived syntax,
//! run in a namespace with their interfaces) imports with the settings expected;
//! keepalived's sample configs shipped by Debian import with every virtual server,
//! real server and check of a kind lvs-mesh runs; mutated configs never panic the
//! importer, and brace errors are found on the line keepalived finds them. Needs
//! root and keepalived.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lvs_agent::config::{self, CheckKind, Config, Forwarding};
use lvs_agent::keepalived::{self, syntax, Request};
use proptest::prelude::*;
use support::netns::{add_ns, del_ns, ip, require_program, require_root};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn corpus(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keepalived")
        .join(path)
}

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvs-agent"))
        .args(args)
        .output()
        .expect("run lvs-agent")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh directory under the target dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn load(files: &[PathBuf]) -> Config {
    config::load_all(files).unwrap_or_else(|e| panic!("{files:?}: {e}"))
}

/// Imports through the library: (cluster text, node texts by id, notes).
fn import(
    files: &[(&str, PathBuf)],
    addresses: &[(&str, &str)],
    interfaces: &[(&str, &str)],
) -> (String, BTreeMap<String, String>, Vec<String>) {
    let request = Request {
        files: files
            .iter()
            .map(|(id, p)| (Some(id.to_string()), p.clone()))
            .collect(),
        addresses: addresses
            .iter()
            .map(|(id, a)| (id.to_string(), a.parse::<IpAddr>().unwrap()))
            .collect(),
        interfaces: interfaces
            .iter()
            .map(|(id, i)| (id.to_string(), i.to_string()))
            .collect(),
        cluster_name: "corpus".into(),
        key_file: "/etc/lvs-mesh/cluster.key".into(),
    };
    let imported = keepalived::run(&request).unwrap_or_else(|e| panic!("{files:?}: {e}"));
    let mut nodes = BTreeMap::new();
    let mut cluster = String::new();
    for (name, text) in imported.files {
        match name.strip_suffix(".toml") {
            Some("cluster") => cluster = text,
            Some(id) => {
                nodes.insert(id.to_owned(), text);
            }
            None => panic!("unexpected file {name}"),
        }
    }
    (cluster, nodes, imported.notes)
}

/// One director's whole config from the imported texts.
fn parsed(cluster: &str, node: &str) -> Config {
    config::parse(&format!("{node}\n{cluster}"))
        .unwrap_or_else(|e| panic!("{e}\n{node}\n{cluster}"))
}

#[test]
fn the_seeds_configs_import_to_the_example_files() {
    let out = scratch("import-seed");
    let examples = repo("deploy/examples");
    let run = agent(&[
        "import-keepalived",
        examples.join("keepalived/ha_lb_01.conf").to_str().unwrap(),
        examples.join("keepalived/ha_lb_02.conf").to_str().unwrap(),
        "--address",
        "ha_lb_01=172.16.0.10",
        "--address",
        "ha_lb_02=172.16.0.11",
        "--cluster-name",
        "seed",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    // The notify scripts and script security are what lvs-mesh does itself.
    let said = text(&run);
    assert!(
        said.contains("notify \"/etc/keepalived/notify.sh\"")
            || said.contains("notify /etc/keepalived/notify.sh"),
        "{said}"
    );
    for id in ["ha_lb_01", "ha_lb_02"] {
        let imported = load(&[out.join(format!("{id}.toml")), out.join("cluster.toml")]);
        let example = load(&[
            examples.join(format!("seed-{id}.toml")),
            examples.join("seed-cluster.toml"),
        ]);
        assert_eq!(imported, example, "{id}");
        let check = agent(&[
            "check-config",
            out.join(format!("{id}.toml")).to_str().unwrap(),
            out.join("cluster.toml").to_str().unwrap(),
        ]);
        assert!(check.status.success(), "{}", text(&check));
    }
    // A second import into the same place writes nothing over what is there.
    let again = agent(&[
        "import-keepalived",
        examples.join("keepalived/ha_lb_01.conf").to_str().unwrap(),
        "--address",
        "ha_lb_01=172.16.0.10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("cluster.toml exists: nothing written"),
        "{}",
        text(&again)
    );
}

#[test]
fn the_published_ha_lb_02_config_is_refused_at_its_stray_brace() {
    require_program("keepalived");
    let file = corpus("ha_lb_02-as-published.conf");
    let out = scratch("import-stray");
    let run = agent(&[
        "import-keepalived",
        file.to_str().unwrap(),
        "--address",
        "ha_lb_02-as-published=172.16.0.11",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let expected = format!(
        "{}:103: `}}` closes no block (the last block closed at line 102): one `}}` too many",
        file.display()
    );
    assert!(text(&run).contains(&expected), "{}", text(&run));
    assert!(!out.exists(), "nothing written");
    // keepalived finds it on the same line.
    let oracle = Command::new("keepalived")
        .args(["-t", "-l", "-f"])
        .arg(&file)
        .output()
        .expect("run keepalived -t");
    assert!(
        text(&oracle).contains("Line 103) Extra '}' found"),
        "{}",
        text(&oracle)
    );
    // And a missing address is named with the option that gives it.
    let fixed = repo("deploy/examples/keepalived/ha_lb_02.conf");
    let run = agent(&["import-keepalived", fixed.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(
        text(&run).contains("director ha_lb_02: its config names no address of its own (no unicast_src_ip or mcast_src_ip): give it with --address ha_lb_02=ADDRESS"),
        "{}",
        text(&run)
    );
}

/// A namespace with the corpus's interfaces, for keepalived's config test.
struct Ns(String);

impl Ns {
    fn new(name: &str) -> Ns {
        require_root();
        let ns = Ns(format!("lvskt{name}-{}", std::process::id()));
        add_ns(&ns.0);
        ip(&[
            "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
        ns
    }

    /// `keepalived -t` of `file` (config id `id`): its exit status 0 or what it said.
    fn config_test(&self, file: &Path, id: &str) -> Result<(), String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                "timeout",
                "20",
                "keepalived",
                "-t",
                "-l",
                "-i",
                id,
                "-f",
            ])
            .arg(file)
            .output()
            .expect("run keepalived -t");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}: {:?} {}",
                file.display(),
                out.status,
                text(&out)
            ))
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        del_ns(&self.0);
    }
}

#[test]
fn the_corpus_is_keepalived_syntax_and_imports_as_expected() {
    require_program("keepalived");
    let ns = Ns::new("c");
    let dr = |f: &str| corpus(&format!("corpus/dr-pair/{f}"));
    let shared = corpus("corpus/shared-file/keepalived.conf");
    let v6 = |f: &str| corpus(&format!("corpus/ipv6-fwmark/{f}"));
    for (file, id) in [
        (dr("lb1.conf"), "lb1"),
        (dr("lb2.conf"), "lb2"),
        (shared.clone(), "lb1"),
        (shared.clone(), "lb2"),
        (v6("lb1.conf"), "lb1"),
        (v6("lb2.conf"), "lb2"),
    ] {
        ns.config_test(&file, id).unwrap();
    }

    // dr-pair: unicast VRRP, keepalived's sync daemon, HTTP/TCP/SSL checks.
    let (cluster, nodes, notes) = import(
        &[("lb1", dr("lb1.conf")), ("lb2", dr("lb2.conf"))],
        &[],
        &[],
    );
    let c1 = parsed(&cluster, &nodes["lb1"]);
    let c2 = parsed(&cluster, &nodes["lb2"]);
    let (n1, n2) = (c1.node.as_ref().unwrap(), c2.node.as_ref().unwrap());
    assert_eq!((n1.syncid, n2.syncid), (11, 12));
    // lb1's vrrp_rt_priority; lb2 has none and keeps the agent's default.
    assert_eq!((n1.rt_priority, n2.rt_priority), (20, 5));
    assert_eq!(n1.address.to_string(), "192.0.2.11");
    assert_eq!(n1.join, vec!["192.0.2.12:7946".to_owned()]);
    let cl = c1.cluster.as_ref().unwrap();
    assert_eq!(cl.sync.mcast_port, 8850);
    let g = &cl.vip_groups[0];
    assert_eq!(g.vrrp_id, 61);
    assert!(!g.preempt);
    assert_eq!(g.garp_master_delay.as_secs(), 2);
    assert_eq!(
        g.addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["198.51.100.80/24", "198.51.100.81/32"]
    );
    assert_eq!(
        g.priorities.values().map(|p| p.get()).collect::<Vec<_>>(),
        [150, 100]
    );
    assert_eq!(
        format!("{:?}", cl.obey_of(g)),
        "Sources([192.0.2.11, 192.0.2.12])"
    );
    let web = &cl.services[0];
    assert_eq!(web.persistence_timeout.unwrap().as_secs(), 300);
    assert_eq!(web.persistence_prefix, Some(24));
    assert_eq!((web.quorum, web.hysteresis, web.alpha), (2, 1, true));
    assert_eq!(web.sorry_server.as_ref().unwrap().port, Some(80));
    let http = &web.real_servers[0].checks[0];
    assert_eq!(
        (http.kind, http.retry, http.url.len()),
        (CheckKind::HttpGet, 3, 2)
    );
    assert_eq!(
        http.url[0]
            .status_code
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["200-299", "301"]
    );
    assert_eq!(web.real_servers[1].upper_threshold, 5000);
    assert_eq!(web.real_servers[1].checks[0].connect_port, Some(80));
    let tls = &cl.services[1];
    assert_eq!(tls.sched_flags.len(), 2);
    // The service's defaults reach the checks; a real server's delay_loop its own.
    let ssl = &tls.real_servers[1].checks[0];
    assert_eq!(
        (ssl.kind, ssl.connect_timeout.as_secs(), ssl.retry),
        (CheckKind::SslGet, 4, 2)
    );
    assert_eq!(ssl.delay_loop.unwrap().as_secs(), 20);
    for kw in [
        "track_script",
        "vrrp_script chk_nginx",
        "notify_master",
        "bindto",
        "quorum_up",
        "enable_sni",
        "notification_email",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(kw)),
            "no note on {kw}: {notes:#?}"
        );
    }
    assert!(
        cluster.contains("# track_script (") && cluster.contains("not imported: no tracking"),
        "{cluster}"
    );

    // shared-file: one file, conditionals and parameters; NAT, TUN (GUE), DNS.
    let (cluster, nodes, _) = import(
        &[("lb1", shared.clone()), ("lb2", shared.clone())],
        &[],
        &[],
    );
    let c1 = parsed(&cluster, &nodes["lb1"]);
    let cl = c1.cluster.as_ref().unwrap();
    assert_eq!(c1.node.as_ref().unwrap().address.to_string(), "192.0.2.21");
    assert_eq!(c1.node.as_ref().unwrap().interface, "eth1");
    let g = &cl.vip_groups[0];
    assert_eq!(g.advert_int.as_millis(), 500);
    assert_eq!(g.addresses.len(), 3, "excluded addresses too");
    assert_eq!(g.preempt_delay.as_secs(), 30);
    assert_eq!(
        g.priorities.values().map(|p| p.get()).collect::<Vec<_>>(),
        [200, 100]
    );
    assert_eq!(cl.services[0].forwarding, Forwarding::Nat);
    let misc = &cl.services[0].real_servers[0].checks[0];
    assert_eq!(
        misc.misc_path.as_deref(),
        Some("/usr/local/bin/check-api --port 8080")
    );
    assert!(misc.misc_dynamic);
    assert_eq!(cl.services[0].real_servers[1].weight, 0);
    let tun = &cl.services[1];
    assert_eq!(tun.forwarding, Forwarding::Tun);
    assert_eq!(tun.tunnel_port, Some(6080));
    assert!(tun.ops);
    let dns = &cl.services[2].real_servers[0].checks[0];
    assert_eq!(
        (dns.kind, dns.dns_name.as_deref()),
        (CheckKind::DnsCheck, Some("example.com"))
    );

    // ipv6-fwmark: VRRPv3 for IPv6, fwmark inet6, includes, a group over a range.
    let (cluster, nodes, _) = import(
        &[("lb1", v6("lb1.conf")), ("lb2", v6("lb2.conf"))],
        &[("lb1", "192.0.2.31"), ("lb2", "192.0.2.32")],
        &[],
    );
    let c1 = parsed(&cluster, &nodes["lb1"]);
    let cl = c1.cluster.as_ref().unwrap();
    assert_eq!(cl.vip_groups.len(), 2);
    assert_eq!(cl.vip_groups[0].garp_master_repeat, 3);
    assert_eq!(cl.vip_groups[0].gna_interval.as_secs(), 10);
    assert_eq!(
        cl.vip_groups[1]
            .priorities
            .values()
            .map(|p| p.get())
            .collect::<Vec<_>>(),
        [110, 120]
    );
    assert_eq!(
        cl.services.len(),
        4,
        "the fwmark service and the group's three addresses"
    );
    let fw = &cl.services[0];
    assert_eq!(
        (fw.fwmark, fw.family.map(config::family_name)),
        (Some(6), Some("inet6"))
    );
    assert_eq!(fw.persistence_timeout.unwrap().as_secs(), 360);
    assert_eq!(
        fw.real_servers[1].checks[0].virtualhost.as_deref(),
        Some("www.example.com")
    );
    let vips: Vec<String> = cl.services[1..]
        .iter()
        .map(|s| s.vip.unwrap().to_string())
        .collect();
    assert_eq!(vips, ["198.51.100.40", "198.51.100.41", "198.51.100.42"]);
}

/// Statement counts of what lvs-mesh supports in a keepalived tree: virtual servers
/// (a group's members each), real servers, checks of the kinds it runs.
fn supported_counts(stmts: &[syntax::Stmt]) -> (usize, usize, usize) {
    let groups: BTreeMap<&str, usize> = stmts
        .iter()
        .filter(|s| s.keyword() == "virtual_server_group")
        .map(|s| {
            let members = s.block.as_ref().map_or(0, |b| {
                b.iter()
                    .map(|m| match m.keyword().split_once('-') {
                        Some((first, last)) => {
                            let radix = if first.contains(':') { 16 } else { 10 };
                            let d = first.rsplit(['.', ':']).next().unwrap();
                            let d = usize::from_str_radix(d, radix).unwrap();
                            usize::from_str_radix(last, radix).unwrap() - d + 1
                        }
                        None => 1,
                    })
                    .sum()
            });
            (s.args()[0].as_str(), members)
        })
        .collect();
    let (mut vs, mut rs, mut checks) = (0, 0, 0);
    for s in stmts.iter().filter(|s| s.keyword() == "virtual_server") {
        let copies = match s.args().first().map(String::as_str) {
            Some("group") => groups[s.args()[1].as_str()],
            _ => 1,
        };
        vs += copies;
        for r in s
            .block
            .iter()
            .flatten()
            .filter(|r| r.keyword() == "real_server")
        {
            rs += copies;
            checks += copies
                * r.block
                    .iter()
                    .flatten()
                    .filter(|c| {
                        matches!(
                            c.keyword(),
                            "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "MISC_CHECK" | "DNS_CHECK"
                        )
                    })
                    .count();
        }
    }
    (vs, rs, checks)
}

#[test]
fn keepalived_sample_configs_import_without_loss() {
    require_program("keepalived");
    let dir = Path::new("/usr/share/doc/keepalived/samples");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (Debian's keepalived ships them)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("keepalived.conf.")
        })
        .collect();
    samples.sort();
    let mut lvs = 0;
    for sample in &samples {
        let stmts =
            syntax::read(&mut syntax::Disk, sample, "lb1").unwrap_or_else(|e| panic!("{e}"));
        let (vs, rs, checks) = supported_counts(&stmts);
        if vs == 0 {
            continue;
        }
        lvs += 1;
        let (cluster, nodes, notes) = import(
            &[("lb1", sample.clone())],
            &[("lb1", "192.0.2.1")],
            &[("lb1", "eth0")],
        );
        let c = parsed(&cluster, &nodes["lb1"]);
        let cl = c.cluster.as_ref().unwrap();
        let got = (
            cl.services.len(),
            cl.services
                .iter()
                .map(|s| s.real_servers.len())
                .sum::<usize>(),
            cl.services
                .iter()
                .flat_map(|s| &s.real_servers)
                .map(|r| r.checks.len())
                .sum::<usize>(),
        );
        assert_eq!(got, (vs, rs, checks), "{}:\n{cluster}", sample.display());
        // A keyword the table calls imported never shows up as a note.
        for n in &notes {
            assert!(!n.contains("): imported:"), "{}: {n}", sample.display());
        }
    }
    assert!(
        lvs >= 12,
        "only {lvs} samples with virtual servers in {}",
        dir.display()
    );
}

/// One line-level mutation of a config: drop, duplicate, or add a brace.
fn mutate(text: &str, op: u8, at: usize) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let i = at % lines.len().max(1);
    match op % 4 {
        0 if !lines.is_empty() => {
            lines.remove(i);
        }
        1 if !lines.is_empty() => lines.insert(i, lines[i]),
        2 => lines.insert(i, "}"),
        _ => lines.insert(i, "x {"),
    }
    lines.join("\n") + "\n"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The seed's config mutated line by line: the importer either imports or names a
    /// line of the file, never panics.
    #[test]
    fn mutated_configs_import_or_name_a_line(op in 0u8..4, at in 0usize..200, second in proptest::option::of((0u8..4, 0usize..200))) {
        let original = std::fs::read_to_string(repo("deploy/examples/keepalived/ha_lb_01.conf")).unwrap();
        let mut text = mutate(&original, op, at);
        if let Some((op, at)) = second {
            text = mutate(&text, op, at);
        }
        let dir = scratch(&format!("import-fuzz-{op}-{at}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lb1.conf");
        std::fs::write(&file, &text).unwrap();
        let request = Request {
            files: vec![(None, file.clone())],
            addresses: BTreeMap::from([("lb1".to_owned(), "192.0.2.1".parse().unwrap())]),
            interfaces: BTreeMap::new(),
            cluster_name: "fuzz".into(),
            key_file: "/k".into(),
        };
        if let Err(e) = keepalived::run(&request) {
            let lines = text.lines().count();
            let named = e.split(':').nth(1).and_then(|l| l.parse::<usize>().ok());
            let whole_file = e.contains("check-config") || e.contains("no address") || e.contains("no interface");
            prop_assert!(whole_file || named.is_some_and(|l| l <= lines), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn brace_errors_are_found_where_keepalived_finds_them() {
    require_program("keepalived");
    let ns = Ns::new("b");
    let original =
        std::fs::read_to_string(repo("deploy/examples/keepalived/ha_lb_01.conf")).unwrap();
    let dir = scratch("import-braces");
    std::fs::create_dir_all(&dir).unwrap();
    let lines = original.lines().count();
    let mut compared = 0;
    // Every line: a `}` too many inserted there, or the line dropped.
    for at in 0..lines {
        for op in [0u8, 2] {
            let text = mutate(&original, op, at);
            let file = dir.join("lb1.conf");
            std::fs::write(&file, &text).unwrap();
            let ours = syntax::read(&mut syntax::Disk, &file, "lb1");
            let theirs = ns.config_test(&file, "lb1");
            let theirs_text = theirs.clone().err().unwrap_or_default();
            let extra = theirs_text
                .split("Line ")
                .skip(1)
                .find(|rest| rest.contains(") Extra '}' found"))
                .and_then(|rest| rest.split(')').next()?.parse::<usize>().ok());
            let missing = theirs_text.contains("missing '}'s");
            match &ours {
                Err(e) if e.message.contains("closes no block") => {
                    assert_eq!(Some(e.at.line), extra, "{e} / {theirs_text}")
                }
                Err(e) if e.message.contains("never closed") => {
                    assert!(missing, "{e} / {theirs_text}")
                }
                Err(e) => panic!("{e}"),
                Ok(_) => assert!(
                    extra.is_none() && !missing,
                    "keepalived: {theirs_text}\n{text}"
                ),
            }
            compared += 1;
        }
    }
    assert!(compared > 100);
}

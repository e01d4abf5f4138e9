//! The control API end to end: real `lvs-agent run` processes in network namespaces
//! (192.0.2.0/24 on one bridge, VIPs 198.51.100.x, no route out), each serving QUIC
//! with a node certificate of one cluster CA that `lvs-cli cert` made, and `lvs-cli`
//! calling them from inside the namespaces. Needs root; fails without it.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use lvs_control::quic::{self, Identity, TlsFiles};
use lvs_proto::v1::{control_reply::Reply, ControlReply};
use prost::Message as _;
use rustls::pki_types::pem::PemObject as _;
use support::bridge_lab::Lab;
use support::netns::poll;

const NODES: usize = 3;
/// Far above the few seconds a cluster takes to form, for a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn lvs_cli() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_lvs-agent")).with_file_name("lvs-cli");
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// `lvs-cli ARGS` inside node `i`'s namespace (or outside any with `None`).
fn cli(lab: &Lab, i: Option<usize>, args: &[&str]) -> Output {
    let mut command = match i {
        Some(i) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &lab.ns(i)]).arg(lvs_cli());
            c
        }
        None => Command::new(lvs_cli()),
    };
    command.args(args).output().expect("run lvs-cli")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cluster_toml() -> String {
    let mut text = String::from("[cluster]\nname = \"lab\"\n");
    for g in 1..=NODES {
        text += &format!(
            "\n[[vip_group]]\nname = \"g{g}\"\nvrrp_id = {}\naddresses = [\"198.51.100.{}/24\"]\n\
             priorities = {{ lb{g} = 150 }}\nversion = 3\nadvert_int = 0.2\ngarp_master_delay = 0\n",
            10 + g,
            10 + g
        );
    }
    text
}

/// lb1 serves its metrics here.
const METRICS: &str = "192.0.2.1:9947";

fn node_toml(lab: &Lab, i: usize, tls: &Path) -> String {
    let join: Vec<String> = (1..=NODES)
        .filter(|&j| j != i)
        .map(|j| format!("\"192.0.2.{j}:7946\""))
        .collect();
    format!(
        "[node]\nid = \"lb{i}\"\ninterface = \"eth0\"\naddress = \"192.0.2.{i}\"\nsyncid = {i}\n\
         join = [{}]\ncluster_key_files = [\"{}\"]\ngossip_probe_period = 0.2\n\
         control_socket = \"{}\"\n\
         control_tls = {{ ca = \"{tls}/ca.pem\", cert = \"{tls}/lb{i}.pem\", key = \"{tls}/lb{i}.key\" }}\n\
         {}",
        join.join(", "),
        lab.dir.join("cluster.key").display(),
        lab.socket(i).display(),
        if i == 1 {
            format!("metrics_listen = \"{METRICS}\"\n")
        } else {
            String::new()
        },
        tls = tls.display()
    )
}

/// The CA, a node certificate per node and the operator's, made by `lvs-cli cert`.
fn certificates(lab: &Lab) -> PathBuf {
    let tls = lab.dir.join("tls");
    let dir = tls.to_str().unwrap();
    ok(
        &cli(
            lab,
            None,
            &["cert", "init", "--cluster", "lab", "--dir", dir],
        ),
        "cert init",
    );
    for i in 1..=lab.nodes() {
        let name = format!("lb{i}");
        ok(
            &cli(
                lab,
                None,
                &["cert", "issue", "--ca-dir", dir, "--node-cert", &name],
            ),
            "cert issue --node-cert",
        );
    }
    ok(
        &cli(lab, None, &["cert", "issue", "--ca-dir", dir, "ops"]),
        "cert issue",
    );
    tls
}

/// `--node` and the operator's certificate from `tls`, then `args`.
fn remote<'a>(node: &'a str, tls: &'a str, who: &'a str, args: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--node".into(),
        node.into(),
        "--ca".into(),
        format!("{tls}/ca.pem"),
        "--cert".into(),
        format!("{tls}/{who}.pem"),
        "--key".into(),
        format!("{tls}/{who}.key"),
    ];
    v.extend(args.iter().map(|a| (*a).to_owned()));
    v
}

fn call(lab: &Lab, from: usize, to: usize, tls: &Path, args: &[&str]) -> Output {
    let node = format!("192.0.2.{to}:7947");
    let args = remote(&node, tls.to_str().unwrap(), "ops", args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli(lab, Some(from), &args)
}

/// Owners per group and live members, from `status --json`.
fn view(json: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let v: serde_json::Value = serde_json::from_str(json).expect("status --json is JSON");
    let owners = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                g["owner"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut live: Vec<String> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["live"].as_bool() == Some(true))
        .map(|m| m["node_id"].as_str().unwrap().to_owned())
        .collect();
    live.sort();
    (owners, live)
}

fn start(lab: &mut Lab, tls: &Path) {
    lab.write_key("cluster.key", &"2b".repeat(32));
    let cluster = lab.write("cluster.toml", &cluster_toml());
    for i in 1..=NODES {
        let node = lab.write(&format!("lb{i}.toml"), &node_toml(lab, i, tls));
        lab.start(i, &node, &cluster);
    }
}

#[test]
fn every_node_reports_the_same_cluster_over_quic_and_strangers_are_refused() {
    let mut lab = Lab::new("ctl", NODES);
    let tls = certificates(&lab);
    start(&mut lab, &tls);
    let expected: BTreeMap<String, String> = (1..=NODES)
        .map(|g| (format!("g{g}"), format!("lb{g}")))
        .collect();
    let all: Vec<String> = (1..=NODES).map(|i| format!("lb{i}")).collect();
    let mut last = String::new();
    let settled = poll(DEADLINE, || {
        let views: Vec<_> = (1..=NODES)
            .map(|i| {
                let out = call(&lab, i, i % NODES + 1, &tls, &["status", "--json"]);
                if !out.status.success() {
                    last = String::from_utf8_lossy(&out.stderr).into_owned();
                }
                out.status
                    .success()
                    .then(|| view(&String::from_utf8_lossy(&out.stdout)))
            })
            .collect();
        views
            .iter()
            .all(|v| v.as_ref() == Some(&(expected.clone(), all.clone())))
            .then_some(())
    });
    assert!(
        settled.is_some(),
        "every node's status over QUIC names the preferred owners and three live members \
         (last error: {last}):\n{}",
        lab.logs()
    );

    let json = ok(&call(&lab, 2, 1, &tls, &["status", "--json"]), "status");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for g in v["groups"].as_array().unwrap() {
        assert!(
            g["since_unix_ms"].as_u64().is_some_and(|t| t > 0),
            "each group says since when: {g}"
        );
    }
    let table = ok(&call(&lab, 2, 1, &tls, &["status"]), "status");
    for word in ["MEMBERS", "VIP GROUPS", "MASTER", "198.51.100.11/24", "g1"] {
        assert!(table.contains(word), "status table lacks {word}:\n{table}");
    }
    let vips = ok(&call(&lab, 3, 1, &tls, &["vips"]), "vips");
    let g1 = vips
        .lines()
        .find(|l| l.starts_with("g1 "))
        .expect("a g1 row");
    for word in ["lb1", "MASTER", "150", "this node"] {
        assert!(g1.contains(word), "g1 row lacks {word}: {g1}");
    }

    // A certificate from another CA: refused in the handshake.
    let other = lab.dir.join("other");
    let other_dir = other.to_str().unwrap();
    ok(
        &cli(&lab, None, &["cert", "init", "--dir", other_dir]),
        "cert init",
    );
    ok(
        &cli(
            &lab,
            None,
            &["cert", "issue", "--ca-dir", other_dir, "intruder"],
        ),
        "cert issue",
    );
    let mut args = remote("192.0.2.1:7947", other_dir, "intruder", &["status"]);
    args[3] = format!("{}/ca.pem", tls.display());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&lab, Some(2), &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("refused this client's certificate"),
        "a certificate of another CA: {err}"
    );
    // Our certificate, but the agent checked against another CA: the client refuses.
    let mut args = remote("192.0.2.1:7947", tls.to_str().unwrap(), "ops", &["status"]);
    args[3] = format!("{other_dir}/ca.pem");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&lab, Some(2), &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a node of this cluster CA"),
        "an agent the CA did not certify: {err}"
    );

    let raw = RawClient::new(&lab, &tls);
    // No certificate at all: refused before any request is read.
    let err = raw
        .exchange(false, b"\x02\x12\x00")
        .expect_err("no certificate");
    assert!(err.contains("refused"), "no certificate: {err}");
    // A malformed request: a precise error, nothing changed.
    match raw.exchange(true, b"\x05\xff\xff") {
        Ok(Reply::Error(reason)) => assert!(
            reason.starts_with("not a ControlRequest"),
            "malformed request: {reason}"
        ),
        other => panic!("malformed request: {other:?}"),
    }
    let log = lab.log_text(1);
    assert!(
        log.contains("control API: connection refused"),
        "lb1 logs the refused clients:\n{log}"
    );
    let after = call(&lab, 1, 1, &tls, &["status", "--json"]);
    assert_eq!(
        view(&ok(&after, "status")),
        (expected, all),
        "nothing changed"
    );

    let metrics = scrape(&lab.ns(2));
    for (name, at_least) in [
        ("lvs_members{state=\"alive\"}", 3.0),
        ("lvs_group_held{group=\"g1\"}", 1.0),
        ("lvs_vrrp_adverts_sent_total", 1.0),
        ("lvs_vrrp_adverts_received_total", 1.0),
        (
            "lvs_ownership_changes_total{group=\"g1\",change=\"acquired\"}",
            1.0,
        ),
        ("lvs_control_refused_total{transport=\"quic\"}", 2.0),
        ("lvs_gossip_datagrams_total{name=\"received\"}", 1.0),
    ] {
        let value = metrics.get(name).copied();
        assert!(
            value.is_some_and(|v| v >= at_least),
            "{name} = {value:?}, expected at least {at_least}: {metrics:?}"
        );
    }
    assert_eq!(metrics.get("lvs_members{state=\"down\"}"), Some(&0.0));

    // `watch` from lb2 follows lb1: drained, lb1 releases g1; undrained, takes it back.
    let mut watch = watch_lb1(&lab, &tls);
    std::thread::sleep(Duration::from_millis(500));
    ok(&call(&lab, 2, 1, &tls, &["drain"]), "drain lb1");
    watch.wait_for("lb1 released g1");
    ok(&call(&lab, 2, 1, &tls, &["undrain"]), "undrain lb1");
    watch.wait_for("lb1 acquired g1");

    // Called on lb3, a drain of lb1 is forwarded to lb1 over QUIC (lb3's node
    // certificate), and so is a move of g2 to lb1.
    ok(
        &call(&lab, 2, 3, &tls, &["drain", "lb1"]),
        "drain lb1 through lb3",
    );
    watch.wait_for("lb1 released g1");
    ok(
        &call(&lab, 2, 3, &tls, &["undrain", "lb1"]),
        "undrain lb1 through lb3",
    );
    watch.wait_for("lb1 acquired g1");
    let out = ok(
        &call(&lab, 2, 3, &tls, &["move", "g2", "lb1"]),
        "move g2 to lb1",
    );
    assert_eq!(out, "g2 held by lb1\n");
    watch.wait_for("lb1 acquired g2");
    assert!(
        !lab.addrs_in(2, "198.51.100.")
            .contains(&"198.51.100.12".parse().unwrap()),
        "lb2 gave g2 up"
    );
    // Moved back: lb2's later pin wins, lb1 drops its own.
    let out = ok(
        &call(&lab, 3, 1, &tls, &["move", "g2", "lb2"]),
        "move g2 back",
    );
    assert_eq!(out, "g2 held by lb2\n");
    watch.wait_for("lb1 released g2");
    let out = call(&lab, 3, 1, &tls, &["move", "g1", "lb9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("lb9 is not a live member of the cluster"),
        "a move to an unknown node: {err}"
    );
}

/// `lvs-cli watch` of lb1, run in lb2's namespace, its lines read by a thread.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn watch_lb1(lab: &Lab, tls: &Path) -> Watch {
    use std::io::BufRead as _;
    let args = remote("192.0.2.1:7947", tls.to_str().unwrap(), "ops", &["watch"]);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns(2)])
        .arg(lvs_cli())
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run lvs-cli watch");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Watch {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Watch {
    /// Waits for a line ending in `what` (after the time stamp).
    fn wait_for(&mut self, what: &str) {
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let found = line.ends_with(what);
                self.seen.push(line);
                if found {
                    return;
                }
            }
        }
        panic!("lvs-cli watch never said {what:?}; it said {:?}", self.seen);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /metrics from lb1, from inside namespace `ns`; every sample line parsed
/// (`name{labels} value`), comments and `# EOF` checked.
fn scrape(ns: &str) -> BTreeMap<String, f64> {
    let ns = ns.to_owned();
    let text = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        support::netns::enter(&ns);
        let mut stream = std::net::TcpStream::connect(METRICS).expect("connect to /metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: lb1\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    })
    .join()
    .expect("scrape thread");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let mut samples = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect("`name value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a number in {line:?}"));
        let bare = name.split('{').next().unwrap();
        assert!(
            !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "a metric name in {line:?}"
        );
        assert!(
            !name.contains('{') || name.ends_with('}'),
            "labels closed in {line:?}"
        );
        samples.insert(name.to_owned(), value);
    }
    samples
}

/// A QUIC client outside lvs-cli, for what lvs-cli never sends: no certificate, and
/// bytes that are not a request. It runs in lb2's namespace through a thread that
/// entered it.
struct RawClient {
    ns: String,
    tls: TlsFiles,
}

impl RawClient {
    fn new(lab: &Lab, tls: &Path) -> RawClient {
        RawClient {
            ns: lab.ns(2),
            tls: TlsFiles {
                ca: tls.join("ca.pem"),
                cert: tls.join("ops.pem"),
                key: tls.join("ops.key"),
            },
        }
    }

    fn exchange(&self, with_cert: bool, bytes: &'static [u8]) -> Result<Reply, String> {
        let ns = self.ns.clone();
        let tls = self.tls.clone();
        std::thread::spawn(move || {
            support::netns::enter(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(raw_exchange(&tls, with_cert, bytes))
        })
        .join()
        .expect("raw client thread")
    }
}

async fn raw_exchange(tls: &TlsFiles, with_cert: bool, bytes: &[u8]) -> Result<Reply, String> {
    let addr = "192.0.2.1:7947".parse().unwrap();
    let identity = Identity::load(tls).map_err(|e| e.to_string())?;
    let mut endpoint = quic::client_endpoint(&identity, addr).map_err(|e| e.to_string())?;
    if !with_cert {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&tls.ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![quic::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    }
    let connection = endpoint
        .connect(addr, lvs_control::pki::NODE_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| quic::explain(&e))?;
    let result = async {
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(bytes).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let reply = recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())?;
        ControlReply::decode_length_delimited(reply.as_slice())
            .map_err(|e| e.to_string())?
            .reply
            .ok_or_else(|| "empty reply".to_owned())
    }
    .await
    .map_err(|e| match connection.close_reason() {
        Some(reason) => quic::explain(&reason),
        None => e,
    });
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    result
}

#[test]
fn the_socket_serves_root_only_and_one_agent() {
    let mut lab = Lab::new("sock", 1);
    let tls = certificates(&lab);
    lab.write_key("cluster.key", &"2b".repeat(32));
    let cluster = lab.write("cluster.toml", &cluster_toml());
    let node = lab.write("lb1.toml", &node_toml(&lab, 1, &tls));
    lab.start_with(1, &node, &cluster, &["--log-format", "json"]);
    let socket = lab.socket(1);
    let socket_s = socket.to_str().unwrap().to_owned();
    let answered = poll(DEADLINE, || {
        ok_quiet(&cli(&lab, None, &["--socket", &socket_s, "members"]))
    });
    let members = answered.unwrap_or_else(|| panic!("lb1 answers:\n{}", lab.logs()));
    assert!(members.contains("lb1*"), "members: {members}");

    // Not root: the socket file's mode stops it, and so does the agent.
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(lvs_cli())
            .args(args)
            .output()
            .expect("run setpriv (util-linux)")
    };
    let out = as_nobody(&["--socket", &socket_s, "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("permission denied: run as root"),
        "a non-root caller: {err}"
    );
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let out = as_nobody(&["--socket", &socket_s, "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("serves root only (caller uid 65534)"),
        "a non-root caller on a loosened socket: {err}"
    );

    // A second agent on the same socket refuses to start; the first keeps serving.
    let second = lab.write(
        "lb9.toml",
        &node_toml(&lab, 1, &tls)
            .replace("id = \"lb1\"", "id = \"lb9\"")
            .replace("syncid = 1", "syncid = 9\ngossip_listen = \"192.0.2.1:7956\"\ncontrol_listen = \"192.0.2.1:7957\""),
    );
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(1),
            env!("CARGO_BIN_EXE_lvs-agent"),
            "run",
            "-c",
        ])
        .arg(&second)
        .arg("-c")
        .arg(&cluster)
        .output()
        .expect("run a second lvs-agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another lvs-agent answers there"),
        "a second agent on the socket: {err}"
    );
    assert!(
        ok_quiet(&cli(&lab, None, &["--socket", &socket_s, "members"])).is_some(),
        "the first agent still answers:\n{}",
        lab.logs()
    );

    // `--log-format json`: one JSON object per line, the refusals among them.
    let log = lab.log_text(1);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN"
                && l["fields"]["message"] == "control socket: caller refused"),
        "the refusal is logged as JSON:\n{log}"
    );
}

fn ok_quiet(out: &Output) -> Option<String> {
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_director_without_vip_groups_serves_the_api_and_says_what_it_lacks() {
    let mut lab = Lab::new("novip", 1);
    let tls = certificates(&lab);
    let cluster = lab.write("cluster.toml", "[cluster]\nname = \"ipvs-only\"\n");
    let node = lab.write("lb1.toml", &node_toml(&lab, 1, &tls));
    lab.start(1, &node, &cluster);
    let socket = lab.socket(1);
    let socket = socket.to_str().unwrap();
    let status = poll(DEADLINE, || {
        ok_quiet(&cli(&lab, None, &["--socket", socket, "status", "--json"]))
    })
    .unwrap_or_else(|| panic!("lb1 answers:\n{}", lab.logs()));
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["node_id"], "lb1");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(0));
    let out = cli(&lab, None, &["--socket", socket, "join", "192.0.2.9:7946"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("lb1 has no VIP groups: it runs IPVS only"),
        "join on a director in no cluster: {err}"
    );
    // Over QUIC as well.
    let out = call(&lab, 1, 1, &tls, &["status"]);
    assert!(
        ok(&out, "status over QUIC").contains("cluster as lb1 sees it"),
        "{out:?}"
    );
}

/// Node `i`'s file for the cluster document test: a `cluster_store`, join peers lb1
/// and lb2, and (`tls`) the QUIC control API.
fn store_node_toml(lab: &Lab, i: usize, tls: Option<&Path>) -> String {
    let mut text = format!(
        "[node]\nid = \"lb{i}\"\ninterface = \"eth0\"\naddress = \"192.0.2.{i}\"\nsyncid = {i}\n\
         join = [\"192.0.2.1:7946\", \"192.0.2.2:7946\"]\ncluster_key_files = [\"{}\"]\n\
         gossip_probe_period = 0.2\ncontrol_socket = \"{}\"\ncluster_store = \"{}\"\n",
        lab.dir.join("cluster.key").display(),
        lab.socket(i).display(),
        store(lab, i).display(),
    );
    if let Some(tls) = tls {
        text += &format!(
            "control_tls = {{ ca = \"{tls}/ca.pem\", cert = \"{tls}/lb{i}.pem\", key = \"{tls}/lb{i}.key\" }}\n",
            tls = tls.display()
        );
    }
    text
}

fn store(lab: &Lab, i: usize) -> PathBuf {
    lab.dir.join(format!("store-lb{i}")).join("cluster.toml")
}

/// (version, document digest) of every live member, as node `i` sees them.
fn documents(lab: &Lab, i: usize) -> BTreeMap<String, (u64, u64)> {
    let out = cli(
        lab,
        Some(i),
        &[
            "--socket",
            lab.socket(i).to_str().unwrap(),
            "members",
            "--json",
        ],
    );
    if !out.status.success() {
        return BTreeMap::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("members --json");
    v["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["live"].as_bool() == Some(true))
        .map(|m| {
            (
                m["node_id"].as_str().unwrap().to_owned(),
                (
                    m["config_version"].as_u64().unwrap_or(0),
                    m["document_digest"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

#[test]
fn a_cluster_document_reaches_every_node_and_an_invalid_one_none() {
    // lb1 and lb2 start from their files' cluster part (version 0), lb3 from its node
    // file alone, lb4 too but without control_tls: it cannot fetch documents.
    let mut lab = Lab::new("doc", 4);
    let tls = certificates(&lab);
    lab.write_key("cluster.key", &"2b".repeat(32));
    let files_part = lab.write("cluster.toml", "[cluster]\nname = \"lab\"\n");
    for i in 1..=4 {
        let node = lab.write(
            &format!("lb{i}.toml"),
            &store_node_toml(&lab, i, (i != 4).then_some(tls.as_path())),
        );
        if i <= 2 {
            lab.start(i, &node, &files_part);
        } else {
            lab.start_files(i, &[node.as_path()], &[]);
        }
    }
    let four_live = poll(DEADLINE, || (documents(&lab, 1).len() == 4).then_some(()));
    assert!(four_live.is_some(), "four live members:\n{}", lab.logs());
    let get = call(&lab, 1, 1, &tls, &["config", "get"]);
    assert!(
        !get.status.success()
            && String::from_utf8_lossy(&get.stderr).contains("no cluster document was applied"),
        "config get before any apply: {}",
        String::from_utf8_lossy(&get.stderr)
    );

    // Version 1, given to lb1 over QUIC: lb2 and lb3 fetch it; lb3 takes g3.
    let doc1 = cluster_toml();
    let doc1_path = lab.write("doc1.toml", &doc1);
    let out = ok(
        &call(
            &lab,
            2,
            1,
            &tls,
            &["apply", "-f", doc1_path.to_str().unwrap()],
        ),
        "apply doc1",
    );
    assert!(out.starts_with("applied as version 1"), "{out}");
    let digest1 = lvs_agent::document::digest(&doc1);
    let on_three = |lab: &Lab, version: u64, digest: u64| {
        (1..=3).all(|i| {
            let docs = documents(lab, i);
            (1..=3).all(|j| docs.get(&format!("lb{j}")) == Some(&(version, digest)))
        })
    };
    let spread = poll(DEADLINE, || on_three(&lab, 1, digest1).then_some(()));
    assert!(
        spread.is_some(),
        "lb1..lb3 run version 1 and see each other run it: {:?}\n{}",
        documents(&lab, 3),
        lab.logs()
    );
    let held = poll(DEADLINE, || {
        (1..=3)
            .all(|i| {
                lab.addrs_in(i, "198.51.100.")
                    .contains(&format!("198.51.100.{}", 10 + i).parse().unwrap())
            })
            .then_some(())
    });
    assert!(
        held.is_some(),
        "each of lb1..lb3 holds its preferred group, lb3 from the fetched document:\n{}",
        lab.logs()
    );
    let stored = std::fs::read_to_string(store(&lab, 3)).expect("lb3 stored the document");
    assert_eq!(
        stored,
        format!("# lvs-mesh cluster document version 1\n{doc1}")
    );
    let got = ok(&call(&lab, 1, 3, &tls, &["config", "get"]), "config get");
    assert!(got.ends_with(&doc1), "config get from lb3:\n{got}");
    // lb4 cannot fetch it: skew, and its log says why.
    let status = ok(&call(&lab, 1, 1, &tls, &["status"]), "status");
    assert!(
        status.contains("document skew: lb4 runs files, the newest is v1"),
        "status warns of lb4:\n{status}"
    );
    assert!(
        lab.log_text(4).contains("node.control_tls is not set"),
        "lb4 logs why it runs an older document:\n{}",
        lab.log_text(4)
    );

    // Invalid documents are refused by the node given them, with the precise error,
    // and no node changes.
    let bad = lab.write("bad.toml", &doc1.replacen("vrrp_id = 11", "vrrp_id = 0", 1));
    let out = call(&lab, 2, 2, &tls, &["apply", "-f", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("nothing applied")
            && err.contains("vip_group[0].vrrp_id"),
        "an invalid document: {err}"
    );
    let with_node = lab.write("with-node.toml", &format!("{doc1}\n[node]\nid = \"x\"\n"));
    let out = call(
        &lab,
        2,
        2,
        &tls,
        &["apply", "-f", with_node.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("node: not in a cluster document"),
        "a document with [node]: {err}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(on_three(&lab, 1, digest1), "still version 1 everywhere");
    assert_eq!(
        std::fs::read_to_string(store(&lab, 2)).unwrap(),
        format!("# lvs-mesh cluster document version 1\n{doc1}"),
        "lb2's store unchanged"
    );

    // Version 2 from lb2 (g3 now prefers lb2): it moves there everywhere.
    let doc2 = doc1.replacen("lb3 = 150", "lb2 = 160", 1);
    let doc2_path = lab.write("doc2.toml", &doc2);
    let out = ok(
        &cli(
            &lab,
            Some(2),
            &[
                "--socket",
                lab.socket(2).to_str().unwrap(),
                "apply",
                "-f",
                doc2_path.to_str().unwrap(),
            ],
        ),
        "apply doc2 on the local socket",
    );
    assert!(out.starts_with("applied as version 2"), "{out}");
    let digest2 = lvs_agent::document::digest(&doc2);
    let moved = poll(DEADLINE, || {
        (on_three(&lab, 2, digest2)
            && lab
                .addrs_in(2, "198.51.100.")
                .contains(&"198.51.100.13".parse().unwrap()))
        .then_some(())
    });
    assert!(
        moved.is_some(),
        "version 2 everywhere, g3 on lb2: {:?}\n{}",
        documents(&lab, 1),
        lab.logs()
    );

    // lb3 restarts from its node file alone: it runs its stored version 2 at once.
    lab.kill(3);
    let node3 = lab.dir.join("lb3.toml");
    lab.start_files(3, &[node3.as_path()], &[]);
    let back = poll(DEADLINE, || on_three(&lab, 2, digest2).then_some(()));
    assert!(back.is_some(), "lb3 back on version 2:\n{}", lab.logs());
    assert!(
        lab.log_text(3).contains("(v2 "),
        "lb3 started from its stored version 2:\n{}",
        lab.log_text(3)
    );
}

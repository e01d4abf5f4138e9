//! The Debian package (deploy/package/build-deb) from this tree's binaries: installed
//! by dpkg into a root of its own (`--root --force-script-chrootless`; the maintainer
//! scripts honour DPKG_ROOT), laid out as documented, its postinst generating the
//! cluster key once (mode 0600) and purge removing it; and two directors started from
//! the installed files the way the unit starts them (its ExecStart and AGENT_ARGS,
//! paths under the root, in network namespaces) tell a stand-in systemd READY,
//! RELOADING on SIGHUP and STOPPING on SIGTERM, as `Type=notify` expects. Needs root,
//! dpkg, and the workspace's binaries built (`cargo build --workspace --bins`, as
//! deploy/test does first).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::bridge_lab::Lab;
use support::netns::require_root;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the package from the binaries next to this test's lvs-agent.
fn build(out: &Path) -> PathBuf {
    let bins = Path::new(env!("CARGO_BIN_EXE_lvs-agent")).parent().unwrap();
    assert!(
        bins.join("lvs-cli").exists(),
        "{}/lvs-cli is missing: build the workspace's binaries first (cargo build --workspace --bins)",
        bins.display()
    );
    let run = Command::new(repo().join("deploy/package/build-deb"))
        .args(["--profile", "dev", "--no-build", "--out"])
        .arg(out)
        .env("CARGO_TARGET_DIR", bins.parent().unwrap())
        .output()
        .expect("run deploy/package/build-deb");
    assert!(
        run.status.success(),
        "build-deb: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&run.stdout).trim())
}

fn dpkg(root: &Path, args: &[&str]) {
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args)
        .output()
        .expect("run dpkg");
    assert!(
        out.status.success(),
        "dpkg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The next notification within `limit`.
fn next(socket: &UnixDatagram, limit: Duration) -> Option<String> {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The installed unit's command line: ExecStart with `$AGENT_ARGS` from its
/// Environment= (or the installed /etc/default/lvs-agent), absolute paths moved under
/// `root`.
fn unit_command(root: &Path) -> (PathBuf, Vec<String>) {
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/lvs-agent.service")).unwrap();
    let value = |text: &str, prefix: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .map(|v| v.trim_matches('"').to_owned())
        })
    };
    let defaults = std::fs::read_to_string(root.join("etc/default/lvs-agent")).unwrap();
    let args = value(&defaults, "AGENT_ARGS=")
        .or_else(|| value(&unit, "Environment=\"AGENT_ARGS="))
        .expect("AGENT_ARGS");
    let exec = value(&unit, "ExecStart=").expect("ExecStart");
    let rooted = |w: &str| match w.strip_prefix('/') {
        Some(rel) => root.join(rel).display().to_string(),
        None => w.to_owned(),
    };
    let mut words = exec.split_whitespace().flat_map(|w| match w {
        "$AGENT_ARGS" => args.split_whitespace().map(rooted).collect::<Vec<_>>(),
        w => vec![rooted(w)],
    });
    let program = PathBuf::from(words.next().unwrap());
    (program, words.collect())
}

#[test]
fn the_package_installs_and_its_agent_starts_as_the_unit_starts_it() {
    require_root();
    let mut lab = Lab::new("pk", 2);
    let deb = build(&lab.dir.join("deb"));
    let root = lab.dir.join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    dpkg(&root, &["-i", deb.to_str().unwrap()]);

    for (file, want) in [
        ("usr/bin/lvs-agent", 0o755),
        ("usr/bin/lvs-cli", 0o755),
        ("usr/share/man/man1/lvs-agent.1.gz", 0o644),
        ("usr/share/man/man1/lvs-cli.1.gz", 0o644),
        ("lib/systemd/system/lvs-agent.service", 0o644),
        ("lib/systemd/system/lvs-realserver.service", 0o644),
        ("etc/default/lvs-agent", 0o644),
        ("usr/share/doc/lvs-mesh/README.md", 0o644),
        ("usr/share/doc/lvs-mesh/REFERENCE.md", 0o644),
        ("usr/share/doc/lvs-mesh/examples/seed-cluster.toml", 0o644),
        ("etc/lvs-mesh/cluster.key", 0o600),
        ("var/lib/lvs-mesh", 0o700),
    ] {
        assert_eq!(mode(&root.join(file)), want, "{file}");
    }
    let conffiles =
        std::fs::read_to_string(root.join("var/lib/dpkg/info/lvs-mesh.conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/default/lvs-agent");
    let key_path = root.join("etc/lvs-mesh/cluster.key");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert!(
        key.len() == 65 && key.trim_end().chars().all(|c| c.is_ascii_hexdigit()),
        "{key:?}"
    );
    // Installing again keeps the key the cluster already shares.
    dpkg(&root, &["-i", deb.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key);

    // The unit's ExecStart, with the files the package laid out and the key it made.
    let (program, args) = unit_command(&root);
    assert_eq!(program, root.join("usr/bin/lvs-agent"));
    assert_eq!(
        args,
        [
            "run".to_owned(),
            "-c".into(),
            root.join("etc/lvs-mesh/node.toml").display().to_string(),
            "-c".into(),
            root.join("etc/lvs-mesh/cluster.toml").display().to_string(),
        ]
    );
    let cluster_text = "[cluster]\nname = \"pk\"\n\n[[vip_group]]\nname = \"g1\"\nvrrp_id = 21\n\
         addresses = [\"198.51.100.21/24\"]\nversion = 3\nadvert_int = 0.2\n";
    let node = |i: usize, peer: usize| {
        format!(
            "[node]\nid = \"lb{i}\"\ninterface = \"eth0\"\naddress = \"192.0.2.{i}\"\nsyncid = {i}\n\
             join = [\"192.0.2.{peer}:7946\"]\ncluster_key_files = [\"{}\"]\n\
             gossip_probe_period = 0.2\ncontrol_socket = \"{}\"\n",
            key_path.display(),
            lab.socket(i).display()
        )
    };
    std::fs::write(root.join("etc/lvs-mesh/node.toml"), node(1, 2)).unwrap();
    std::fs::write(root.join("etc/lvs-mesh/cluster.toml"), cluster_text).unwrap();
    let lb2 = lab.write("lb2.toml", &node(2, 1));
    let cluster = root.join("etc/lvs-mesh/cluster.toml");
    lab.start_program(
        2,
        &program,
        &[
            "run",
            "-c",
            lb2.to_str().unwrap(),
            "-c",
            cluster.to_str().unwrap(),
        ]
        .map(String::from),
        &[],
    );
    // The test plays systemd: a datagram socket, named in NOTIFY_SOCKET.
    let path = lab.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let started = Instant::now();
    lab.start_program(
        1,
        &program,
        &args,
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let ready = next(&socket, Duration::from_secs(60));
    let ready = ready.unwrap_or_else(|| panic!("no READY=1 within 60 s:\n{}", lab.logs()));
    assert!(
        ready.starts_with("READY=1\n")
            && ready.contains("STATUS=lb1 in cluster \"pk\" (files): 0 services, 1 VIP groups"),
        "{ready:?}"
    );
    // Ready only once the gossip view formed: lb2 is a member by then.
    let status = lab.status(1);
    assert!(
        status.contains("member lb2 192.0.2.2:7946 live"),
        "READY after {:?}, lb2 known:\n{status}",
        started.elapsed()
    );

    lab.signal(1, "HUP");
    let reloading = next(&socket, Duration::from_secs(20)).expect("RELOADING=1");
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let again = next(&socket, Duration::from_secs(20)).expect("READY=1 after the reload");
    assert!(again.starts_with("READY=1\nSTATUS=lb1"), "{again:?}");

    lab.signal(1, "TERM");
    let stopping = next(&socket, Duration::from_secs(20)).expect("STOPPING=1");
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");

    // Purge removes the binaries, the generated key and the state directory.
    dpkg(&root, &["--purge", "lvs-mesh"]);
    for gone in [
        "usr/bin/lvs-agent",
        "etc/lvs-mesh/cluster.key",
        "var/lib/lvs-mesh",
    ] {
        assert!(!root.join(gone).exists(), "{gone} after purge");
    }
}

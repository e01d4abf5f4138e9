//! Running as a systemd service: the unit files verify with `systemd-analyze verify`,
//! and a real `lvs-agent run` (in a network namespace, two directors) tells systemd it
//! is ready, reloading and stopping over `$NOTIFY_SOCKET` as `Type=notify` expects.
//! Needs root and systemd-analyze; fails without them.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::bridge_lab::Lab;

const UNIT: &str = "../deploy/systemd/lvs-agent.service";

#[test]
fn the_unit_files_verify() {
    verify(UNIT, &["Type=notify", "ExecReload=/bin/kill -HUP $MAINPID"]);
    verify(
        "../deploy/systemd/lvs-realserver.service",
        &["ExecStop=/usr/bin/lvs-agent realserver down"],
    );
}

fn verify(file: &str, lines: &[&str]) {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).expect(file);
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let dir = std::env::temp_dir().join(format!("lvs-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(Path::new(file).file_name().unwrap());
    std::fs::write(
        &path,
        unit.replace("/usr/bin/lvs-agent", env!("CARGO_BIN_EXE_lvs-agent")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd; deploy/lab/install-deps installs it)");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in lines {
        assert!(unit.contains(line), "{file} has {line}");
    }
}

/// The next notification within `limit`.
fn next(socket: &UnixDatagram, limit: Duration) -> Option<String> {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn the_agent_tells_systemd_it_is_ready_reloading_and_stopping() {
    let mut lab = Lab::new("sd", 2);
    lab.write_key("cluster.key", &"3c".repeat(32));
    let cluster = lab.write(
        "cluster.toml",
        "[cluster]\nname = \"sd\"\n\n[[vip_group]]\nname = \"g1\"\nvrrp_id = 21\n\
         addresses = [\"198.51.100.21/24\"]\nversion = 3\nadvert_int = 0.2\n",
    );
    let node = |i: usize, peer: usize| {
        format!(
            "[node]\nid = \"lb{i}\"\ninterface = \"eth0\"\naddress = \"192.0.2.{i}\"\nsyncid = {i}\n\
             join = [\"192.0.2.{peer}:7946\"]\ncluster_key_files = [\"{}\"]\n\
             gossip_probe_period = 0.2\ncontrol_socket = \"{}\"\n",
            lab.dir.join("cluster.key").display(),
            lab.socket(i).display()
        )
    };
    let (lb1, lb2) = (node(1, 2), node(2, 1));
    let lb2 = lab.write("lb2.toml", &lb2);
    let lb1 = lab.write("lb1.toml", &lb1);
    lab.start(2, &lb2, &cluster);
    // The test plays systemd: a datagram socket, named in NOTIFY_SOCKET.
    let path = lab.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let started = Instant::now();
    lab.start_env(
        1,
        &[lb1.as_path(), cluster.as_path()],
        &[],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let ready = next(&socket, Duration::from_secs(60));
    let ready = ready.unwrap_or_else(|| panic!("no READY=1 within 60 s:\n{}", lab.logs()));
    assert!(
        ready.starts_with("READY=1\n")
            && ready.contains("STATUS=lb1 in cluster \"sd\" (files): 0 services, 1 VIP groups"),
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
}

#[test]
fn the_man_page_covers_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_lvs-agent"))
        .arg("man")
        .output()
        .expect("run lvs-agent man");
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && man.starts_with(".ie"), "{man}");
    for command in [
        "check\\-config",
        "run",
        "join",
        "drain",
        "undrain",
        "status",
        "keygen",
    ] {
        assert!(man.contains(command), "the man page lacks {command}");
    }
}

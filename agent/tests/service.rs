//! Running as a systemd service: the unit files verify with `systemd-analyze verify`,
//! and the man page covers every command. (The agent's readiness, reload and stop
//! notifications are tested on the installed package: tests/package.rs.) Needs
//! systemd-analyze; fails without it.

use std::path::Path;
use std::process::Command;

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
        "realserver",
        "import\\-keepalived",
    ] {
        assert!(man.contains(command), "the man page lacks {command}");
    }
}

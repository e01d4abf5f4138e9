//! Runs the real `lvs-agent check-config` on the shipped examples and on every file in
//! tests/bad_configs/. A bad config states its exact stderr lines in `# expect: ...`
//! header comments (in order) and optional environment overrides in `# env: K=V`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check_config(file: &Path, env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lvs-agent"));
    cmd.arg("check-config").arg(file);
    // Overrides from the caller's environment would change the outcome.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("LVS_")) {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("run lvs-agent")
}

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// The `# tag: value` header lines of a bad config.
fn header(text: &str, tag: &str) -> Vec<String> {
    let prefix = format!("# {tag}: ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_example_passes_with_one_summary_line() {
    let files = toml_files("../deploy/examples");
    assert!(files.len() >= 7, "examples missing: {files:?}");
    for file in files {
        let out = check_config(&file, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", file.display());
        assert_eq!(stderr, "", "{}", file.display());
        let prefix = format!("{}: ok: ", file.display());
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.starts_with(&prefix), "{stdout}");
    }
}

#[test]
fn seed_examples_summaries() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let expect = [
        (
            "seed-cluster.toml",
            "ok: cluster \"seed\": 2 vip groups (2 addresses), 2 services, 4 real servers",
        ),
        (
            "seed-ha_lb_01.toml",
            "ok: node ha_lb_01 (syncid 1) on ens18 172.16.0.10",
        ),
        (
            "seed-ha_lb_02.toml",
            "ok: node ha_lb_02 (syncid 2) on ens18 172.16.0.11",
        ),
        (
            "seed-ha_lb_03.toml",
            "ok: node ha_lb_03 (syncid 3) on ens18 172.16.0.12",
        ),
    ];
    for (name, summary) in expect {
        let file = dir.join(name);
        let out = check_config(&file, &[]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}: {summary}\n", file.display())
        );
    }
}

#[test]
fn every_bad_config_is_rejected_with_its_exact_lines() {
    let files = toml_files("tests/bad_configs");
    assert!(files.len() >= 25, "only {} bad configs", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read bad config");
        let expect: Vec<String> = header(&text, "expect")
            .into_iter()
            .map(|e| format!("{}: {e}", file.display()))
            .collect();
        assert!(
            !expect.is_empty(),
            "{} has no # expect line",
            file.display()
        );
        let env: Vec<(String, String)> = header(&text, "env")
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("# env: KEY=VALUE");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let out = check_config(&file, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "{}",
            file.display()
        );
        assert_eq!(
            stderr.lines().collect::<Vec<_>>(),
            expect,
            "{}",
            file.display()
        );
    }
}

#[test]
fn good_and_bad_files_together_fail_but_summarise_the_good_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let good = root.join("../deploy/examples/seed-cluster.toml");
    let bad = root.join("tests/bad_configs/syncid_zero.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_lvs-agent"))
        .arg("check-config")
        .arg(&good)
        .arg(&bad)
        .env_remove("LVS_NODE__SYNCID")
        .output()
        .expect("run lvs-agent");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: node.syncid: 0 is out of range 1..=255\n",
            bad.display()
        )
    );
}

#[test]
fn env_override_reaches_a_good_file() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/seed-ha_lb_01.toml");
    let out = check_config(&file, &[("LVS_NODE__SYNCID".into(), "7".into())]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("(syncid 7)"));
}

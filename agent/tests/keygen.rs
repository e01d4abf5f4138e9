//! `lvs-agent keygen`: the key it writes, the file mode, and no overwrite.

use std::{os::unix::fs::PermissionsExt as _, process::Command};

use lvs_agent::membership::ClusterKey;

fn keygen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lvs-agent"))
        .arg("keygen")
        .args(args)
        .output()
        .expect("run lvs-agent keygen")
}

fn is_key_text(text: &str) -> bool {
    text.strip_suffix('\n').is_some_and(|digits| {
        digits.len() == 64
            && digits
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

#[test]
fn keygen_prints_a_fresh_key_to_stdout() {
    let (a, b) = (keygen(&[]), keygen(&[]));
    assert!(a.status.success(), "{a:?}");
    let (a, b) = (
        String::from_utf8(a.stdout).unwrap(),
        String::from_utf8(b.stdout).unwrap(),
    );
    assert!(is_key_text(&a), "{a:?}");
    assert_ne!(a, b, "two keys alike");
    assert!(ClusterKey::parse(&a).is_ok());
}

#[test]
fn keygen_output_creates_a_private_key_file_and_never_overwrites_it() {
    let path = std::env::temp_dir().join(format!("lvs-keygen-{}.key", std::process::id()));
    let shown = path.display().to_string();
    let first = keygen(&["--output", &shown]);
    let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let loaded = ClusterKey::load(&path);
    let second = keygen(&["--output", &shown]);
    let after = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);

    assert!(first.status.success(), "{first:?}");
    assert!(first.stdout.is_empty(), "the key went to stdout too");
    assert_eq!(mode.unwrap(), 0o600);
    assert!(is_key_text(&text), "{text:?}");
    assert!(loaded.is_ok(), "{loaded:?}");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&shown) && err.contains("not overwritten"),
        "{err}"
    );
    assert_eq!(after, text, "the existing key was overwritten");
}

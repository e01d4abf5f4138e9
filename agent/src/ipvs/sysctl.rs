//! The `net.ipv4.vs.*` settings of `[sync]`: the mapping is pure ([`settings`]),
//! [`apply`] writes the ones that differ under /proc/sys (per network namespace,
//! present once ip_vs is loaded).

use std::path::Path;

use tracing::info;

use crate::config::SyncConfig;

/// Where the IPVS sysctls live.
pub const DIR: &str = "/proc/sys/net/ipv4/vs";

/// Each sysctl name with the value the config asks for, as the kernel prints it
/// (words separated by one space).
pub fn settings(sync: &SyncConfig) -> Vec<(&'static str, String)> {
    let flag = |b: bool| u8::from(b).to_string();
    let [threshold, period] = sync.sync_threshold;
    vec![
        ("sync_version", sync.sync_version.to_string()),
        ("sync_threshold", format!("{threshold} {period}")),
        (
            "sync_refresh_period",
            sync.sync_refresh_period.as_secs().to_string(),
        ),
        ("sync_persist_mode", flag(sync.sync_persist_mode)),
        ("expire_nodest_conn", flag(sync.expire_nodest_conn)),
        (
            "expire_quiescent_template",
            flag(sync.expire_quiescent_template),
        ),
        ("conntrack", flag(sync.conntrack)),
    ]
}

/// Whether the kernel's text already holds `want` (it separates words by tabs).
fn same(current: &str, want: &str) -> bool {
    current.split_whitespace().eq(want.split_whitespace())
}

/// Writes every setting that differs under `dir`, logging each change; returns
/// one message per setting that could not be read or written.
pub fn apply(dir: &Path, sync: &SyncConfig) -> Vec<String> {
    let mut errors = Vec::new();
    for (name, want) in settings(sync) {
        let path = dir.join(name);
        let result = std::fs::read_to_string(&path).and_then(|current| {
            if same(&current, &want) {
                return Ok(false);
            }
            std::fs::write(&path, format!("{want}\n")).map(|()| true)
        });
        match result {
            Ok(true) => info!("ipvs: set net.ipv4.vs.{name} = {want}"),
            Ok(false) => {}
            Err(e) => errors.push(format!("cannot set {}: {e}", path.display())),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn defaults_are_the_kernels_but_refresh_by_time() {
        let got = settings(&SyncConfig::default());
        let want = [
            ("sync_version", "1"),
            ("sync_threshold", "3 0"),
            ("sync_refresh_period", "2"),
            ("sync_persist_mode", "0"),
            ("expire_nodest_conn", "0"),
            ("expire_quiescent_template", "0"),
            ("conntrack", "0"),
        ];
        assert_eq!(
            got.iter()
                .map(|(n, v)| (*n, v.as_str()))
                .collect::<Vec<_>>(),
            want
        );
    }

    #[test]
    fn options_map_to_values() {
        let sync = SyncConfig {
            sync_threshold: [0, 0],
            sync_refresh_period: Duration::from_secs(30),
            expire_nodest_conn: true,
            ..SyncConfig::default()
        };
        let got = settings(&sync);
        assert!(got.contains(&("sync_threshold", "0 0".to_owned())));
        assert!(got.contains(&("sync_refresh_period", "30".to_owned())));
        assert!(got.contains(&("expire_nodest_conn", "1".to_owned())));
    }

    #[test]
    fn writes_only_what_differs() {
        let dir = std::env::temp_dir().join(format!("lvs-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in settings(&SyncConfig::default()) {
            std::fs::write(dir.join(name), value.replace(' ', "\t") + "\n").unwrap();
        }
        std::fs::remove_file(dir.join("conntrack")).unwrap();
        let sync = SyncConfig {
            sync_persist_mode: true,
            ..SyncConfig::default()
        };
        let errors = apply(&dir, &sync);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("conntrack"));
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        assert_eq!(read("sync_persist_mode"), "1\n");
        assert_eq!(
            read("sync_threshold"),
            "3\t0\n",
            "unchanged, as the kernel wrote it"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

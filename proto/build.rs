//! Compiles every `.proto` under `lvs/` with protox (pure Rust), so no system
//! `protoc` is needed to build the workspace.
use std::path::{Path, PathBuf};

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// Messages `lvs-cli --json` prints (every control reply and what it holds).
const CONTROL_REPLIES: &[&str] = &[
    "StatusReply",
    "MemberStatus",
    "GroupStatus",
    "ServiceStatus",
    "RealServerStatus",
    "JoinReply",
    "DrainReply",
    "ServicesReply",
    "IpvsService",
    "IpvsDestination",
    "IpvsStats",
    "ConnectionsReply",
    "IpvsConnection",
    "DaemonsReply",
    "SyncDaemonStatus",
    "ClusterEvent",
    "ClusterDocument",
    "ConfigApplyReply",
    "MoveReply",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    proto_files(Path::new("lvs"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=lvs");
    let fds = protox::compile(&files, ["."])?;
    let mut config = prost_build::Config::new();
    // The status reply is far larger than the other replies: boxed, the reply enum
    // stays small.
    config.boxed(".lvs.v1.ControlReply.reply.status");
    // The control replies are printed as JSON by `lvs-cli --json`.
    for message in CONTROL_REPLIES {
        config.type_attribute(format!(".lvs.v1.{message}"), "#[derive(serde::Serialize)]");
    }
    config.compile_fds(fds)?;
    Ok(())
}

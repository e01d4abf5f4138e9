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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    proto_files(Path::new("lvs"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=lvs");
    let fds = protox::compile(&files, ["."])?;
    prost_build::Config::new()
        // The status reply is far larger than the other replies: boxed, the reply enum
        // stays small.
        .boxed(".lvs.v1.ControlReply.reply.status")
        .compile_fds(fds)?;
    Ok(())
}

//! `lvs-cli`: the operator's view of an lvs-mesh cluster. It only identifies itself: the
//! remote control API (QUIC + protobuf) is not built yet; `lvs-agent status` is the local view.
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "lvs-cli",
    version,
    about = "Operator CLI for an lvs-mesh cluster"
)]
struct Cli {}

fn main() {
    Cli::parse();
}

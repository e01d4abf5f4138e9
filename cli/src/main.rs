//! `lvs-cli`: the operator's view of an lvs-mesh cluster. The control API it talks to
//! (QUIC + protobuf) comes with the control-plane work; until then it only identifies itself.
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

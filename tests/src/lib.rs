//! The lvs-mesh lab: a qemu VM booting a real IPVS kernel, network-namespace
//! topologies, and the scenarios the integration tests run in them.
//!
//! Host side: [`vm::Lab`] fetches the kernel, builds the initramfs and boots it.
//! Guest side: the `lvs-lab-guest` binary runs the [`scenarios`] named on the kernel
//! command line and sends one [`lvs_proto::v1::ScenarioReport`] per scenario back
//! over the [`wire`]. [`topology`], [`shell`] and [`holders`] (who holds each VIP,
//! from the interfaces and the wire) work in the VM and on the host alike.

pub mod fetch;
pub mod guest;
pub mod holders;
pub mod ipvs_bench;
pub mod ipvs_rules;
pub mod ipvsadm;
pub mod scenario;
pub mod scenarios;
pub mod servers;
pub mod shell;
pub mod stream;
pub mod topology;
pub mod vm;
pub mod wire;

//! The lvs-mesh lab: a qemu VM booting a real IPVS kernel, network-namespace
//! topologies, and the scenarios the integration tests run in them.

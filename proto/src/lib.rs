//! The lvs-mesh wire contract. One module per protobuf package under `proto/lvs/`.

/// `lvs.v1`: the first version of every message lvs-mesh defines.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/lvs.v1.rs"));
}

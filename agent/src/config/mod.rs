//! Configuration: this director's `[node]` part and the cluster part (sync, VIP groups,
//! services), loaded with figment (TOML + `LVS_*` environment overrides) and validated.
//!
//! Errors name the key path (`service[2].real_server[0].port`, 0-based indices) or the
//! line of a TOML syntax error. Structural errors stop at the first; semantic errors are
//! all reported. The operator's reference is deploy/examples/REFERENCE.md.

mod de;
mod error;
mod load;
mod model;
mod types;
mod validate;

pub use error::{ConfigError, ConfigErrors, Location};
pub use load::{load, load_all, parse, parse_document, ENV_PREFIX};
pub use model::{
    Authentication, Check, ClusterConfig, Config, ControlTls, NodeConfig, RealServer, Service,
    SorryServer, SyncConfig, UrlCheck, VipGroup, VrrpObey, DEFAULT_CONTROL_PORT,
    DEFAULT_GOSSIP_PORT,
};
pub use types::{
    family_label, family_name, AuthType, CheckKind, DnsType, Family, Forwarding, NodeId, Priority,
    Protocol, SchedFlag, Scheduler, StatusRange, TunnelChecksum, TunnelType, VipAddress,
    VrrpVersion,
};

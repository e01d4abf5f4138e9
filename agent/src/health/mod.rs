//! Health checks of the real servers, with keepalived's semantics.
//!
//! - [`spec`]: the config's checks as [`CheckKey`]s; equal keys are probed once, so a
//!   real server behind many services or ports costs one probe per interval.
//! - [`checker`]: one check's state machine (`retry`, `delay_before_retry`,
//!   `delay_loop`, `alpha`), pure.
//! - [`pool`]: a service's pool from its real servers' health (`quorum`,
//!   `hysteresis`, `sorry_server`, `inhibit_on_failure`), pure.
//! - [`probe`], [`tls`], [`dns`]: the probes (`tcp_check`, `http_get`, `ssl_get`,
//!   `misc_check`, `dns_check`).
//! - [`runner`]: the task that schedules the probes and publishes the verdicts.
//! - [`view`]: the verdicts as one bit per real server, for gossip and status.
//!
//! Every director runs its own probes and acts on them: its own path to a real
//! server is the one its traffic takes. A real server is up when all its checks are.

pub mod checker;
pub mod dns;
pub mod pool;
pub mod probe;
pub mod runner;
pub mod spec;
mod tls;
pub mod view;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use checker::Verdict;
pub use spec::CheckKey;

use crate::config::{RealServer, Service};
use crate::ipvs::model::ServiceKey;

/// Every check's verdict, as last published.
pub type Verdicts = BTreeMap<CheckKey, Verdict>;

/// What the desired IPVS state reads: the verdicts and each service's quorum state.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub verdicts: Arc<Verdicts>,
    /// Quorum state per service, `true` at start.
    quorum_up: BTreeMap<Option<ServiceKey>, bool>,
}

impl Health {
    /// Verdicts as published, every quorum state at its start.
    pub fn new(verdicts: Arc<Verdicts>) -> Self {
        Health {
            verdicts,
            quorum_up: BTreeMap::new(),
        }
    }

    /// Real server `rs` of `service`: up when every check is (a check with no verdict
    /// yet counts as its initial state: up, or down under `alpha`); its weight is a
    /// dynamic check's, else the configured one.
    pub fn member(&self, service: &Service, rs: &RealServer) -> pool::Member {
        let mut up = true;
        let mut weight = rs.weight;
        for key in spec::checks(service, rs) {
            match self.verdicts.get(&key) {
                Some(v) => {
                    up &= v.up;
                    if let Some(w) = v.weight {
                        weight = w;
                    }
                }
                None => up &= !key.alpha,
            }
        }
        pool::Member {
            up,
            weight,
            inhibit_on_failure: service.inhibit_on_failure_of(rs),
        }
    }

    /// The pool of `service` now; updates its quorum state.
    pub fn pool(&mut self, service: &Service) -> pool::Pool {
        let members: Vec<pool::Member> = service
            .real_servers
            .iter()
            .map(|rs| self.member(service, rs))
            .collect();
        let spec = pool::QuorumSpec {
            quorum: service.quorum,
            hysteresis: service.hysteresis,
            has_sorry_server: service.sorry_server.is_some(),
        };
        let quorum_up = self.quorum_up.entry(service.key()).or_insert(true);
        pool::pool(&spec, &members, quorum_up)
    }
}

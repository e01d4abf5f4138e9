//! Prometheus exposition on `[node] metrics_listen` (GET /metrics, OpenMetrics text,
//! prometheus-client). Two kinds of figures:
//! - counted as they happen, by the task that does the work ([`Metrics`], shared
//!   atomics): IPVS operations and reconcile durations, VRRP adverts sent and
//!   received, ownership changes, control API callers refused, sync daemons wanted;
//! - read from the cluster task at each scrape ([`snapshot`], from the same status
//!   `lvs-cli status` shows): members by state, groups held, VRRP adverts dropped by
//!   reason, gossip datagrams by outcome, real servers healthy per service.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lvs_proto::v1::StatusReply;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::cluster::ClusterHandle;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassKind {
    pub pass: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Change {
    pub group: String,
    pub change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Transport {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Role {
    pub role: &'static str,
}

/// Figures counted as they happen.
pub struct Metrics {
    /// IPVS change requests, by `result` (`ok`, `error`).
    pub ipvs_ops: Family<Outcome, Counter>,
    /// Reconcile passes' durations, by `pass` (`drift`, `changes`).
    pub reconcile: Family<PassKind, Histogram, fn() -> Histogram>,
    pub adverts_sent: Counter,
    pub adverts_received: Counter,
    /// Groups acquired and released, by `group` and `change`.
    pub ownership: Family<Change, Counter>,
    /// Control API callers refused, by `transport` (`quic`: the TLS handshake,
    /// `unix`: not root).
    pub control_refused: Family<Transport, Counter>,
    /// Sync daemons this node wants running, by `role` (`master`, `backup`): 0 or 1.
    pub sync_daemons: Family<Role, Gauge<i64, std::sync::atomic::AtomicI64>>,
}

/// Buckets from 1 ms to ~16 s: a pass at 10,000 real servers takes seconds.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            ipvs_ops: Family::default(),
            reconcile: Family::new_with_constructor(reconcile_histogram),
            adverts_sent: Counter::default(),
            adverts_received: Counter::default(),
            ownership: Family::default(),
            control_refused: Family::default(),
            sync_daemons: Family::default(),
        })
    }

    fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "lvs_ipvs_operations",
            "IPVS change requests sent to the kernel",
            self.ipvs_ops.clone(),
        );
        registry.register(
            "lvs_reconcile_duration_seconds",
            "IPVS reconcile passes",
            self.reconcile.clone(),
        );
        registry.register(
            "lvs_vrrp_adverts_sent",
            "VRRP adverts this node sent",
            self.adverts_sent.clone(),
        );
        registry.register(
            "lvs_vrrp_adverts_received",
            "valid VRRP adverts received for a configured group",
            self.adverts_received.clone(),
        );
        registry.register(
            "lvs_ownership_changes",
            "VIP groups acquired or released by this node",
            self.ownership.clone(),
        );
        registry.register(
            "lvs_control_refused",
            "control API callers refused",
            self.control_refused.clone(),
        );
        registry.register(
            "lvs_sync_daemons",
            "IPVS sync daemons this node runs (1) or not (0)",
            self.sync_daemons.clone(),
        );
    }

    /// Counts one finished reconcile pass.
    pub fn reconciled(&self, pass: &'static str, took: Duration, applied: usize, failed: usize) {
        self.reconcile
            .get_or_create(&PassKind { pass })
            .observe(took.as_secs_f64());
        self.ipvs_ops
            .get_or_create(&Outcome { result: "ok" })
            .inc_by(applied as u64);
        self.ipvs_ops
            .get_or_create(&Outcome { result: "error" })
            .inc_by(failed as u64);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Named {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Group {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Service {
    service: String,
}

type IntGauge = Gauge<i64, std::sync::atomic::AtomicI64>;

/// The cluster task's figures at this scrape.
pub fn snapshot(status: &StatusReply, registry: &mut Registry) {
    let members = Family::<State, IntGauge>::default();
    for state in ["alive", "down"] {
        members.get_or_create(&State { state }).set(0);
    }
    for m in &status.members {
        let state = if m.live { "alive" } else { "down" };
        members.get_or_create(&State { state }).inc();
    }
    registry.register("lvs_members", "cluster members by state", members);
    let held = Family::<Group, IntGauge>::default();
    for g in &status.groups {
        held.get_or_create(&Group {
            group: g.name.clone(),
        })
        .set(i64::from(g.held));
    }
    registry.register(
        "lvs_group_held",
        "this node holds the VIP group (1) or not (0)",
        held,
    );
    let counters = |pairs: &mut dyn Iterator<Item = (&String, &u64)>| {
        let family = Family::<Named, Counter<u64, AtomicU64>>::default();
        for (name, n) in pairs {
            family
                .get_or_create(&Named { name: name.clone() })
                .inc_by(*n);
        }
        family
    };
    registry.register(
        "lvs_vrrp_dropped",
        "VRRP packets dropped, by reason",
        counters(&mut status.vrrp_dropped.iter()),
    );
    registry.register(
        "lvs_gossip_datagrams",
        "gossip datagrams by outcome (received, dropped_unknown_key: authentication failures, ...)",
        counters(&mut status.gossip.iter()),
    );
    let healthy = Family::<Service, IntGauge>::default();
    let total = Family::<Service, IntGauge>::default();
    for s in &status.services {
        let key = Service {
            service: s.service.clone(),
        };
        healthy.get_or_create(&key).set(i64::from(s.healthy));
        total.get_or_create(&key).set(i64::from(s.total));
    }
    registry.register(
        "lvs_real_servers_healthy",
        "real servers up on this node, per service",
        healthy,
    );
    registry.register(
        "lvs_real_servers",
        "real servers configured, per service",
        total,
    );
}

/// One scrape's text: the counted figures, then the cluster's snapshot.
pub fn exposition(metrics: &Arc<Metrics>, status: Option<&StatusReply>) -> String {
    let mut counted = Registry::default();
    metrics.register(&mut counted);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &counted);
    if let Some(status) = status {
        let mut registry = Registry::default();
        snapshot(status, &mut registry);
        let _ = encode_registry(&mut out, &registry);
    }
    let _ = encode_eof(&mut out);
    out
}

/// The exposition server; dropping it stops serving.
pub struct MetricsServer {
    task: JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves GET /metrics on `addr` (plain HTTP/1.x, one request per connection).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    cluster: Option<ClusterHandle>,
) -> anyhow::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("node.metrics_listen {addr}"))?;
    info!(%addr, "metrics listening (GET /metrics)");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (metrics, cluster) = (Arc::clone(&metrics), cluster.clone());
            tokio::spawn(async move {
                if let Err(e) = scrape(stream, &metrics, cluster.as_ref()).await {
                    debug!(error = %e, "metrics request");
                }
            });
        }
    });
    Ok(MetricsServer { task })
}

/// A request head is far below this; a client sending more is cut off.
const MAX_HEAD: usize = 8 * 1024;
/// A scraper that sends nothing is dropped after this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

async fn scrape(
    mut stream: TcpStream,
    metrics: &Arc<Metrics>,
    cluster: Option<&ClusterHandle>,
) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await??;
        anyhow::ensure!(n > 0 && head.len() + n <= MAX_HEAD, "bad request head");
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let response = if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
        let status = match cluster {
            Some(c) => c.status().await.ok(),
            None => None,
        };
        let body = exposition(metrics, status.as_ref());
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; \
             charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_proto::v1::{GroupStatus, MemberStatus};

    #[test]
    fn a_scrape_holds_the_counted_figures_and_the_snapshot() {
        let metrics = Metrics::new();
        metrics.reconciled("changes", Duration::from_millis(3), 2, 1);
        metrics.adverts_sent.inc();
        let status = StatusReply {
            members: vec![
                MemberStatus {
                    live: true,
                    ..MemberStatus::default()
                },
                MemberStatus::default(),
            ],
            groups: vec![GroupStatus {
                name: "g1".into(),
                held: true,
                ..GroupStatus::default()
            }],
            vrrp_dropped: [("auth".to_owned(), 4)].into(),
            ..StatusReply::default()
        };
        let text = exposition(&metrics, Some(&status));
        for line in [
            "lvs_ipvs_operations_total{result=\"ok\"} 2",
            "lvs_ipvs_operations_total{result=\"error\"} 1",
            "lvs_reconcile_duration_seconds_count{pass=\"changes\"} 1",
            "lvs_vrrp_adverts_sent_total 1",
            "lvs_members{state=\"alive\"} 1",
            "lvs_members{state=\"down\"} 1",
            "lvs_group_held{group=\"g1\"} 1",
            "lvs_vrrp_dropped_total{name=\"auth\"} 4",
        ] {
            assert!(text.contains(line), "lacks {line}:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}

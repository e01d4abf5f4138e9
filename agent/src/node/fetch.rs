//! Fetching a peer's newer cluster document: [`Fetcher`] decides what to fetch and when
//! (pure; the node loop passes the clock), [`spawn_fetch`] calls the peer's QUIC control
//! API with this node's certificate.
//!
//! One fetch at a time. A fetch that fails (peer unreachable, timeout) is tried again
//! after [`FETCH_RETRY`]; a document this node refuses (invalid with its node part, or
//! needing a restart) is not fetched again: only a newer one is. The node keeps running
//! its document meanwhile, and status shows the skew.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lvs_control::client::{self, Target};
use lvs_control::quic::TlsFiles;
use lvs_proto::v1::{control_reply::Reply, control_request::Request, ConfigGetRequest};
use tokio::sync::mpsc;

use crate::config::{ControlTls, NodeConfig};
use crate::document::{Document, Offer, Stamp};

/// A failed fetch is tried again this much later: long enough not to hammer an
/// unreachable peer, short next to how long an operator waits for an apply to spread.
pub const FETCH_RETRY: Duration = Duration::from_secs(5);

/// A document of a few MB over a LAN takes well under a second; a stuck peer is left
/// after this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Fetcher {
    /// The newest peer document on offer.
    offer: Option<Offer>,
    /// Being fetched.
    in_flight: bool,
    /// Fetched and refused here.
    refused: BTreeSet<Stamp>,
    /// After a failed fetch: not before then.
    retry_at: Option<Instant>,
}

impl Fetcher {
    /// The offer changed (a peer runs a newer document, or nobody is ahead any more).
    pub fn set_offer(&mut self, offer: Option<Offer>) {
        if offer.as_ref().map(|o| o.stamp) != self.offer.as_ref().map(|o| o.stamp) {
            self.retry_at = None;
        }
        self.offer = offer;
    }

    /// What to fetch now, if anything; it is then in flight.
    pub fn next(&mut self, now: Instant) -> Option<Offer> {
        let offer = self.offer.as_ref()?;
        if self.in_flight
            || self.refused.contains(&offer.stamp)
            || self.retry_at.is_some_and(|t| now < t)
        {
            return None;
        }
        self.in_flight = true;
        self.retry_at = None;
        Some(offer.clone())
    }

    /// When to call [`Fetcher::next`] again without another event.
    pub fn wake(&self) -> Option<Instant> {
        self.retry_at
            .filter(|_| self.offer.is_some() && !self.in_flight)
    }

    /// The fetched document was applied.
    pub fn done(&mut self) {
        self.in_flight = false;
    }

    /// The fetch did not complete: try again later.
    pub fn failed(&mut self, now: Instant) {
        self.in_flight = false;
        self.retry_at = Some(now + FETCH_RETRY);
    }

    /// The document was fetched and refused: only a newer one is fetched.
    pub fn refused(&mut self, stamp: Stamp) {
        self.in_flight = false;
        self.refused.insert(stamp);
    }
}

/// Fetches `offer` in a task of its own, with the node's `control_tls` certificate (a
/// node without one fetches nothing); the result, or why there is none, arrives on
/// `done`.
pub fn spawn_fetch(
    offer: Offer,
    node: &NodeConfig,
    done: mpsc::Sender<(Offer, Result<Document, String>)>,
) {
    let Some(tls) = node.control_tls.as_ref().map(ControlTls::files) else {
        return;
    };
    tokio::spawn(async move {
        let result = fetch(&offer, tls).await;
        let _ = done.send((offer, result)).await;
    });
}

async fn fetch(offer: &Offer, tls: TlsFiles) -> Result<Document, String> {
    let addr: SocketAddr = offer.control_addr.parse().map_err(|_| {
        format!(
            "{} publishes control address {:?}, not ip:port",
            offer.node, offer.control_addr
        )
    })?;
    let target = Target::Quic { addr, tls };
    let reply = client::call(
        &target,
        Request::ConfigGet(ConfigGetRequest {}),
        FETCH_TIMEOUT,
    )
    .await
    .map_err(|e| format!("{e:#}"))?;
    match reply {
        Reply::Config(d) => {
            let doc = Document {
                version: d.version,
                text: d.text,
            };
            if doc.stamp().digest != d.digest {
                return Err(format!(
                    "{addr}: the document's text does not match its digest"
                ));
            }
            Ok(doc)
        }
        _ => Err(format!("{addr}: not a cluster document in reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(version: u64) -> Option<Offer> {
        Some(Offer {
            stamp: Stamp { version, digest: 9 },
            node: "lb2".into(),
            control_addr: "192.0.2.2:7947".into(),
        })
    }

    #[test]
    fn one_fetch_at_a_time_retried_after_a_failure_never_after_a_refusal() {
        let t0 = Instant::now();
        let mut f = Fetcher::default();
        assert_eq!(f.next(t0), None, "nothing on offer");
        f.set_offer(offer(2));
        assert_eq!(f.next(t0), offer(2));
        assert_eq!(f.next(t0), None, "in flight");
        f.failed(t0);
        assert_eq!(f.wake(), Some(t0 + FETCH_RETRY));
        assert_eq!(f.next(t0 + FETCH_RETRY / 2), None);
        assert_eq!(f.next(t0 + FETCH_RETRY), offer(2));
        f.refused(offer(2).unwrap().stamp);
        assert_eq!(f.next(t0 + FETCH_RETRY * 9), None, "refused: not again");
        assert_eq!(f.wake(), None);
        // A newer one is fetched at once, even right after a failure.
        f.set_offer(offer(3));
        assert_eq!(f.next(t0), offer(3));
        f.failed(t0);
        f.set_offer(offer(4));
        assert_eq!(f.next(t0), offer(4));
        f.done();
        f.set_offer(None);
        assert_eq!((f.next(t0), f.wake()), (None, None));
    }
}

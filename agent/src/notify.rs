//! systemd's service notifications (`sd_notify(3)`), for a unit with `Type=notify`: the
//! agent says READY=1 once it serves (first IPVS pass done, gossip view settled),
//! RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 when it hands its groups
//! over, and a STATUS= line with each. Without `$NOTIFY_SOCKET` (not started by systemd)
//! nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// The socket systemd listens on, from `$NOTIFY_SOCKET` (`@name`: abstract).
fn socket_addr() -> Option<std::os::unix::net::SocketAddr> {
    let path = std::env::var_os("NOTIFY_SOCKET")?;
    let bytes = path.as_encoded_bytes();
    match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(name).ok()
        }
        Some((b'/', _)) => std::os::unix::net::SocketAddr::from_pathname(PathBuf::from(path)).ok(),
        _ => None,
    }
}

/// One notification: `KEY=value` lines.
pub fn message(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}\n", v.replace('\n', " ")))
        .collect()
}

/// Sends `fields` to systemd, if it started the agent; a failure is logged, never fatal.
pub fn send(fields: &[(&str, &str)]) {
    let Some(addr) = socket_addr() else { return };
    let sent = UnixDatagram::unbound()
        .and_then(|socket| socket.send_to_addr(message(fields).as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// `CLOCK_MONOTONIC` in microseconds, which systemd wants with RELOADING=1.
pub fn monotonic_usec() -> String {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| t.tv_sec() * 1_000_000 + t.tv_nsec() / 1000);
    now.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_is_key_value_lines() {
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "serving\n3 services")]),
            "READY=1\nSTATUS=serving 3 services\n"
        );
        assert!(monotonic_usec().parse::<u64>().unwrap() > 0);
    }
}

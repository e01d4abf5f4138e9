//! Typed errors: every kernel refusal names the object it concerns and the errno.

use std::fmt;
use std::net::SocketAddr;

use super::model::{ServiceKey, SyncState};

/// What a request was about, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Family,
    Info,
    Timeouts,
    Services,
    Service(ServiceKey),
    Destinations(ServiceKey),
    Destination(ServiceKey, SocketAddr),
    SyncDaemons,
    SyncDaemon(SyncState),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Family => write!(f, "generic netlink family IPVS"),
            Object::Info => write!(f, "IPVS info"),
            Object::Timeouts => write!(f, "IPVS timeouts"),
            Object::Services => write!(f, "service dump"),
            Object::Service(key) => write!(f, "service {key}"),
            Object::Destinations(key) => write!(f, "destination dump of service {key}"),
            Object::Destination(key, addr) => write!(f, "destination {addr} of service {key}"),
            Object::SyncDaemons => write!(f, "sync daemon dump"),
            Object::SyncDaemon(state) => write!(f, "{state} sync daemon"),
        }
    }
}

/// A positive errno value as returned (negated) by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const ENOENT: Errno = Errno(2);
    pub const ESRCH: Errno = Errno(3);
    pub const EEXIST: Errno = Errno(17);
    pub const EINVAL: Errno = Errno(22);

    /// Symbolic name and glibc's text for the errnos IPVS returns.
    fn describe(self) -> Option<(&'static str, &'static str)> {
        Some(match self.0 {
            1 => ("EPERM", "Operation not permitted"),
            2 => ("ENOENT", "No such file or directory"),
            3 => ("ESRCH", "No such process"),
            12 => ("ENOMEM", "Cannot allocate memory"),
            16 => ("EBUSY", "Device or resource busy"),
            17 => ("EEXIST", "File exists"),
            19 => ("ENODEV", "No such device"),
            22 => ("EINVAL", "Invalid argument"),
            34 => ("ERANGE", "Numerical result out of range"),
            90 => ("EMSGSIZE", "Message too long"),
            92 => ("ENOPROTOOPT", "Protocol not available"),
            95 => ("EOPNOTSUPP", "Operation not supported"),
            97 => ("EAFNOSUPPORT", "Address family not supported by protocol"),
            99 => ("EADDRNOTAVAIL", "Cannot assign requested address"),
            105 => ("ENOBUFS", "No buffer space available"),
            _ => return None,
        })
    }

    pub fn name(self) -> Option<&'static str> {
        self.describe().map(|(name, _)| name)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.describe() {
            Some((name, text)) => write!(f, "{text} ({name})"),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused the request.
    #[error("{object}: {errno}")]
    Kernel { object: Object, errno: Errno },
    /// The request was not sent: a field cannot be expressed on the wire.
    #[error("{object}: invalid {field}: {reason}")]
    Invalid {
        object: Object,
        field: &'static str,
        reason: String,
    },
    /// The kernel's reply did not parse.
    #[error("{object}: undecodable reply: {message}")]
    Decode { object: Object, message: String },
    /// The netlink socket failed.
    #[error("{object}: netlink: {message}")]
    Connection { object: Object, message: String },
    #[error("generic netlink family IPVS not found: is the ip_vs module loaded?")]
    FamilyNotFound,
}

impl Error {
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The object does not exist (IPVS says ESRCH for services, ENOENT for
    /// destinations and daemons).
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno(), Some(Errno::ESRCH | Errno::ENOENT))
    }

    pub fn is_already_exists(&self) -> bool {
        self.errno() == Some(Errno::EEXIST)
    }
}

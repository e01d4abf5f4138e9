//! The IPVS generic-netlink message: a command and its attributes.

use netlink_packet_core::{DecodeError, Emitable, ParseableParametrized};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use super::attrs::{parse_nest, CmdAttr, InfoAttr};

/// `IPVS_CMD_*` commands this client sends or receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    NewService = 1,
    SetService = 2,
    DelService = 3,
    GetService = 4,
    NewDest = 5,
    SetDest = 6,
    DelDest = 7,
    GetDest = 8,
    NewDaemon = 9,
    DelDaemon = 10,
    GetDaemon = 11,
    SetConfig = 12,
    GetConfig = 13,
    /// Only used as the command of a `GetInfo` reply.
    SetInfo = 14,
    GetInfo = 15,
}

impl Cmd {
    fn from_u8(n: u8) -> Option<Cmd> {
        use Cmd::*;
        [
            NewService, SetService, DelService, GetService, NewDest, SetDest, DelDest, GetDest,
            NewDaemon, DelDaemon, GetDaemon, SetConfig, GetConfig, SetInfo, GetInfo,
        ]
        .into_iter()
        .find(|c| *c as u8 == n)
    }
}

/// Attributes of a message: the info reply reuses kinds 1 and 2 at top level
/// with a meaning of its own, so its attributes are a separate type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attrs {
    Cmd(Vec<CmdAttr>),
    Info(Vec<InfoAttr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    pub cmd: Cmd,
    pub attrs: Attrs,
}

impl IpvsMessage {
    pub fn new(cmd: Cmd, attrs: Vec<CmdAttr>) -> Self {
        IpvsMessage {
            cmd,
            attrs: Attrs::Cmd(attrs),
        }
    }
}

/// `IPVS_GENL_NAME` / `IPVS_GENL_VERSION`.
pub const FAMILY_NAME: &str = "IPVS";
const FAMILY_VERSION: u8 = 1;

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd as u8
    }

    fn version(&self) -> u8 {
        FAMILY_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        match &self.attrs {
            Attrs::Cmd(a) => a.as_slice().buffer_len(),
            Attrs::Info(a) => a.as_slice().buffer_len(),
        }
    }

    fn emit(&self, buffer: &mut [u8]) {
        match &self.attrs {
            Attrs::Cmd(a) => a.as_slice().emit(buffer),
            Attrs::Info(a) => a.as_slice().emit(buffer),
        }
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let cmd = Cmd::from_u8(header.cmd)
            .ok_or_else(|| DecodeError::from(format!("unknown IPVS command {}", header.cmd)))?;
        let attrs = match cmd {
            Cmd::SetInfo => Attrs::Info(parse_nest(buf, "info reply")?),
            _ => Attrs::Cmd(parse_nest(buf, &format!("{cmd:?} message"))?),
        };
        Ok(IpvsMessage { cmd, attrs })
    }
}

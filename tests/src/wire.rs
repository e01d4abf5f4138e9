//! The guest→host report channel: one text line per protobuf message,
//! `TAG <base64 of the encoded message>`, written on the VM's second serial port.
//!
//! Why a serial port rather than a 9p share: the 8250 UART is built into the kernel
//! (no virtio/9p modules to load), every line reaches the host the moment it is
//! written (so a scenario that hangs or kills the VM later cannot lose earlier
//! reports), and the console (first port) stays a clean human-readable log.
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lvs_proto::v1::{GuestReady, ScenarioReport};
use prost::Message;

const READY: &str = "LVSREADY";
const REPORT: &str = "LVSREPORT";
const DONE: &str = "LVSDONE";

/// One protocol line from the guest.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestLine {
    Ready(GuestReady),
    Report(ScenarioReport),
    /// Every requested scenario has reported; the guest powers off next.
    Done,
}

impl GuestLine {
    /// The line to write (without the trailing newline).
    pub fn encode(&self) -> String {
        match self {
            GuestLine::Ready(m) => format!("{READY} {}", STANDARD.encode(m.encode_to_vec())),
            GuestLine::Report(m) => format!("{REPORT} {}", STANDARD.encode(m.encode_to_vec())),
            GuestLine::Done => DONE.to_string(),
        }
    }

    /// Parses one received line. `Ok(None)` for lines that are not protocol lines
    /// (a serial port may carry stray bytes); an error for a protocol line whose
    /// payload does not decode, naming the tag.
    pub fn parse(line: &str) -> Result<Option<GuestLine>> {
        let line = line.trim_end_matches(['\r', '\n']);
        let (tag, payload) = line.split_once(' ').unwrap_or((line, ""));
        let bytes = || {
            STANDARD
                .decode(payload.trim())
                .with_context(|| format!("{tag} line: payload is not base64"))
        };
        Ok(Some(match tag {
            READY => GuestLine::Ready(
                GuestReady::decode(bytes()?.as_slice())
                    .context("LVSREADY line: not a GuestReady")?,
            ),
            REPORT => GuestLine::Report(
                ScenarioReport::decode(bytes()?.as_slice())
                    .context("LVSREPORT line: not a ScenarioReport")?,
            ),
            DONE if payload.is_empty() => GuestLine::Done,
            DONE => bail!("LVSDONE line: unexpected payload {payload:?}"),
            _ => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn noise_is_ignored_and_bad_payload_named() {
        assert_eq!(
            GuestLine::parse("[    1.23] random kernel text").unwrap(),
            None
        );
        assert_eq!(GuestLine::parse("").unwrap(), None);
        let err = GuestLine::parse("LVSREPORT !!notbase64").unwrap_err();
        assert!(format!("{err:#}").contains("LVSREPORT"), "{err:#}");
        assert_eq!(
            GuestLine::parse("LVSDONE\r").unwrap(),
            Some(GuestLine::Done)
        );
    }

    proptest! {
        #[test]
        fn report_round_trips(name in ".{0,40}", passed: bool, failure in ".{0,80}",
                              duration_ms: u64, output in "(?s).{0,400}", boot_ms: u64) {
            let line = GuestLine::Report(ScenarioReport {
                name, passed, failure, duration_ms, output, boot_ms,
            });
            let text = line.encode();
            prop_assert!(!text.contains('\n'));
            prop_assert_eq!(GuestLine::parse(&format!("{text}\r\n")).unwrap(), Some(line));
        }

        #[test]
        fn ready_round_trips(kernel_release in "[a-z0-9.-]{0,30}", uptime_ms: u64,
                             loaded in proptest::collection::vec("[a-z_]{1,12}", 0..5)) {
            let line = GuestLine::Ready(GuestReady {
                kernel_release, uptime_ms, loaded_modules: loaded, failed_modules: vec![],
            });
            prop_assert_eq!(GuestLine::parse(&line.encode()).unwrap(), Some(line));
        }
    }
}

//! The cluster document: the cluster part of the config (`[cluster]`, `[sync]`,
//! `[[vip_group]]`, `[[service]]`) as one versioned text. `lvs-cli apply` gives it to
//! any agent, which validates it with its own node part, applies it, stores it in
//! `[node] cluster_store` and publishes its stamp (version, digest) in its gossip
//! claims; a node that runs an older stamp fetches the document from that peer's QUIC
//! control API and goes through the same steps. The higher stamp wins everywhere, so
//! two documents applied at once with one version (on two nodes) end as the one with
//! the higher digest on every node.
//!
//! The stored file is the document's text after one header line
//! (`# lvs-mesh cluster document version N`), a TOML comment: the file can be read,
//! and checked with `lvs-agent check-config`, as it is.

use std::io::Write as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// A document's place in the cluster-wide order: version, then digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// 0: no document (the node runs the cluster part of its config files).
    pub version: u64,
    pub digest: u64,
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.version == 0 {
            f.write_str("files")
        } else {
            write!(f, "v{} {:08x}", self.version, self.digest >> 32)
        }
    }
}

/// One cluster document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    pub version: u64,
    pub text: String,
}

impl Document {
    pub fn stamp(&self) -> Stamp {
        Stamp {
            version: self.version,
            digest: if self.version == 0 {
                0
            } else {
                digest(&self.text)
            },
        }
    }
}

/// First 8 bytes of the text's SHA-256, big-endian.
pub fn digest(text: &str) -> u64 {
    let sum = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    u64::from_be_bytes(first)
}

const HEADER: &str = "# lvs-mesh cluster document version ";

/// The stored form: the header line, then the text.
pub fn encode(doc: &Document) -> String {
    format!("{HEADER}{}\n{}", doc.version, doc.text)
}

/// Reads the stored form; the error says what is wrong with it.
pub fn decode(stored: &str) -> Result<Document, String> {
    let (first, text) = stored.split_once('\n').unwrap_or((stored, ""));
    let version = first
        .strip_prefix(HEADER)
        .ok_or_else(|| format!("the first line is not {HEADER:?} and a version"))?;
    let version: u64 = version
        .trim()
        .parse()
        .map_err(|_| format!("version {version:?} is not a number"))?;
    if version == 0 {
        return Err("version 0 (documents count from 1)".into());
    }
    Ok(Document {
        version,
        text: text.to_owned(),
    })
}

/// The stored document, `None` when the file does not exist yet.
pub fn read(path: &Path) -> Result<Option<Document>, String> {
    match std::fs::read_to_string(path) {
        Ok(stored) => decode(&stored)
            .map(Some)
            .map_err(|e| format!("node.cluster_store {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "node.cluster_store {}: cannot read: {e}",
            path.display()
        )),
    }
}

/// Stores `doc` atomically: a reader (or a crash) sees the old file or the new one,
/// never a part. Written to a temporary file beside it, synced, then renamed over it.
pub fn write(path: &Path, doc: &Document) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| {
        format!("node.cluster_store {}: {what}: {e}", path.display())
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create its directory", e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(|e| fail("cannot write", e))?;
    file.write_all(encode(doc).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("cannot write", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| fail("cannot replace", e))?;
    // The rename itself survives a crash once the directory is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A peer's document this node should fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub stamp: Stamp,
    pub node: String,
    /// The peer's QUIC control API, `ip:port`.
    pub control_addr: String,
}

/// The newest document among the live peers' (`node`, stamp, control address), if it
/// is newer than `own` and can be fetched (the peer serves QUIC). Among peers with the
/// same stamp the first by node id is asked, so every run picks the same one.
pub fn newest<'a>(
    own: Stamp,
    peers: impl IntoIterator<Item = (&'a str, Stamp, &'a str)>,
) -> Option<Offer> {
    peers
        .into_iter()
        .filter(|(_, stamp, addr)| *stamp > own && !addr.is_empty())
        .min_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)))
        .map(|(node, stamp, addr)| Offer {
            stamp,
            node: node.to_owned(),
            control_addr: addr.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_stored_form_is_the_text_after_one_comment_line() {
        let doc = Document {
            version: 7,
            text: "[cluster]\nname = \"c\"\n".into(),
        };
        let stored = encode(&doc);
        assert_eq!(
            stored,
            "# lvs-mesh cluster document version 7\n[cluster]\nname = \"c\"\n"
        );
        assert_eq!(decode(&stored), Ok(doc.clone()));
        // Still TOML as a whole: check-config reads the stored file as it is.
        assert!(toml::from_str::<toml::Table>(&stored).is_ok());
        assert!(decode("[cluster]\n").unwrap_err().contains("first line"));
        assert!(decode(&format!("{HEADER}x\n"))
            .unwrap_err()
            .contains("\"x\""));
        assert!(decode(&format!("{HEADER}0\n"))
            .unwrap_err()
            .contains("version 0"));
    }

    #[test]
    fn write_replaces_the_file_and_read_finds_it() {
        let dir = std::env::temp_dir().join(format!("lvs-document-{}", std::process::id()));
        let path = dir.join("sub").join("cluster.toml");
        assert_eq!(read(&path), Ok(None));
        for version in [1, 2] {
            let doc = Document {
                version,
                text: format!("# v{version}\n"),
            };
            write(&path, &doc).unwrap();
            assert_eq!(read(&path), Ok(Some(doc)));
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(read(&path)
            .unwrap_err()
            .contains(&path.display().to_string()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stamps_order_by_version_then_digest_and_files_come_first() {
        let a = Document {
            version: 2,
            text: "a".into(),
        };
        let b = Document {
            version: 2,
            text: "b".into(),
        };
        assert_ne!(a.stamp(), b.stamp());
        assert!(Document::default().stamp() < a.stamp());
        let three = Document {
            version: 3,
            text: String::new(),
        };
        assert!(a.stamp().max(b.stamp()) < three.stamp());
        assert_eq!(Document::default().stamp().to_string(), "files");
    }

    fn stamp() -> impl Strategy<Value = Stamp> {
        (0u64..4, 0u64..4).prop_map(|(version, digest)| Stamp { version, digest })
    }

    proptest! {
        /// The offer is the highest stamp above ours among the peers that serve QUIC,
        /// from the first such peer by node id; none when nobody is ahead.
        #[test]
        fn the_offer_is_the_newest_fetchable_document(
            own in stamp(),
            peers in proptest::collection::vec((0u8..5, stamp(), any::<bool>()), 0..6),
        ) {
            let peers: Vec<(String, Stamp, String)> = peers
                .into_iter()
                .map(|(n, s, quic)| (format!("n{n}"), s, if quic { "192.0.2.1:7947".into() } else { String::new() }))
                .collect();
            let offer = newest(own, peers.iter().map(|(n, s, a)| (n.as_str(), *s, a.as_str())));
            let ahead: Vec<_> = peers.iter().filter(|(_, s, a)| *s > own && !a.is_empty()).collect();
            match offer {
                None => prop_assert!(ahead.is_empty()),
                Some(o) => {
                    let best = ahead.iter().map(|(_, s, _)| *s).max().unwrap();
                    prop_assert_eq!(o.stamp, best);
                    let first = ahead.iter().filter(|(_, s, _)| *s == best).map(|(n, _, _)| n).min().unwrap();
                    prop_assert_eq!(&o.node, first);
                }
            }
        }
    }
}

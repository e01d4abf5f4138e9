//! Cluster keys and the authenticated-encryption envelope of every gossip
//! datagram (`lvs.v1.GossipDatagram`).
//!
//! Key file format: the 32-byte key as text, either 64 hex digits or standard
//! base64 (44 characters with padding); surrounding whitespace is ignored.
//! Generate one with `lvs-agent keygen --output FILE` ([`write_new_key_file`]),
//! `openssl rand -hex 32` or `head -c 32 /dev/urandom | base64`. Text (not raw
//! bytes) so a key survives editors, config management and copy-paste; the two
//! encodings are told apart by length. A key file that its group or others may
//! access (`mode & 0o077 != 0`) is refused, as ssh refuses such a private key.
//!
//! Every datagram names its sender, the sender's life (epoch) and its number in
//! that life (counter) in cleartext, bound into the associated data so they
//! cannot be altered; the receiver's `replay` window refuses repeats.

use std::{
    fmt,
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use base64::Engine as _;
use chacha20poly1305::{
    aead::{Aead, Payload},
    ChaCha20Poly1305, KeyInit, Nonce,
};
use lvs_proto::v1::GossipDatagram;
use prost::Message as _;
use rand::{rngs::SysRng, TryRng as _};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;
const KEY_ID_LABEL: &[u8] = b"lvs-mesh gossip key id";
const AAD_LABEL: &[u8] = b"lvs.v1.GossipDatagram";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cluster key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cluster key file {path}: mode {mode:04o} lets its group or others access the key \
         (any of the bits 0077); run `chmod 600 {path}`"
    )]
    Permissions { path: String, mode: u32 },
    #[error("cluster key file {path} exists; not overwritten (it may be a key in use)")]
    Exists { path: String },
    #[error("cluster key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster key: no randomness from the operating system: {0}")]
    Random(String),
    #[error(
        "cluster key{context}: expected 64 hex digits or base64 of 32 bytes, got {len} characters"
    )]
    Format { context: String, len: usize },
    #[error("cluster key ring: two keys share the key id {0:08x}")]
    DuplicateId(u32),
}

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Also what a datagram of an agent from before replay protection is: it
    /// names no sender.
    #[error("not a GossipDatagram (nonce not 12 bytes, or no sender: an older agent's)")]
    BadEnvelope,
    #[error("sealed with a key id not in the ring")]
    UnknownKey,
    #[error("authentication failed")]
    AuthFailed,
    /// Authentic, but its counter was accepted before or is below the window,
    /// or it is from an older life of its sender (`replay`).
    #[error("replayed (repeated counter, below the window, or an older sender life)")]
    Replayed,
}

/// One 32-byte ChaCha20-Poly1305 cluster key and its public fingerprint.
#[derive(Clone)]
pub struct ClusterKey {
    id: u32,
    cipher: ChaCha20Poly1305,
}

impl ClusterKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(KEY_ID_LABEL)
            .chain_update(key)
            .finalize();
        Self {
            id: u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]),
            cipher: ChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Parses the text form (see the module doc).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        Self::parse_in(text, String::new())
    }

    /// Reads a key file, refusing one its group or others may access.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let read_err = |source| KeyError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut file = File::open(path).map_err(read_err)?;
        // The mode of the file opened, not of whatever the path names later.
        let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_err)?;
        Self::parse_in(&text, format!(" file {}", path.display()))
    }

    fn parse_in(text: &str, context: String) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 {
            decode_hex(text)
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(key) => Ok(Self::from_bytes(key)),
            None => Err(KeyError::Format {
                context,
                len: text.len(),
            }),
        }
    }

    /// The fingerprint carried in `GossipDatagram.key_id`.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// Never prints key material.
impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({:08x})", self.id)
    }
}

/// A fresh key from the operating system's randomness, as 64 hex digits and
/// a newline (the text of a key file).
pub fn new_key_text() -> Result<String, KeyError> {
    let mut key = [0u8; 32];
    SysRng
        .try_fill_bytes(&mut key)
        .map_err(|e| KeyError::Random(e.to_string()))?;
    let mut text: String = key.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    Ok(text)
}

/// Creates `path` with mode 0600 holding [`new_key_text`]; an existing file is
/// never overwritten (it may be the key a running cluster uses).
pub fn write_new_key_file(path: &Path) -> Result<(), KeyError> {
    let write_err = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists {
            path: path.display().to_string(),
        },
        _ => KeyError::Write {
            path: path.display().to_string(),
            source,
        },
    };
    let text = new_key_text()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// The associated data: the label, then the cleartext envelope fields, fixed
/// sizes first so the sender (the rest) needs no length.
fn aad(key_id: u32, origin: &Origin) -> Vec<u8> {
    [
        AAD_LABEL,
        &key_id.to_be_bytes(),
        &origin.epoch.to_be_bytes(),
        &origin.counter.to_be_bytes(),
        origin.sender.as_bytes(),
    ]
    .concat()
}

/// Who sealed a datagram: `GossipDatagram` fields `sender`, `epoch` and
/// `counter`, in cleartext and authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The sender's node id.
    pub sender: String,
    /// The sender's process life (`MembershipConfig::incarnation`).
    pub epoch: u64,
    /// Counts the sender's datagrams from 0 within one epoch.
    pub counter: u64,
}

/// A received datagram, authenticated and decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub origin: Origin,
    pub plaintext: Vec<u8>,
}

/// The keys a node accepts; it seals with the primary. Rotation: add the new
/// key to every ring, then make it primary everywhere, then remove the old one.
#[derive(Clone, Debug)]
pub struct KeyRing {
    primary: ClusterKey,
    accepted: Vec<ClusterKey>,
}

impl KeyRing {
    pub fn new(primary: ClusterKey) -> Self {
        Self {
            primary,
            accepted: Vec::new(),
        }
    }

    /// Also accept datagrams sealed with `key`.
    pub fn with_accepted(mut self, key: ClusterKey) -> Result<Self, KeyError> {
        if key.id == self.primary.id || self.accepted.iter().any(|k| k.id == key.id) {
            return Err(KeyError::DuplicateId(key.id));
        }
        self.accepted.push(key);
        Ok(self)
    }

    pub fn primary_id(&self) -> u32 {
        self.primary.id
    }

    fn find(&self, id: u32) -> Option<&ClusterKey> {
        std::iter::once(&self.primary)
            .chain(&self.accepted)
            .find(|k| k.id == id)
    }

    /// Encrypts one plaintext (a foca packet or a heartbeat) from `origin`
    /// into an encoded `GossipDatagram`. Each datagram of a sender life needs
    /// its own counter: see [`Sealer`].
    pub fn seal(&self, origin: &Origin, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = aad(self.primary.id, origin);
        let ciphertext = self
            .primary
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("ChaCha20-Poly1305 encryption only fails beyond 256 GiB");
        GossipDatagram {
            key_id: self.primary.id,
            nonce: nonce.to_vec(),
            ciphertext,
            sender: origin.sender.clone(),
            epoch: origin.epoch,
            counter: origin.counter,
        }
        .encode_to_vec()
    }

    /// Authenticates and decrypts a received datagram; whether it is a replay
    /// is for the caller's `replay` window to say.
    pub fn open(&self, datagram: &[u8]) -> Result<Opened, OpenError> {
        let envelope = GossipDatagram::decode(datagram).map_err(|_| OpenError::BadEnvelope)?;
        if envelope.nonce.len() != NONCE_LEN || envelope.sender.is_empty() {
            return Err(OpenError::BadEnvelope);
        }
        let key = self.find(envelope.key_id).ok_or(OpenError::UnknownKey)?;
        let origin = Origin {
            sender: envelope.sender,
            epoch: envelope.epoch,
            counter: envelope.counter,
        };
        let plaintext = key
            .cipher
            .decrypt(
                Nonce::from_slice(&envelope.nonce),
                Payload {
                    msg: &envelope.ciphertext,
                    aad: &aad(envelope.key_id, &origin),
                },
            )
            .map_err(|_| OpenError::AuthFailed)?;
        Ok(Opened { origin, plaintext })
    }
}

/// Seals the datagrams of one sender life with the cluster key ring,
/// numbering them from 0.
#[derive(Clone, Debug)]
pub struct Sealer {
    keys: KeyRing,
    next: Origin,
}

impl Sealer {
    pub fn new(keys: KeyRing, sender: &str, epoch: u64) -> Self {
        Self {
            keys,
            next: Origin {
                sender: sender.to_owned(),
                epoch,
                counter: 0,
            },
        }
    }

    /// Seals one datagram under the next counter.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let datagram = self.keys.seal(&self.next, plaintext);
        // 2^64 datagrams outlast any process: no wrap-around to handle.
        self.next.counter += 1;
        datagram
    }

    /// Seals with `keys` from now on; the counter goes on, so peers' replay windows
    /// need no reset.
    pub fn set_ring(&mut self, keys: KeyRing) {
        self.keys = keys;
    }

    /// Opens a received datagram with the ring: see [`KeyRing::open`].
    pub fn open(&self, datagram: &[u8]) -> Result<Opened, OpenError> {
        self.keys.open(datagram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(ClusterKey::from_bytes([byte; 32]))
    }

    #[test]
    fn hex_and_base64_forms_give_the_same_key() {
        let hex = ClusterKey::parse(&format!("  {HEX}\n")).unwrap();
        let b64 = ClusterKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_eq!(hex.id(), b64.id());
        assert!(!format!("{hex:?}").contains("0102"), "Debug leaks the key");
    }

    #[test]
    fn bad_key_text_is_rejected_with_its_length() {
        for bad in ["", "zz", &HEX[..62], &HEX.replace('0', "g"), "AAEC"] {
            let err = ClusterKey::parse(bad).unwrap_err();
            assert!(err.to_string().contains("64 hex digits"), "{err}");
        }
    }

    /// A path in the temp dir unique to this process and test.
    fn temp_path(test: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("lvs-gossip-key-{}-{test}", std::process::id()))
    }

    /// Writes `text` to a new file with `mode` (exactly: the umask is undone).
    fn write_with_mode(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn origin(counter: u64) -> Origin {
        Origin {
            sender: "lb1".into(),
            epoch: 1_700_000_000_000,
            counter,
        }
    }

    #[test]
    fn load_reads_a_key_file_and_names_it_in_errors() {
        let path = temp_path("load");
        write_with_mode(&path, &format!("{HEX}\n"), 0o600);
        let loaded = ClusterKey::load(&path).unwrap();
        std::fs::write(&path, "not a key").unwrap();
        let bad = ClusterKey::load(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.id(), ClusterKey::parse(HEX).unwrap().id());
        assert!(bad.contains(&path.display().to_string()), "{bad}");
        let missing = ClusterKey::load(&path).unwrap_err().to_string();
        assert!(missing.contains(&path.display().to_string()), "{missing}");
    }

    #[test]
    fn key_files_its_group_or_others_may_access_are_refused() {
        let path = temp_path("modes");
        let shown = path.display().to_string();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o620, 0o610, 0o601, 0o666] {
            write_with_mode(&path, HEX, mode);
            let err = ClusterKey::load(&path).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, KeyError::Permissions { mode: m, .. } if m == mode),
                "{mode:o}: {text}"
            );
            assert!(text.contains(&format!("mode {mode:04o}")), "{text}");
            assert!(text.contains(&format!("chmod 600 {shown}")), "{text}");
        }
        for mode in [0o600, 0o400, 0o700] {
            write_with_mode(&path, HEX, mode);
            assert!(ClusterKey::load(&path).is_ok(), "{mode:o}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_new_key_file_is_private_loadable_and_never_overwritten() {
        let path = temp_path("keygen");
        write_new_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let text = std::fs::read_to_string(&path).unwrap();
        let loaded = ClusterKey::load(&path);
        let again = write_new_key_file(&path).unwrap_err().to_string();
        let after = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(mode, 0o600);
        assert!(loaded.is_ok(), "{loaded:?}");
        assert_eq!(after, text, "the existing key was overwritten");
        assert!(again.contains(&path.display().to_string()), "{again}");
        assert!(again.contains("exists; not overwritten"), "{again}");
    }

    #[test]
    fn new_key_text_is_64_hex_digits_and_a_newline() {
        let (a, b) = (new_key_text().unwrap(), new_key_text().unwrap());
        let digits = a.strip_suffix('\n').expect("ends with a newline");
        assert_eq!(digits.len(), 64);
        assert!(digits
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(ClusterKey::parse(&a).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn duplicate_key_ids_are_rejected() {
        let key = ClusterKey::from_bytes([1; 32]);
        assert!(KeyRing::new(key.clone()).with_accepted(key).is_err());
    }

    #[test]
    fn seal_then_open_and_rotation() {
        let old_and_new = ring(1)
            .with_accepted(ClusterKey::from_bytes([2; 32]))
            .unwrap();
        let sealed_with_new = ring(2).seal(&origin(7), b"foca packet");
        let opened = old_and_new.open(&sealed_with_new).unwrap();
        assert_eq!(opened.plaintext, b"foca packet");
        assert_eq!(opened.origin, origin(7));
        assert_eq!(ring(1).open(&sealed_with_new), Err(OpenError::UnknownKey));
    }

    #[test]
    fn a_sealer_numbers_its_datagrams_from_zero() {
        let mut sealer = Sealer::new(ring(1), "lb1", 1_700_000_000_000);
        let counters: Vec<u64> = (0..3)
            .map(|_| ring(1).open(&sealer.seal(b"x")).unwrap().origin.counter)
            .collect();
        assert_eq!(counters, [0, 1, 2]);
    }

    /// Re-encodes a sealed datagram with one envelope field changed.
    fn altered(datagram: &[u8], change: impl FnOnce(&mut GossipDatagram)) -> Vec<u8> {
        let mut envelope = GossipDatagram::decode(datagram).unwrap();
        change(&mut envelope);
        envelope.encode_to_vec()
    }

    #[test]
    fn altered_sender_epoch_or_counter_fail_authentication() {
        let r = ring(1);
        let sealed = r.seal(&origin(7), b"a foca packet");
        type Change = fn(&mut GossipDatagram);
        let changes: [(&str, Change); 4] = [
            ("sender", |e| e.sender = "lb2".into()),
            ("sender suffix", |e| e.sender.push('x')),
            ("epoch", |e| e.epoch += 1),
            ("counter", |e| e.counter = 1_000),
        ];
        for (field, change) in changes {
            assert_eq!(
                r.open(&altered(&sealed, change)),
                Err(OpenError::AuthFailed),
                "{field}"
            );
        }
        // The bytes moved between fields: the fixed sizes keep them apart.
        let moved = r.seal(
            &Origin {
                sender: "lb1".into(),
                epoch: 1,
                counter: 2,
            },
            b"x",
        );
        let swapped = altered(&moved, |e| (e.epoch, e.counter) = (2, 1));
        assert_eq!(r.open(&swapped), Err(OpenError::AuthFailed));
    }

    #[test]
    fn a_datagram_without_sender_is_a_bad_envelope() {
        // What an agent from before replay protection sends.
        let r = ring(1);
        let old_style = altered(&r.seal(&origin(0), b"x"), |e| {
            e.sender.clear();
            e.epoch = 0;
            e.counter = 0;
        });
        assert_eq!(r.open(&old_style), Err(OpenError::BadEnvelope));
    }

    #[test]
    fn garbage_is_a_bad_envelope() {
        assert_eq!(ring(1).open(b"\xff\xff\xff"), Err(OpenError::BadEnvelope));
    }

    #[test]
    fn fresh_nonce_per_datagram() {
        let r = ring(1);
        assert_ne!(r.seal(&origin(0), b"x"), r.seal(&origin(0), b"x"));
    }

    proptest! {
        /// Flipping any bit of a sealed datagram never yields a plaintext.
        #[test]
        fn tampering_any_byte_fails(index in any::<prop::sample::Index>(), bit in 0u8..8) {
            let r = ring(1);
            let mut datagram = r.seal(&origin(42), b"a foca packet with some length");
            let i = index.index(datagram.len());
            datagram[i] ^= 1 << bit;
            prop_assert!(r.open(&datagram).is_err());
        }
    }
}

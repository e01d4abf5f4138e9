//! Cluster keys and the authenticated-encryption envelope of every gossip
//! datagram (`lvs.v1.GossipDatagram`).
//!
//! Key file format: the 32-byte key as text, either 64 hex digits or standard
//! base64 (44 characters with padding); surrounding whitespace is ignored.
//! Generate one with `openssl rand -hex 32` or `head -c 32 /dev/urandom | base64`.
//! Text (not raw bytes) so a key survives editors, config management and
//! copy-paste; the two encodings are told apart by length.

use std::{fmt, path::Path};

use base64::Engine as _;
use chacha20poly1305::{
    aead::{Aead, Payload},
    ChaCha20Poly1305, KeyInit, Nonce,
};
use lvs_proto::v1::GossipDatagram;
use prost::Message as _;
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
        "cluster key{context}: expected 64 hex digits or base64 of 32 bytes, got {len} characters"
    )]
    Format { context: String, len: usize },
    #[error("cluster key ring: two keys share the key id {0:08x}")]
    DuplicateId(u32),
}

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a GossipDatagram (or its nonce is not 12 bytes)")]
    BadEnvelope,
    #[error("sealed with a key id not in the ring")]
    UnknownKey,
    #[error("authentication failed")]
    AuthFailed,
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

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
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

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn aad(key_id: u32) -> Vec<u8> {
    [AAD_LABEL, &key_id.to_be_bytes()].concat()
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

    /// Encrypts one foca packet into an encoded `GossipDatagram`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = aad(self.primary.id);
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
        }
        .encode_to_vec()
    }

    /// Authenticates and decrypts a received datagram.
    pub fn open(&self, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
        let envelope = GossipDatagram::decode(datagram).map_err(|_| OpenError::BadEnvelope)?;
        if envelope.nonce.len() != NONCE_LEN {
            return Err(OpenError::BadEnvelope);
        }
        let key = self.find(envelope.key_id).ok_or(OpenError::UnknownKey)?;
        key.cipher
            .decrypt(
                Nonce::from_slice(&envelope.nonce),
                Payload {
                    msg: &envelope.ciphertext,
                    aad: &aad(envelope.key_id),
                },
            )
            .map_err(|_| OpenError::AuthFailed)
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

    #[test]
    fn load_reads_a_key_file_and_names_it_in_errors() {
        let path = std::env::temp_dir().join(format!("lvs-gossip-key-{}", std::process::id()));
        std::fs::write(&path, format!("{HEX}\n")).unwrap();
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
    fn duplicate_key_ids_are_rejected() {
        let key = ClusterKey::from_bytes([1; 32]);
        assert!(KeyRing::new(key.clone()).with_accepted(key).is_err());
    }

    #[test]
    fn seal_then_open_and_rotation() {
        let old_and_new = ring(1)
            .with_accepted(ClusterKey::from_bytes([2; 32]))
            .unwrap();
        let sealed_with_new = ring(2).seal(b"foca packet");
        assert_eq!(old_and_new.open(&sealed_with_new).unwrap(), b"foca packet");
        assert_eq!(ring(1).open(&sealed_with_new), Err(OpenError::UnknownKey));
    }

    #[test]
    fn garbage_is_a_bad_envelope() {
        assert_eq!(ring(1).open(b"\xff\xff\xff"), Err(OpenError::BadEnvelope));
    }

    #[test]
    fn fresh_nonce_per_datagram() {
        let r = ring(1);
        assert_ne!(r.seal(b"x"), r.seal(b"x"));
    }

    proptest! {
        /// Flipping any bit of a sealed datagram never yields a plaintext.
        #[test]
        fn tampering_any_byte_fails(index in any::<prop::sample::Index>(), bit in 0u8..8) {
            let r = ring(1);
            let mut datagram = r.seal(b"a foca packet with some length");
            let i = index.index(datagram.len());
            datagram[i] ^= 1 << bit;
            prop_assert!(r.open(&datagram).is_err());
        }
    }
}

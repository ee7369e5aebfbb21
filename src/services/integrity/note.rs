//! C2SP checkpoints: the `tlog-checkpoint` body inside a `signed-note` signed with Ed25519.
//!
//! * Checkpoint body: `<origin>\n<tree size>\n<base64 root hash>\n`, then optional extension lines.
//! * Note: the text (ending in `\n`), a blank line, then one line per signature,
//!   `— <key name> <base64(key id || signature)>\n` (U+2014 em dash). The signature is over the
//!   text, final newline included.
//! * Key id: the first 4 bytes of `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)`.
//! * Verifier key: `<name>+<8 hex key id>+<base64(0x01 || public key)>`; the signer key, in the
//!   format of golang.org/x/mod/sumdb/note, is `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
//!
//! Verification accepts a note only if it carries a valid signature by the given key; a
//! signature line with that key's name and id that does not verify rejects the note, and a
//! malformed note is rejected whole. Signatures by other keys (witness cosignatures) are ignored,
//! as the spec requires.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature as EdSignature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The signed-note algorithm byte of Ed25519.
pub const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";
/// The most signature lines a note may carry.
pub const MAX_SIGNATURES: usize = 100;

/// Why a note, key or checkpoint was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    InvalidName(String),
    #[error("the note has no signature by key {name}+{key_id}")]
    UnknownKey { name: String, key_id: String },
    #[error("the signature by key {name} does not verify")]
    BadSignature { name: String },
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// A key name is non-empty and has no whitespace and no `+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key id of an Ed25519 key with this name.
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ALG_ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A `tlog-checkpoint` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines after the root, without their newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Checkpoint {
        Checkpoint { origin: origin.into(), size, root, extensions: Vec::new() }
    }

    /// The body text, ending in a newline.
    pub fn body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a body (the text of a note, as [`verify_note`] returns it).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = NoteError::MalformedCheckpoint;
        let body = text.strip_suffix('\n').ok_or(bad("it does not end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(bad("the origin line is empty"))?;
        let size = lines.next().ok_or(bad("no tree size line"))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(bad("the tree size is not a decimal number without leading zeros"));
        }
        let size: u64 = size.parse().map_err(|_| bad("the tree size is too large"))?;
        let root = lines.next().ok_or(bad("no root hash line"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(bad("the root hash is not the base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint { origin: origin.to_owned(), size, root, extensions })
    }
}

/// An Ed25519 note signer.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner").field("name", &self.name).field("key_id", &hex::encode(self.id)).finish()
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<NoteSigner, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::InvalidName(name.to_owned()));
        }
        let id = key_id(name, &key.verifying_key());
        Ok(NoteSigner { name: name.to_owned(), key, id })
    }

    /// Read a `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>` signer key.
    pub fn from_private_key(skey: &str) -> Result<NoteSigner, NoteError> {
        let bad = NoteError::MalformedKey;
        let rest = skey.strip_prefix("PRIVATE+KEY+").ok_or(bad("no PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(bad("expected PRIVATE+KEY+<name>+<id>+<key>")),
        };
        let raw = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, seed)) => seed.try_into().map_err(|_| bad("an Ed25519 seed is 32 bytes"))?,
            _ => return Err(bad("not an Ed25519 key")),
        };
        let signer = NoteSigner::new(name, SigningKey::from_bytes(&seed))?;
        if id.len() != 8 || hex::decode(id).ok().as_deref() != Some(&signer.id[..]) {
            return Err(bad("the key id does not match the key"));
        }
        Ok(signer)
    }

    /// This signer in `PRIVATE+KEY+…` form (a secret: store it 0600, never log it).
    pub fn private_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// The verifier key string to publish.
    pub fn verifier_key(&self) -> String {
        self.verifier().to_string()
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// Sign a note text (non-empty, ending in a newline, printable UTF-8): the note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        if !text.ends_with('\n') {
            return Err(NoteError::MalformedNote("the text does not end with a newline"));
        }
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob)))
    }

    /// Sign a checkpoint: the note whose text is the checkpoint body.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, NoteError> {
        if !valid_origin(&checkpoint.origin) {
            return Err(NoteError::MalformedCheckpoint("the origin must be one non-empty line"));
        }
        if checkpoint.extensions.iter().any(|e| e.is_empty() || e.contains('\n')) {
            return Err(NoteError::MalformedCheckpoint("extension lines must be non-empty single lines"));
        }
        self.sign(&checkpoint.body())
    }
}

fn valid_origin(origin: &str) -> bool {
    !origin.is_empty() && !origin.contains('\n')
}

/// Printable UTF-8: no ASCII control characters but newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() {
        return Err(NoteError::MalformedNote("empty text"));
    }
    if text.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::MalformedNote("control character"));
    }
    Ok(())
}

/// An Ed25519 note verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parse `<name>+<hex id>+<base64(0x01 || public key)>`; the id must match name and key.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, NoteError> {
        let bad = NoteError::MalformedKey;
        let mut parts = vkey.splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(bad("expected <name>+<id>+<key>")),
        };
        if !valid_name(name) {
            return Err(NoteError::InvalidName(name.to_owned()));
        }
        let raw = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, public)) => public.try_into().map_err(|_| bad("an Ed25519 public key is 32 bytes"))?,
            _ => return Err(bad("not an Ed25519 key")),
        };
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not a valid Ed25519 public key"))?;
        let want = key_id(name, &key);
        if id.len() != 8 || hex::decode(id).ok().as_deref() != Some(&want[..]) {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(NoteVerifier { name: name.to_owned(), id: want, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: [u8; 4],
    /// The signature itself (after the key id).
    pub signature: Vec<u8>,
}

/// A parsed (not yet verified) note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, final newline included.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// Split a note into its text and signature lines. Checks the form only, not the signatures.
pub fn parse_note(msg: &str) -> Result<Note, NoteError> {
    let bad = NoteError::MalformedNote;
    if msg.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(bad("control character"));
    }
    let split = msg.rfind("\n\n").ok_or(bad("no blank line before the signatures"))?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    let sigs = sigs.strip_suffix('\n').ok_or(bad("the signatures do not end with a newline"))?;
    let mut signatures = Vec::new();
    for line in sigs.split('\n') {
        if signatures.len() == MAX_SIGNATURES {
            return Err(bad("too many signatures"));
        }
        let line = line.strip_prefix(SIG_PREFIX).ok_or(bad("a signature line does not start with an em dash"))?;
        let (name, b64) = line.split_once(' ').ok_or(bad("a signature line has no space"))?;
        if !valid_name(name) {
            return Err(bad("a signature has an invalid key name"));
        }
        let blob = B64.decode(b64).map_err(|_| bad("a signature is not base64"))?;
        if blob.len() < 5 {
            return Err(bad("a signature is too short"));
        }
        let (id, signature) = blob.split_at(4);
        let key_id = [id[0], id[1], id[2], id[3]];
        signatures.push(NoteSignature { name: name.to_owned(), key_id, signature: signature.to_vec() });
    }
    Ok(Note { text: text.to_owned(), signatures })
}

/// Parse `msg` and check it carries a valid signature by `verifier`; the note on success.
pub fn verify_note(msg: &str, verifier: &NoteVerifier) -> Result<Note, NoteError> {
    let note = parse_note(msg)?;
    let mut ours = note.signatures.iter().filter(|s| s.name == verifier.name && s.key_id == verifier.id);
    let Some(sig) = ours.next() else {
        return Err(NoteError::UnknownKey { name: verifier.name.clone(), key_id: hex::encode(verifier.id) });
    };
    if ours.next().is_some() {
        return Err(NoteError::MalformedNote("two signatures by the same key"));
    }
    let bad = || NoteError::BadSignature { name: verifier.name.clone() };
    let sig = EdSignature::from_slice(&sig.signature).map_err(|_| bad())?;
    verifier.key.verify_strict(note.text.as_bytes(), &sig).map_err(|_| bad())?;
    Ok(note)
}

/// Verify a signed checkpoint and parse its body; `origin`, when given, must match.
pub fn verify_checkpoint(msg: &str, verifier: &NoteVerifier, origin: Option<&str>) -> Result<Checkpoint, NoteError> {
    let note = verify_note(msg, verifier)?;
    let cp = Checkpoint::parse(&note.text)?;
    if origin.is_some_and(|o| o != cp.origin) {
        return Err(NoteError::MalformedCheckpoint("the origin is not the expected one"));
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// golang.org/x/mod/sumdb/note's example key and note (note.go documentation, note_test.go).
    const GO_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn signer() -> NoteSigner {
        NoteSigner::new("log.example/acgs", SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    #[test]
    fn go_reference_note() {
        let v = NoteVerifier::parse(GO_VKEY).unwrap();
        assert_eq!(v.to_string(), GO_VKEY);
        let note = verify_note(GO_NOTE, &v).unwrap();
        assert_eq!(note.text, GO_TEXT);
        let s = NoteSigner::from_private_key(GO_SKEY).unwrap();
        assert_eq!(s.private_key(), GO_SKEY);
        assert_eq!(s.verifier_key(), GO_VKEY);
        // Ed25519 is deterministic: the same bytes as Go's note.Sign.
        assert_eq!(s.sign(GO_TEXT).unwrap(), GO_NOTE);
    }

    #[test]
    fn checkpoint_round_trip() {
        let s = signer();
        let v = NoteVerifier::parse(&s.verifier_key()).unwrap();
        let mut cp = Checkpoint::new("log.example/acgs", 12345, [9; 32]);
        let note = s.sign_checkpoint(&cp).unwrap();
        assert!(note.starts_with("log.example/acgs\n12345\nCQkJ"));
        assert_eq!(verify_checkpoint(&note, &v, Some("log.example/acgs")).unwrap(), cp);
        assert!(verify_checkpoint(&note, &v, Some("other")).is_err());
        cp.extensions.push("ext one".into());
        let note = s.sign_checkpoint(&cp).unwrap();
        assert_eq!(verify_checkpoint(&note, &v, None).unwrap(), cp);
        assert_eq!(Checkpoint::parse(&Checkpoint::new("o", 0, [0; 32]).body()).unwrap().size, 0);
        for bad in
            ["o\n01\nAAAA\n", "o\n1\nAAAA\n", "\n1\n", "o\n1", "o\n-1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n"]
        {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_single_byte_change_fails() {
        let s = signer();
        let v = s.verifier();
        let note = s.sign_checkpoint(&Checkpoint::new("log.example/acgs", 42, [3; 32])).unwrap();
        verify_note(&note, &v).unwrap();
        let bytes = note.as_bytes();
        for i in 0..bytes.len() {
            for delta in [0x01u8, 0x20, 0x80, 0xff] {
                let mut changed = bytes.to_vec();
                changed[i] ^= delta;
                if let Ok(text) = std::str::from_utf8(&changed) {
                    assert!(verify_note(text, &v).is_err(), "byte {i} ^ {delta:#x} still verifies");
                }
            }
        }
        // Truncations and an added line fail too.
        for end in 0..bytes.len() {
            if let Ok(text) = std::str::from_utf8(&bytes[..end]) {
                assert!(verify_note(text, &v).is_err());
            }
        }
    }

    #[test]
    fn unknown_keys_and_names_are_refused() {
        let s = signer();
        let note = s.sign("hello\n").unwrap();
        let other = NoteSigner::new("log.example/acgs", SigningKey::from_bytes(&[8; 32])).unwrap();
        assert!(matches!(verify_note(&note, &other.verifier()), Err(NoteError::UnknownKey { .. })));
        let renamed = NoteSigner::new("other.example", SigningKey::from_bytes(&[7; 32])).unwrap();
        assert!(matches!(verify_note(&note, &renamed.verifier()), Err(NoteError::UnknownKey { .. })));
        // A cosignature by an unknown key is ignored; a second one by our key is refused.
        let cosigned = format!("{note}{}", other.sign("hello\n").unwrap().split("\n\n").nth(1).unwrap());
        verify_note(&cosigned, &s.verifier()).unwrap();
        let twice = format!("{note}{}", note.split("\n\n").nth(1).unwrap());
        assert!(verify_note(&twice, &s.verifier()).is_err());
        // Forged: our name and id, another key's signature.
        let forged = note.replace(note.split(' ').next_back().unwrap().trim_end(), &{
            let mut blob = s.key_id().to_vec();
            blob.extend_from_slice(&SigningKey::from_bytes(&[8; 32]).sign(b"hello\n").to_bytes());
            B64.encode(blob)
        });
        assert!(matches!(verify_note(&forged, &s.verifier()), Err(NoteError::BadSignature { .. })));
    }

    #[test]
    fn keys_are_checked() {
        assert!(NoteSigner::new("has space", SigningKey::from_bytes(&[1; 32])).is_err());
        assert!(NoteSigner::new("has+plus", SigningKey::from_bytes(&[1; 32])).is_err());
        assert!(NoteSigner::new("", SigningKey::from_bytes(&[1; 32])).is_err());
        assert!(NoteVerifier::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
        assert!(NoteVerifier::parse("PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
        assert!(NoteVerifier::parse("PeterNeumann+c74f20a3+AhpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
        assert!(NoteVerifier::parse("PeterNeumann+c74f20a3").is_err());
        assert!(s_text_rules());
    }

    fn s_text_rules() -> bool {
        let s = signer();
        s.sign("no newline").is_err() && s.sign("").is_err() && s.sign("tab\there\n").is_err()
    }
}

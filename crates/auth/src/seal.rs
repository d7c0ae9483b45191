//! [`SealKey`]: how an account's tokens rest in the store — encrypted
//! (ChaCha20-Poly1305) under a key derived (HKDF-SHA256) from the account's
//! own secret, bound to the account's name. Whoever reads the state file or
//! the database but not the accounts' secrets learns nothing from it, and
//! tokens cannot be moved from one account to another. A changed secret
//! (a new password, a re-authorisation) leaves the old tokens unreadable,
//! which is what it should mean: log in afresh.

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::{Scheme, Secret};

/// The first byte of a sealed record: how it was sealed.
const FORMAT: u8 = 1;
/// The most bytes of a sealed record the host reads back.
pub const SEALED_BYTES: usize = 64 * 1024;

/// What the platform issued for an account, and when.
#[derive(Clone)]
pub struct Tokens {
    pub access: Secret,
    pub refresh: Option<Secret>,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    /// Counts renewals, from 1.
    pub generation: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issued_at_ms", &self.issued_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Plain {
    access: String,
    refresh: Option<String>,
    issued_at_ms: u64,
    expires_at_ms: u64,
    generation: u64,
}

/// The key an account's tokens are sealed with.
pub struct SealKey {
    key: LessSafeKey,
    account: String,
}

impl SealKey {
    /// The key for `account`'s tokens under `scheme`, from its secret.
    pub fn derive(secret: &Secret, account: &str, scheme: Scheme) -> SealKey {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"orchestrator sealed tokens v1");
        let prk = salt.extract(secret.expose().as_bytes());
        let info = [account.as_bytes(), b"\0", scheme.as_str().as_bytes()];
        let okm = prk
            .expand(&info, &CHACHA20_POLY1305)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SealKey {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            account: account.to_owned(),
        }
    }

    pub fn seal(&self, tokens: &Tokens) -> Vec<u8> {
        let plain = Plain {
            access: tokens.access.expose().to_owned(),
            refresh: tokens.refresh.as_ref().map(|r| r.expose().to_owned()),
            issued_at_ms: tokens.issued_at_ms,
            expires_at_ms: tokens.expires_at_ms,
            generation: tokens.generation,
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut body = serde_json::to_vec(&plain).expect("tokens serialise");
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.account.as_bytes()),
                &mut body,
            )
            .expect("a record this small seals");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + body.len());
        sealed.push(FORMAT);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        sealed
    }

    /// The tokens in `sealed`, or `None` when they were sealed under
    /// another secret or account, or are damaged: either way, unusable.
    pub fn open(&self, sealed: &[u8]) -> Option<Tokens> {
        if sealed.len() > SEALED_BYTES || sealed.len() < 1 + NONCE_LEN + aead::MAX_TAG_LEN {
            return None;
        }
        let (format, rest) = sealed.split_first()?;
        if *format != FORMAT {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(self.account.as_bytes()), &mut body)
            .ok()?;
        let plain: Plain = serde_json::from_slice(plain).ok()?;
        Some(Tokens {
            access: Secret::new(plain.access),
            refresh: plain.refresh.map(Secret::new),
            issued_at_ms: plain.issued_at_ms,
            expires_at_ms: plain.expires_at_ms,
            generation: plain.generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            access: Secret::new("access-AAAA"),
            refresh: Some(Secret::new("refresh-RRRR")),
            issued_at_ms: 1,
            expires_at_ms: 2,
            generation: 3,
        }
    }

    #[test]
    fn sealed_tokens_open_only_under_the_same_secret_and_account() {
        let secret = Secret::new("app-password");
        let key = SealKey::derive(&secret, "alice", Scheme::Session);
        let sealed = key.seal(&tokens());
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("access-AAAA") && !text.contains("refresh-RRRR"));
        let opened = key.open(&sealed).unwrap();
        assert_eq!(opened.access.expose(), "access-AAAA");
        assert_eq!(opened.refresh.unwrap().expose(), "refresh-RRRR");
        assert_eq!(opened.generation, 3);

        let other_secret = SealKey::derive(&Secret::new("new-password"), "alice", Scheme::Session);
        assert!(other_secret.open(&sealed).is_none());
        let other_account = SealKey::derive(&secret, "bob", Scheme::Session);
        assert!(other_account.open(&sealed).is_none());
        let other_scheme = SealKey::derive(&secret, "alice", Scheme::OAuth2);
        assert!(other_scheme.open(&sealed).is_none());
    }

    #[test]
    fn damaged_or_hostile_bytes_open_to_nothing() {
        let key = SealKey::derive(&Secret::new("s"), "alice", Scheme::OAuth2);
        let mut sealed = key.seal(&tokens());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(key.open(&sealed).is_none());
        assert!(key.open(&[]).is_none());
        assert!(key.open(&[1; 10]).is_none());
        assert!(key.open(&vec![1; SEALED_BYTES + 1]).is_none());
    }

    #[test]
    fn two_seals_of_the_same_tokens_differ() {
        let key = SealKey::derive(&Secret::new("s"), "alice", Scheme::OAuth2);
        assert_ne!(key.seal(&tokens()), key.seal(&tokens()));
    }
}

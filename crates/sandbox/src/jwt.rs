//! JWT-shaped tokens: [`Claims`] written as
//! `base64url(header).base64url(payload).signature`.
//!
//! The signature is an opaque string. The sandbox never trusts a token's
//! text: it looks every token up in its own record of what it issued (with
//! the expiry it recorded), so nothing here verifies anything. Tokens only
//! need to look like the real ones to a poster that decodes the payload,
//! e.g. to read `exp` and refresh early.

use serde::{Deserialize, Serialize};

/// The payload of a token the sandbox mints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Scope, e.g. `com.atproto.access` or `com.atproto.refresh`.
    pub scope: String,
    /// Who the token is for (a Bluesky DID).
    pub sub: String,
    /// Issued at, epoch seconds.
    pub iat: u64,
    /// Expires at, epoch seconds.
    pub exp: u64,
    /// Unique per token, so two tokens minted in the same second differ.
    pub jti: String,
}

impl Claims {
    /// The claims of a JWT-shaped token, read without verifying it.
    pub fn of(token: &str) -> Option<Claims> {
        let payload = token.split('.').nth(1)?;
        serde_json::from_slice(&base64url_decode(payload)?).ok()
    }
}

/// Writes a token of type `typ` (e.g. `at+jwt`) carrying `claims`.
pub(crate) fn mint(typ: &str, claims: &Claims) -> String {
    let header = serde_json::json!({ "typ": typ, "alg": "ES256K" }).to_string();
    let payload = serde_json::to_string(claims).unwrap_or_default();
    let signed = format!(
        "{}.{}",
        base64url_encode(header.as_bytes()),
        base64url_encode(payload.as_bytes())
    );
    // Looks like a 64-byte ES256K signature; it signs nothing.
    let mut signature = Vec::with_capacity(64);
    for i in 0..8u8 {
        let mut input = signed.as_bytes().to_vec();
        input.push(i);
        signature.extend_from_slice(&fnv1a(&input).to_be_bytes());
    }
    format!("{signed}.{}", base64url_encode(&signature))
}

/// An opaque token (no structure a client could read): `len` bytes derived
/// from `seed`, in base64url.
pub(crate) fn opaque(seed: &str, len: usize) -> String {
    let mut bytes = Vec::with_capacity(len + 8);
    let mut i = 0u64;
    while bytes.len() < len {
        let mut input = seed.as_bytes().to_vec();
        input.extend_from_slice(&i.to_be_bytes());
        bytes.extend_from_slice(&fnv1a(&input).to_be_bytes());
        i += 1;
    }
    bytes.truncate(len);
    base64url_encode(&bytes)
}

/// FNV-1a: a stable, dependency-free hash for ids and filler bytes.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding, as JWTs use it.
pub fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // Three bytes make four characters; a short chunk makes fewer.
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64url, with or without padding; `None` if it is not.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    // A lone trailing character carries fewer than 8 bits: not base64.
    (count < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        let data: Vec<u8> = (0..=255).collect();
        for len in 0..40 {
            let encoded = base64url_encode(&data[..len]);
            assert!(!encoded.contains(['=', '+', '/']), "{encoded}");
            assert_eq!(base64url_decode(&encoded).unwrap(), &data[..len]);
        }
        assert_eq!(base64url_encode(b"hello?>"), "aGVsbG8_Pg");
        assert_eq!(base64url_decode("aGVsbG8_Pg==").unwrap(), b"hello?>");
        assert_eq!(base64url_decode("a"), None);
        assert_eq!(base64url_decode("a+b/"), None);
    }

    #[test]
    fn a_minted_token_carries_its_claims() {
        let claims = Claims {
            scope: "com.atproto.access".into(),
            sub: "did:plc:abc".into(),
            iat: 10,
            exp: 20,
            jti: "1-2".into(),
        };
        let token = mint("at+jwt", &claims);
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(Claims::of(&token), Some(claims));
        assert_eq!(Claims::of("not.a-token.x"), None);
    }
}

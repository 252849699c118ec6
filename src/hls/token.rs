//! Signed, expiring HLS access tokens: `?token=EXPIRES.SIGNATURE`, where the
//! signature is HMAC-SHA256 of the subject (a user's name, or a stream id for a
//! stream without a user) and the expiry, under the node's secret. A token names
//! no key and carries no state: it is checked by recomputing it, in constant time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The longest a token may be asked to live.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the token's shape.
    #[error("malformed HLS token")]
    Malformed,
    /// Past its expiry.
    #[error("expired HLS token")]
    Expired,
    /// Not signed for this stream by this node's secret.
    #[error("HLS token not valid for this stream")]
    Invalid,
}

impl Signer {
    /// A signer with `secret` (the configured one, or random bytes drawn at start).
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// A token for `subject`, valid until `expires`.
    pub fn sign(&self, subject: &str, expires: SystemTime) -> String {
        let at = unix(expires);
        format!("{at}.{}", hex(&self.mac(subject, at)))
    }

    /// Checks `token` for `subject` at `now`.
    pub fn verify(&self, subject: &str, token: &str, now: SystemTime) -> Result<(), TokenError> {
        let (at, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let at: u64 = at.parse().map_err(|_| TokenError::Malformed)?;
        if signature.len() != 64 {
            return Err(TokenError::Malformed);
        }
        let signature = unhex(signature).ok_or(TokenError::Malformed)?;
        let mut mac = self.keyed();
        mac.update(&message(subject, at));
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::Invalid)?;
        if unix(now) >= at {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    fn keyed(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).expect("HMAC takes any key length")
    }

    fn mac(&self, subject: &str, at: u64) -> Vec<u8> {
        let mut mac = self.keyed();
        mac.update(&message(subject, at));
        mac.finalize().into_bytes().to_vec()
    }
}

fn message(subject: &str, at: u64) -> Vec<u8> {
    format!("prism-hls\n{subject}\n{at}").into_bytes()
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_subject_until_it_expires() {
        let signer = Signer::new(b"a secret of some length".to_vec());
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = signer.sign("alice", now + Duration::from_secs(60));
        assert_eq!(signer.verify("alice", &token, now), Ok(()));
        assert_eq!(signer.verify("bob", &token, now), Err(TokenError::Invalid));
        assert_eq!(
            signer.verify("alice", &token, now + Duration::from_secs(60)),
            Err(TokenError::Expired)
        );
        let other = Signer::new(b"another secret".to_vec());
        assert_eq!(other.verify("alice", &token, now), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_cannot_be_extended_or_mangled() {
        let signer = Signer::new(b"k".to_vec());
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let token = signer.sign("id1", now + Duration::from_secs(10));
        let (_, signature) = token.split_once('.').unwrap();
        let extended = format!("{}.{signature}", 1000 + 100_000);
        assert_eq!(
            signer.verify("id1", &extended, now),
            Err(TokenError::Invalid)
        );
        for bad in ["", ".", "x.y", "1.zz", "1.", &format!("{token}0"), "é.é"] {
            assert_eq!(
                signer.verify("id1", bad, now),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }
}

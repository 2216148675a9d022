//! Delivery-stream cursors: opaque to clients, integrity-protected, bound to one party.
//!
//! A cursor names a position in a party's delivery history: everything up to and including event
//! `(seq, ord)` has been delivered, plus `records_sent` records of the event after it when the
//! stream stopped in the middle of a snapshot. During the stream-start phase (a stream opened
//! without a cursor) the position is inside the list of start snapshots instead.
//!
//! The encoding is a version byte, the fields, and an HMAC-SHA-256 (first 16 bytes) over the
//! fields and the party id, base64url without padding. A cursor from another party, or one changed
//! by a single bit, does not verify.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;

/// Where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// In the party's history, after event `(seq, ord)`; `records_sent` records of the next event
    /// (a snapshot) were already delivered.
    History { seq: u64, ord: u64, records_sent: u64 },
    /// In the stream-start phase at register head `head`: start snapshots `0..index` are done, and
    /// `records_sent` records of snapshot `index` were delivered.
    Start {
        head: u64,
        index: u64,
        records_sent: u64,
    },
}

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is not valid base64url")]
    Encoding,
    #[error("the cursor has the wrong length or version")]
    Format,
    #[error("the cursor was not issued to this party by this service")]
    Signature,
}

/// Signs and verifies cursors with the service's secret key.
#[derive(Clone)]
pub struct CursorKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(<redacted>)")
    }
}

impl CursorKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self, party_id: &str, body: &[u8]) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        // HMAC accepts keys of any length, so this cannot fail; an empty MAC would never verify.
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) {
            mac.update(party_id.as_bytes());
            mac.update(&[0]);
            mac.update(body);
            let full = mac.finalize().into_bytes();
            out.copy_from_slice(&full[..MAC_LEN]);
        }
        out
    }

    /// Encodes `position` for `party_id`.
    pub fn encode(&self, party_id: &str, position: Position) -> String {
        let (tag, a, b, c) = match position {
            Position::History {
                seq,
                ord,
                records_sent,
            } => (0u8, seq, ord, records_sent),
            Position::Start {
                head,
                index,
                records_sent,
            } => (1u8, head, index, records_sent),
        };
        let mut body = Vec::with_capacity(2 + 24 + MAC_LEN);
        body.push(VERSION);
        body.push(tag);
        body.extend_from_slice(&a.to_be_bytes());
        body.extend_from_slice(&b.to_be_bytes());
        body.extend_from_slice(&c.to_be_bytes());
        let mac = self.mac(party_id, &body);
        body.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// Decodes and verifies a cursor for `party_id`.
    pub fn decode(&self, party_id: &str, cursor: &str) -> Result<Position, CursorError> {
        if cursor.len() > 512 {
            return Err(CursorError::Format);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| CursorError::Encoding)?;
        if bytes.len() != 2 + 24 + MAC_LEN || bytes.first() != Some(&VERSION) {
            return Err(CursorError::Format);
        }
        let (body, mac) = bytes.split_at(2 + 24);
        let expected = self.mac(party_id, body);
        // Constant-time comparison: the difference is accumulated over every byte.
        let diff = expected.iter().zip(mac).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            return Err(CursorError::Signature);
        }
        let read = |i: usize| {
            body.get(2 + i * 8..2 + (i + 1) * 8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
                .ok_or(CursorError::Format)
        };
        let (a, b, c) = (read(0)?, read(1)?, read(2)?);
        match body.get(1) {
            Some(0) => Ok(Position::History {
                seq: a,
                ord: b,
                records_sent: c,
            }),
            Some(1) => Ok(Position::Start {
                head: a,
                index: b,
                records_sent: c,
            }),
            _ => Err(CursorError::Format),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> CursorKey {
        CursorKey::new(b"test key of some length".to_vec())
    }

    #[test]
    fn round_trips_and_is_bound_to_the_party() {
        let k = key();
        for p in [
            Position::History {
                seq: 42,
                ord: 3,
                records_sent: 0,
            },
            Position::Start {
                head: 7,
                index: 2,
                records_sent: 500,
            },
        ] {
            let c = k.encode("pty_a", p);
            assert_eq!(k.decode("pty_a", &c), Ok(p));
            assert_eq!(k.decode("pty_b", &c), Err(CursorError::Signature));
            assert_eq!(
                CursorKey::new(b"other".to_vec()).decode("pty_a", &c),
                Err(CursorError::Signature)
            );
        }
        assert_eq!(k.decode("pty_a", "not base64 !"), Err(CursorError::Encoding));
        assert_eq!(k.decode("pty_a", "AAAA"), Err(CursorError::Format));
    }

    proptest! {
        #[test]
        fn any_changed_byte_is_refused(seq in any::<u64>(), ord in any::<u64>(), flip in 0usize..42, bit in 0u8..8) {
            let k = key();
            let c = k.encode("p", Position::History { seq, ord, records_sent: 0 });
            let mut bytes = URL_SAFE_NO_PAD.decode(&c).unwrap();
            bytes[flip] ^= 1 << bit;
            let forged = URL_SAFE_NO_PAD.encode(bytes);
            prop_assert!(k.decode("p", &forged).is_err());
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,600}") {
            let _ = key().decode("p", &s);
        }
    }
}

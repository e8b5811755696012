//! The SHA-256 fingerprint of a DER certificate, as people write it. This
//! module owns parsing and printing fingerprints; it never decides trust
//! (that is the verifier's job in `tls`).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::ClientError;

/// The SHA-256 digest of a certificate's DER encoding.
///
/// Parsing accepts hex in either case, with or without colons between the
/// bytes; printing gives lowercase hex without colons, as `weir serve` does.
///
/// ```
/// use weir_client::Fingerprint;
///
/// let hex = "AB:".repeat(31) + "AB";
/// let fp: Fingerprint = hex.parse()?;
/// assert_eq!(fp.to_string(), "ab".repeat(32));
/// # Ok::<(), weir_client::ClientError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Parses 64 hex digits, optionally separated by colons.
    pub fn parse(text: &str) -> Result<Fingerprint, ClientError> {
        let trimmed = text.trim();
        let digits: Vec<u8> = trimmed.bytes().filter(|b| *b != b':').collect();
        let bad = |why: &str| ClientError::Config(format!("fingerprint {trimmed:?} {why}"));
        if digits.len() != 64 {
            return Err(bad(&format!(
                "has {} hex digits; a SHA-256 fingerprint has 64",
                digits.len()
            )));
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0])
                .ok_or_else(|| bad(&format!("contains {:?}", char::from(pair[0]))))?;
            let lo = hex_value(pair[1])
                .ok_or_else(|| bad(&format!("contains {:?}", char::from(pair[1]))))?;
            out[i] = hi << 4 | lo;
        }
        Ok(Fingerprint(out))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl FromStr for Fingerprint {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Fingerprint, ClientError> {
        Fingerprint::parse(s)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_colons_and_mixed_case() {
        let plain = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let fp = Fingerprint::parse(plain).expect("plain");
        assert_eq!(fp.to_string(), plain);
        let colons = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:aA:Bb:cc:dd:ee:ff";
        assert_eq!(Fingerprint::parse(colons).expect("colons"), fp);
        assert_eq!(
            Fingerprint::parse(&format!("  {plain}\n")).expect("trimmed"),
            fp
        );
    }

    #[test]
    fn refuses_wrong_length_and_non_hex() {
        let err = Fingerprint::parse("abcd").expect_err("short").to_string();
        assert!(err.contains("4 hex digits"), "{err}");
        let err = Fingerprint::parse(&"g".repeat(64))
            .expect_err("non-hex")
            .to_string();
        assert!(err.contains("'g'"), "{err}");
        assert!(Fingerprint::parse(&"a".repeat(66)).is_err());
        assert!(Fingerprint::parse("").is_err());
    }

    #[test]
    fn digest_of_der_matches_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(
            Fingerprint::of_der(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

//! LEB128 variable-length integers, unsigned and zigzag-signed.
//!
//! Decoding never reads past the slice it is given and refuses encodings
//! longer than the type allows, so a hostile buffer cannot make it loop or
//! overflow.

use crate::BatchError;

/// Longest LEB128 encoding of a `u64`.
pub(crate) const MAX_VARINT_BYTES: usize = 10;

/// Appends `value` to `out` as unsigned LEB128.
pub(crate) fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` to `out` as zigzag LEB128.
pub(crate) fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Number of bytes `put_u64` writes for `value`.
pub(crate) fn len_u64(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads an unsigned LEB128 value from the front of `buf`; returns it and the
/// number of bytes it took.
pub(crate) fn get_u64(buf: &[u8], field: &'static str) -> Result<(u64, usize), BatchError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_VARINT_BYTES).enumerate() {
        let low = u64::from(byte & 0x7f);
        // The tenth byte may only carry the single top bit of a u64.
        if i == MAX_VARINT_BYTES - 1 && low > 1 {
            return Err(BatchError::VarintOverflow { field });
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= MAX_VARINT_BYTES {
        Err(BatchError::VarintOverflow { field })
    } else {
        Err(BatchError::Truncated {
            what: field,
            needed: buf.len() + 1,
            available: buf.len(),
        })
    }
}

/// Reads a zigzag LEB128 value from the front of `buf`.
pub(crate) fn get_i64(buf: &[u8], field: &'static str) -> Result<(i64, usize), BatchError> {
    let (raw, n) = get_u64(buf, field)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn unsigned_round_trip(v in any::<u64>()) {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            prop_assert_eq!(out.len(), len_u64(v));
            prop_assert_eq!(get_u64(&out, "v").map_err(|e| TestCaseError::fail(e.to_string()))?, (v, out.len()));
        }

        #[test]
        fn signed_round_trip(v in any::<i64>()) {
            let mut out = Vec::new();
            put_i64(&mut out, v);
            prop_assert_eq!(get_i64(&out, "v").map_err(|e| TestCaseError::fail(e.to_string()))?, (v, out.len()));
        }
    }

    #[test]
    fn overlong_encoding_is_refused() {
        let buf = [0xffu8; 11];
        assert!(matches!(
            get_u64(&buf, "x"),
            Err(BatchError::VarintOverflow { .. })
        ));
        // Ten bytes whose last one carries more than the top bit of a u64.
        let mut buf = [0xffu8; 10];
        buf[9] = 0x02;
        assert!(matches!(
            get_u64(&buf, "x"),
            Err(BatchError::VarintOverflow { .. })
        ));
    }

    #[test]
    fn truncated_encoding_is_reported() {
        assert!(matches!(
            get_u64(&[0x80, 0x80], "x"),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            get_u64(&[], "x"),
            Err(BatchError::Truncated { .. })
        ));
    }
}

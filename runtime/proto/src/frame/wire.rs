//! Primitive encodings of frame bodies: fixed-width little-endian integers,
//! length-prefixed strings, options and counted lists. The reader checks
//! every length against the bytes left and against the field's bound before
//! it uses it.

use bytes::Bytes;

use super::FrameError;

#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A string of at most `u16::MAX` bytes; longer ones are cut at a char
    /// boundary (encoders only write strings they validated, so this only
    /// guards error messages).
    pub(crate) fn str(&mut self, s: &str) {
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.buf.extend_from_slice(&s.as_bytes()[..end]);
    }
    pub(crate) fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
            None => self.u8(0),
        }
    }
    pub(crate) fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
            None => self.u8(0),
        }
    }
    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.str(v);
            }
            None => self.u8(0),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) buf: Bytes,
    pub(crate) pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], FrameError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(FrameError::Truncated {
                what,
                needed: n,
                available: left,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, FrameError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn bytes32(&mut self, what: &'static str) -> Result<[u8; 32], FrameError> {
        self.array(what)
    }

    /// A string of at most `limit` bytes.
    pub(crate) fn str(&mut self, limit: usize, what: &'static str) -> Result<String, FrameError> {
        let len = self.u16(what)? as usize;
        if len > limit {
            return Err(FrameError::TooLong { what, len, limit });
        }
        let raw = self.take(len, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| FrameError::NotUtf8 { what })
    }

    pub(crate) fn present(&mut self, what: &'static str) -> Result<bool, FrameError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(FrameError::BadTag { what, tag }),
        }
    }
    pub(crate) fn opt_u32(&mut self, what: &'static str) -> Result<Option<u32>, FrameError> {
        if self.present(what)? {
            self.u32(what).map(Some)
        } else {
            Ok(None)
        }
    }
    pub(crate) fn opt_u64(&mut self, what: &'static str) -> Result<Option<u64>, FrameError> {
        if self.present(what)? {
            self.u64(what).map(Some)
        } else {
            Ok(None)
        }
    }
    pub(crate) fn opt_str(
        &mut self,
        limit: usize,
        what: &'static str,
    ) -> Result<Option<String>, FrameError> {
        if self.present(what)? {
            self.str(limit, what).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A list count, checked against `limit` and against the bytes left
    /// (each item takes at least `min_item_bytes`), so a count can never
    /// size an allocation the frame could not fill.
    pub(crate) fn count(
        &mut self,
        limit: usize,
        min_item_bytes: usize,
        what: &'static str,
    ) -> Result<usize, FrameError> {
        let n = self.u32(what)? as usize;
        if n > limit {
            return Err(FrameError::TooMany {
                what,
                count: n,
                limit,
            });
        }
        let left = self.buf.len() - self.pos;
        if n.saturating_mul(min_item_bytes.max(1)) > left {
            return Err(FrameError::Truncated {
                what,
                needed: n * min_item_bytes.max(1),
                available: left,
            });
        }
        Ok(n)
    }

    /// The next `n` bytes as a slice of the body, without a copy.
    pub(crate) fn slice(&mut self, n: usize, what: &'static str) -> Result<Bytes, FrameError> {
        let start = self.pos;
        self.take(n, what)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// The rest of the body, without a copy.
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn finish(&self, kind: &'static str) -> Result<(), FrameError> {
        let extra = self.buf.len() - self.pos;
        if extra != 0 {
            return Err(FrameError::TrailingBytes { kind, extra });
        }
        Ok(())
    }
}

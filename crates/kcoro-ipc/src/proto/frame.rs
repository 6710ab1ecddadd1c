//! Frames: the 8-byte header, a builder that appends a frame to an output buffer (many
//! frames share one buffer, so a writer sends them in one call), and a reader that checks
//! a frame's attribute structure once and then answers typed lookups.

use super::{Attr, Cmd, HEADER_LEN, LONG_FORM, Limits, ProtoError};

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Command number.
    pub cmd: Cmd,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// Payload length in bytes.
    pub len: u32,
}

/// Reads a header.
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Header {
    Header {
        cmd: Cmd(u16::from_be_bytes([b[0], b[1]])),
        flags: u16::from_be_bytes([b[2], b[3]]),
        len: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    }
}

/// Splits the first whole frame off `buf`: `Ok(None)` when more bytes are needed, else the
/// frame and the bytes it used. A header announcing more than `limits.max_frame` is an
/// error as soon as the header is in, so nobody buffers a huge frame to refuse it.
pub fn split_frame<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(FrameRef<'a>, usize)>, ProtoError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else { return Ok(None) };
    let h = decode_header(head);
    if h.len > limits.max_frame {
        return Err(ProtoError::FrameTooLong { len: h.len, max: limits.max_frame });
    }
    let total = HEADER_LEN + h.len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let frame = FrameRef::parse(h, &buf[HEADER_LEN..total], limits.max_attrs)?;
    Ok(Some((frame, total)))
}

/// A frame whose attribute structure has been checked: every attribute lies inside the
/// payload, there are at most `max_attrs`, and each uses its canonical form.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// Command number.
    pub cmd: Cmd,
    /// `FLAG_*` bits.
    pub flags: u16,
    payload: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// Checks `payload` (the bytes after `header`).
    pub fn parse(header: Header, payload: &'a [u8], max_attrs: usize) -> Result<Self, ProtoError> {
        let frame = FrameRef { cmd: header.cmd, flags: header.flags, payload };
        let mut count = 0;
        let mut it = frame.attrs();
        while let Some(a) = it.next_checked() {
            a?;
            count += 1;
            if count > max_attrs {
                return Err(ProtoError::TooManyAttrs(max_attrs));
            }
        }
        Ok(frame)
    }

    /// Every attribute, in order.
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs { rest: self.payload }
    }

    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The first value of `attr`, if present.
    pub fn get(&self, attr: Attr) -> Option<&'a [u8]> {
        self.attrs().find(|(a, _)| *a == attr).map(|(_, v)| v)
    }

    /// Every value of `attr`, in order (repeated attributes, such as `STATS`).
    pub fn all(&self, attr: Attr) -> impl Iterator<Item = &'a [u8]> {
        self.attrs().filter(move |(a, _)| *a == attr).map(|(_, v)| v)
    }

    /// The first value of `attr`, which must be present.
    pub fn need(&self, attr: Attr) -> Result<&'a [u8], ProtoError> {
        self.get(attr).ok_or(ProtoError::Missing(attr.0))
    }

    fn fixed<const N: usize>(&self, attr: Attr) -> Result<Option<[u8; N]>, ProtoError> {
        fixed_value(attr, self.get(attr))
    }

    /// A `u32` attribute.
    pub fn u32(&self, attr: Attr) -> Result<Option<u32>, ProtoError> {
        Ok(self.fixed(attr)?.map(u32::from_be_bytes))
    }

    /// An `i32` attribute.
    pub fn i32(&self, attr: Attr) -> Result<Option<i32>, ProtoError> {
        Ok(self.fixed(attr)?.map(i32::from_be_bytes))
    }

    /// A `u64` attribute.
    pub fn u64(&self, attr: Attr) -> Result<Option<u64>, ProtoError> {
        Ok(self.fixed(attr)?.map(u64::from_be_bytes))
    }

    /// An `i64` attribute.
    pub fn i64(&self, attr: Attr) -> Result<Option<i64>, ProtoError> {
        Ok(self.fixed(attr)?.map(i64::from_be_bytes))
    }

    /// A UTF-8 attribute.
    pub fn str(&self, attr: Attr) -> Result<Option<&'a str>, ProtoError> {
        self.get(attr).map(|v| std::str::from_utf8(v).map_err(|_| ProtoError::BadValue(attr.0))).transpose()
    }

    /// `REQ_ID` (0 when absent: events).
    pub fn req_id(&self) -> Result<u64, ProtoError> {
        Ok(self.u64(Attr::REQ_ID)?.unwrap_or(0))
    }

    /// `RESULT` (0 when absent).
    pub fn result(&self) -> Result<i32, ProtoError> {
        Ok(self.i32(Attr::RESULT)?.unwrap_or(0))
    }
}

/// The value of `attr` (found by the caller, [`FrameRef::get`] or a scan of
/// [`FrameRef::attrs`]) as `N` bytes, which a value of another length is not.
pub fn fixed_value<const N: usize>(attr: Attr, v: Option<&[u8]>) -> Result<Option<[u8; N]>, ProtoError> {
    match v {
        None => Ok(None),
        Some(v) => v.try_into().map(Some).map_err(|_| ProtoError::BadValue(attr.0)),
    }
}

/// An iterator over a checked frame's attributes: `(type, value)`.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    fn next_checked(&mut self) -> Option<Result<(Attr, &'a [u8]), ProtoError>> {
        if self.rest.is_empty() {
            return None;
        }
        Some(self.take())
    }

    fn take(&mut self) -> Result<(Attr, &'a [u8]), ProtoError> {
        let Some(t) = self.rest.first_chunk::<2>() else {
            return Err(ProtoError::Truncated("attribute type"));
        };
        let t = u16::from_be_bytes(*t);
        let (ty, len, head) = if t & LONG_FORM == 0 {
            let Some(l) = self.rest.get(2..4) else { return Err(ProtoError::Truncated("attribute length")) };
            (t, u16::from_be_bytes([l[0], l[1]]) as usize, 4)
        } else {
            let Some(l) = self.rest.get(2..6) else { return Err(ProtoError::Truncated("attribute length")) };
            let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
            if len <= u16::MAX as usize {
                return Err(ProtoError::NonCanonical(t & !LONG_FORM));
            }
            (t & !LONG_FORM, len, 6)
        };
        let Some(value) = self.rest.get(head..head + len) else {
            return Err(ProtoError::Truncated("attribute value"));
        };
        self.rest = &self.rest[head + len..];
        Ok((Attr(ty), value))
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (Attr, &'a [u8]);

    /// On a checked frame every attribute parses; a malformed tail ends the iteration.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_checked()?.ok()
    }
}

/// Appends one frame to an output buffer: header first (its length patched by
/// [`finish`](Self::finish)), then attributes.
#[derive(Debug)]
pub struct FrameBuf<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> FrameBuf<'a> {
    /// Starts a frame at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>, cmd: Cmd, flags: u16) -> Self {
        let start = out.len();
        out.extend_from_slice(&cmd.0.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        FrameBuf { out, start }
    }

    /// A raw attribute; the long form is chosen for values over 65535 bytes.
    pub fn bytes(&mut self, attr: Attr, value: &[u8]) -> &mut Self {
        self.header(attr, value.len());
        self.out.extend_from_slice(value);
        self
    }

    /// Writes the attribute header for a value of `len` bytes, whose bytes the caller
    /// appends next (to encode a value straight into the frame).
    pub fn header(&mut self, attr: Attr, len: usize) -> &mut Self {
        debug_assert!(attr.0 & LONG_FORM == 0, "FrameBuf: attribute {} has the long-form bit", attr.0);
        if len <= u16::MAX as usize {
            self.out.extend_from_slice(&attr.0.to_be_bytes());
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.extend_from_slice(&(attr.0 | LONG_FORM).to_be_bytes());
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self
    }

    /// The buffer, to append a value announced with [`header`](Self::header).
    pub fn out(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// A `u32` attribute.
    pub fn u32(&mut self, attr: Attr, v: u32) -> &mut Self {
        self.bytes(attr, &v.to_be_bytes())
    }

    /// An `i32` attribute.
    pub fn i32(&mut self, attr: Attr, v: i32) -> &mut Self {
        self.bytes(attr, &v.to_be_bytes())
    }

    /// A `u64` attribute.
    pub fn u64(&mut self, attr: Attr, v: u64) -> &mut Self {
        self.bytes(attr, &v.to_be_bytes())
    }

    /// An `i64` attribute.
    pub fn i64(&mut self, attr: Attr, v: i64) -> &mut Self {
        self.bytes(attr, &v.to_be_bytes())
    }

    /// A UTF-8 attribute.
    pub fn str(&mut self, attr: Attr, v: &str) -> &mut Self {
        self.bytes(attr, v.as_bytes())
    }

    /// Patches the header's length. A payload over `max_frame` (or 4 GiB) is removed from
    /// the buffer again and reported.
    pub fn finish(self, max_frame: u32) -> Result<(), ProtoError> {
        let len = self.out.len() - self.start - super::HEADER_LEN;
        match u32::try_from(len) {
            Ok(l) if l <= max_frame => {
                self.out[self.start + 4..self.start + 8].copy_from_slice(&l.to_be_bytes());
                Ok(())
            }
            _ => {
                self.out.truncate(self.start);
                Err(ProtoError::FrameTooLong { len: u32::try_from(len).unwrap_or(u32::MAX), max: max_frame })
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::proto::{FLAG_REPLY, HEADER_LEN};

    fn one(cmd: Cmd, build: impl FnOnce(&mut FrameBuf<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        let mut f = FrameBuf::begin(&mut out, cmd, FLAG_REPLY);
        build(&mut f);
        f.finish(u32::MAX).unwrap();
        out
    }

    /// The byte-level example of docs/IPC_PROTOCOL.md.
    #[test]
    fn documented_example_bytes() {
        let out = one(Cmd::CHAN_RECV, |f| {
            f.u64(Attr::REQ_ID, 7).i32(Attr::RESULT, 0).bytes(Attr::ELEMENT, b"hi");
        });
        let expected: &[u8] = &[
            0x00, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1a, // CHAN_RECV, REPLY, 26 bytes
            0x00, 0x1a, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 7, // REQ_ID = 7
            0x00, 0x16, 0x00, 0x04, 0, 0, 0, 0, // RESULT = 0
            0x00, 0x15, 0x00, 0x02, b'h', b'i', // ELEMENT = "hi"
        ];
        assert_eq!(out, expected);
        let (f, used) = split_frame(&out, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            (f.cmd, f.flags, f.req_id().unwrap(), f.get(Attr::ELEMENT)),
            (Cmd::CHAN_RECV, 1, 7, Some(&b"hi"[..]))
        );
    }

    #[test]
    fn long_values_use_the_long_form() {
        let big = vec![5u8; 70_000];
        let out = one(Cmd::CHAN_SEND, |f| {
            f.bytes(Attr::ELEMENT, &big);
        });
        assert_eq!(&out[HEADER_LEN..HEADER_LEN + 6], &[0x80, 0x15, 0, 1, 0x11, 0x70]);
        let (f, _) = split_frame(&out, &Limits::default()).unwrap().unwrap();
        assert_eq!(f.get(Attr::ELEMENT).map(<[u8]>::len), Some(70_000));
    }

    #[test]
    fn incomplete_frames_wait_and_bad_ones_fail() {
        let out = one(Cmd::HELLO, |f| {
            f.u32(Attr::ABI_MAJOR, 1);
        });
        for cut in 0..out.len() {
            assert!(split_frame(&out[..cut], &Limits::default()).unwrap().is_none(), "cut at {cut}");
        }
        let small = Limits { max_frame: 4, ..Limits::default() };
        assert_eq!(
            split_frame(&out[..HEADER_LEN], &small).unwrap_err(),
            ProtoError::FrameTooLong { len: 8, max: 4 }
        );
        // An attribute running past the payload.
        let mut bad = out.clone();
        bad[HEADER_LEN + 3] = 9;
        assert_eq!(
            split_frame(&bad, &Limits::default()).unwrap_err(),
            ProtoError::Truncated("attribute value")
        );
        // Long form for a short value.
        let mut long = vec![0, 1, 0, 0, 0, 0, 0, 7, 0x80, 0x15, 0, 0, 0, 1, 9];
        assert_eq!(split_frame(&long, &Limits::default()).unwrap_err(), ProtoError::NonCanonical(0x15));
        long[HEADER_LEN + 1] = 0x16;
        // Too many attributes.
        let many = one(Cmd::HELLO, |f| {
            for _ in 0..5 {
                f.u32(Attr::ABI_MINOR, 0);
            }
        });
        let few = Limits { max_attrs: 4, ..Limits::default() };
        assert_eq!(split_frame(&many, &few).unwrap_err(), ProtoError::TooManyAttrs(4));
        // Wrong widths are caught at lookup.
        let f = FrameRef::parse(decode_header(out[..8].try_into().unwrap()), &out[8..], 8).unwrap();
        assert_eq!(f.u64(Attr::ABI_MAJOR).unwrap_err(), ProtoError::BadValue(1));
        assert_eq!(f.need(Attr::NAME).unwrap_err(), ProtoError::Missing(Attr::NAME.0));
    }

    #[test]
    fn oversize_frames_are_not_left_in_the_buffer() {
        let mut out = vec![1, 2, 3];
        let mut f = FrameBuf::begin(&mut out, Cmd::CHAN_SEND, 0);
        f.bytes(Attr::ELEMENT, &[0; 100]);
        assert!(matches!(f.finish(50), Err(ProtoError::FrameTooLong { .. })));
        assert_eq!(out, [1, 2, 3]);
    }
}

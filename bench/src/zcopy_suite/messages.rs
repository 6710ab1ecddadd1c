//! `zcopy` suite: the three message types of the `msg_*` rows, each made by the producer
//! and checked by the consumer as a user of that type would (see the suite's table in
//! [`super`]).
//!
//! Invariant: every payload is at least [`SEQ_BYTES`] long, so a sequence number fits at
//! its start.

use bytes::Bytes;
use kcoro::zcopy::{Region, ZBuf};

use super::{IN_FLIGHT, region_len};

/// Bytes of the sequence number at the start of a `ZBuf` or `Vec` message.
pub const SEQ_BYTES: usize = size_of::<u64>();

/// A message type of the `msg_*` rows.
pub trait Message: Send + 'static {
    /// What the producer makes messages from, built once per child before any timing.
    type Source: Send + Sync + 'static;

    /// The source for messages of `size` bytes (`size >= SEQ_BYTES`).
    fn source(size: usize) -> Result<Self::Source, String>;
    /// Message `seq`, the producer's whole per-message work.
    fn make(source: &Self::Source, size: usize, seq: u64) -> Result<Self, String>
    where
        Self: Sized;
    /// The consumer's check of message `seq`.
    fn check(&self, size: usize, seq: u64) -> Result<(), String>;
}

/// The sequence number at the start of `bytes`.
fn seq_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..SEQ_BYTES)?.try_into().ok()?))
}

/// A length and sequence number check shared by the types that carry one.
fn check_seq(bytes: &[u8], size: usize, seq: u64) -> Result<(), String> {
    match (bytes.len(), seq_of(bytes)) {
        (len, Some(got)) if len == size && got == seq => Ok(()),
        (len, got) => Err(format!("message {seq}: {len} bytes (want {size}), sequence number {got:?}")),
    }
}

/// An error unless a sequence number fits in `size` bytes.
fn fits(size: usize) -> Result<(), String> {
    match size {
        SEQ_BYTES.. => Ok(()),
        _ => Err(format!("payload of {size} bytes has no room for a sequence number")),
    }
}

/// A payload of `size` bytes that is not all zeros (so a copy is a real copy).
fn pattern(size: usize) -> Result<Vec<u8>, String> {
    fits(size)?;
    Ok((0..size).map(|i| i as u8 | 1).collect())
}

/// A lease per message from one region; only the sequence number is written.
impl Message for ZBuf {
    type Source = Region;

    /// The region, with the blocks a run keeps in flight leased, written and returned
    /// once: their pages are faulted in before any timing, as in a long-lived process.
    fn source(size: usize) -> Result<Region, String> {
        fits(size)?;
        let region = Region::anonymous(region_len(size)).map_err(|e| format!("region: {e}"))?;
        let warm =
            (0..IN_FLIGHT as u64).map(|seq| ZBuf::make(&region, size, seq)).collect::<Result<Vec<_>, _>>()?;
        drop(warm);
        Ok(region)
    }
    fn make(region: &Region, size: usize, seq: u64) -> Result<ZBuf, String> {
        let mut buf = region.alloc(size).map_err(|e| format!("lease {seq}: {e}"))?;
        buf[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
        Ok(buf)
    }
    fn check(&self, size: usize, seq: u64) -> Result<(), String> {
        check_seq(self, size, seq)
    }
}

/// A new `Vec` per message, the payload copied into it, then the sequence number.
impl Message for Vec<u8> {
    type Source = Vec<u8>;

    fn source(size: usize) -> Result<Vec<u8>, String> {
        pattern(size)
    }
    fn make(payload: &Vec<u8>, _size: usize, seq: u64) -> Result<Vec<u8>, String> {
        let mut v = payload.as_slice().to_vec();
        v[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
        Ok(v)
    }
    fn check(&self, size: usize, seq: u64) -> Result<(), String> {
        check_seq(self, size, seq)
    }
}

/// One shared payload, cloned (a refcount increment) per message; all clones share their
/// bytes, so only the length is checked.
impl Message for Bytes {
    type Source = Bytes;

    fn source(size: usize) -> Result<Bytes, String> {
        Ok(Bytes::from(pattern(size)?))
    }
    fn make(payload: &Bytes, _size: usize, _seq: u64) -> Result<Bytes, String> {
        Ok(payload.clone())
    }
    fn check(&self, size: usize, seq: u64) -> Result<(), String> {
        match self.len() {
            len if len == size => Ok(()),
            len => Err(format!("message {seq}: {len} bytes (want {size})")),
        }
    }
}

//! Connection buffers.
//!
//! A connection owns buffers only while it needs them: input for a partial request, output
//! while the client is not reading. Both are given back once empty, so an idle connection
//! holds none. The loop's scratch buffers take the common case (a whole request read, its
//! replies written straight to the socket).

use std::io::{self, Read, Write};

/// Bytes received but not yet consumed. The vector's length is the zero-initialised
/// capacity; `start..end` holds the data. Growing zeroes memory once, not per read.
#[derive(Debug, Default)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Smallest read a connection's own buffer offers the socket.
const MIN_READ: usize = 16 * 1024;
/// A request's announced size is trusted for sizing the buffer at once up to here; past
/// it the buffer grows by doubling as the bytes actually arrive, so a client that
/// announces a 512 MB argument and sends nothing costs nothing.
const TRUSTED_WANT: usize = 1024 * 1024;

/// Free bytes to make after `len` bytes of data toward a request of `want` bytes.
fn room_toward(len: usize, want: usize) -> usize {
    let target = if want <= TRUSTED_WANT {
        want
    } else {
        want.min(len.saturating_mul(2).max(TRUSTED_WANT))
    };
    target.saturating_sub(len)
}

impl InBuf {
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Bytes of memory held.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Appends `bytes`, sizing for a request of `want` bytes in all. Only as much memory
    /// as that takes: a connection holding a 20-byte partial request holds about 20 bytes.
    pub fn extend(&mut self, bytes: &[u8], want: usize) {
        self.make_room(bytes.len().max(room_toward(self.len(), want)), 0);
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Drops the first `n` bytes of data; the memory stays (see [`InBuf::release`]).
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives the memory back if no data is left.
    pub fn release(&mut self) {
        if self.is_empty() && !self.buf.is_empty() {
            *self = InBuf::default();
        }
    }

    /// Makes room for at least `more` bytes after `end`, moving data to the front first;
    /// a buffer that grows at least doubles, and is at least `floor` bytes.
    fn make_room(&mut self, more: usize, floor: usize) {
        if self.start > 0 && self.buf.len() - self.end < more {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < more {
            let target = self
                .end
                .saturating_add(more)
                .max(self.buf.len() * 2)
                .max(floor);
            self.buf.resize(target, 0);
        }
    }

    /// One read from `src`, sized toward `want` total bytes if that is known. Returns the
    /// bytes read and whether they filled all the room offered (when they did not, a
    /// stream socket had no more to give).
    pub fn read_from(&mut self, src: &mut impl Read, want: usize) -> io::Result<(usize, bool)> {
        self.make_room(MIN_READ.max(room_toward(self.len(), want)), MIN_READ);
        let room = self.buf.len() - self.end;
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok((n, n == room))
    }
}

/// Bytes to send; `sent` marks how far the socket took them, so a partial write costs no
/// copy.
#[derive(Debug, Default)]
pub struct OutBuf {
    pub buf: Vec<u8>,
    sent: usize,
}

/// Below this, the unsent tail of a scratch buffer is copied into the connection's own
/// buffer; above it the scratch buffer itself is handed over (no copy of a large reply).
const ADOPT_WHOLE: usize = 64 * 1024;

impl OutBuf {
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Takes over what the socket did not take of `scratch` (its first `sent` bytes went
    /// out), leaving `scratch` empty. Only called with nothing pending here.
    pub fn adopt(&mut self, scratch: &mut Vec<u8>, sent: usize) {
        debug_assert_eq!(self.pending(), 0);
        if scratch.len() - sent >= ADOPT_WHOLE {
            self.buf = std::mem::take(scratch);
            self.sent = sent;
        } else {
            self.buf.clear();
            self.buf.extend_from_slice(&scratch[sent..]);
            self.sent = 0;
            scratch.clear();
        }
    }

    /// Writes until done or the socket would block; gives the memory back once all is
    /// sent. Returns bytes written.
    pub fn flush_to(&mut self, dst: &mut impl Write) -> io::Result<usize> {
        let n = write_some(dst, &self.buf[self.sent..])?;
        self.sent += n;
        if self.sent == self.buf.len() {
            *self = OutBuf::default();
        }
        Ok(n)
    }
}

/// Writes as much of `data` as `dst` takes without blocking.
pub fn write_some(dst: &mut impl Write, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match dst.write(&data[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_size_is_trusted_only_so_far() {
        let mut b = InBuf::default();
        b.extend(b"$536870912\r\n", 536_870_926);
        assert!(b.capacity() <= 2 * TRUSTED_WANT, "{}", b.capacity());
        let mut b = InBuf::default();
        b.extend(b"*2\r\n$3\r\nGET\r\n$1\r\nk", 21);
        assert_eq!(b.capacity(), 21, "a partial request costs its own size");
        b.extend(b"\r", 21);
        assert_eq!(b.capacity(), 21);
        b.extend(b"\n*1\r\n", 30);
        assert_eq!(b.capacity(), 42, "growing at least doubles");
        let mut b = InBuf::default();
        b.extend(b"abc", 500_000);
        assert!(b.capacity() >= 500_000);
        let mut src: &[u8] = &[7u8; 100];
        assert_eq!(
            b.read_from(&mut src, 500_000).unwrap(),
            (100, false),
            "a short read"
        );
        assert_eq!(b.len(), 103);
        b.consume(103);
        assert!(b.is_empty());
        b.release();
        assert_eq!(b.capacity(), 0);
    }

    #[test]
    fn small_tail_is_copied_large_tail_is_handed_over() {
        let mut out = OutBuf::default();
        let mut scratch = b"hello world".to_vec();
        out.adopt(&mut scratch, 6);
        assert_eq!(out.buf, b"world");
        assert!(scratch.is_empty());
        let mut sink = Vec::new();
        assert_eq!(out.flush_to(&mut sink).unwrap(), 5);
        assert_eq!(out.buf.capacity(), 0, "memory given back once sent");

        let mut scratch = vec![1u8; 3 * ADOPT_WHOLE];
        out.adopt(&mut scratch, 10);
        assert_eq!(out.pending(), 3 * ADOPT_WHOLE - 10);
        assert_eq!(scratch.capacity(), 0);
    }
}

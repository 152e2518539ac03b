//! Connection buffers.

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
/// A connection's own input buffer larger than this is given back once empty.
const KEEP_INPUT: usize = 64 * 1024;

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

    pub fn extend(&mut self, bytes: &[u8], want: usize) {
        self.make_room(bytes.len().max(want.saturating_sub(self.len())));
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_INPUT {
                self.buf = Vec::new();
            }
        }
    }

    /// Makes room for at least `more` bytes after `end`, moving data to the front first.
    fn make_room(&mut self, more: usize) {
        if self.start > 0 && self.buf.len() - self.end < more {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < more {
            let target = (self.end + more).max(self.buf.len() * 2).max(MIN_READ);
            self.buf.resize(target, 0);
        }
    }

    /// One read from `src`, sized for `want` total bytes if that is known.
    pub fn read_from(&mut self, src: &mut impl Read, want: usize) -> io::Result<usize> {
        self.make_room(MIN_READ.max(want.saturating_sub(self.len())));
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

/// Bytes to send; `sent` marks how far the socket took them, so a partial write costs no
/// copy.
#[derive(Debug, Default)]
pub struct OutBuf {
    pub buf: Vec<u8>,
    sent: usize,
}

/// An output buffer larger than this is given back once drained.
const KEEP_OUTPUT: usize = 16 * 1024;

impl OutBuf {
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Writes until done or the socket would block. Returns bytes written.
    pub fn flush_to(&mut self, dst: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while self.sent < self.buf.len() {
            match dst.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.buf.len() {
            self.sent = 0;
            self.buf.clear();
            if self.buf.capacity() > KEEP_OUTPUT {
                self.buf = Vec::new();
            }
        }
        Ok(total)
    }
}

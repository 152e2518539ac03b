//! Reading the log while it is written: a replication sender's view of the primary's
//! log, from any LSN on, across segment rotations.
//!
//! The reader sees only what the log has handed to write(2) (`Wal::written`), which is
//! always a whole number of records, so it never meets a partial record. When the
//! segment holding the LSN asked for has been deleted (a snapshot covered it), the reader
//! says so ([`ReadError::Gone`]) and the caller falls back to sending the data itself.

use std::sync::Arc;

use dse_engine::Lsn;

use crate::recovery::read_record;
use crate::wal::{SEGMENT_HEADER, SegmentMeta, Wal};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The log no longer reaches back to the LSN wanted; the oldest it holds is `oldest`.
    #[error("the log no longer holds record {wanted} (oldest kept: {oldest})")]
    Gone { wanted: Lsn, oldest: Lsn },
    #[error("reading the log: {0}")]
    Io(#[from] std::io::Error),
    #[error("the log is damaged in {path} at byte {offset}: {detail}")]
    Damaged {
        path: String,
        offset: u64,
        detail: String,
    },
}

/// A record read back: its LSN and its payload (the effects, encoded).
pub type RawRecord = (Lsn, Vec<u8>);

pub struct LogReader {
    wal: Arc<Wal>,
    /// The next LSN to deliver.
    next: Lsn,
    /// The segment being read and the offset of the next unread byte in it.
    at: Option<(SegmentMeta, u64)>,
}

impl LogReader {
    /// A reader that will deliver records from `from` on.
    pub fn new(wal: Arc<Wal>, from: Lsn) -> LogReader {
        LogReader {
            wal,
            next: from.max(1),
            at: None,
        }
    }

    /// The next LSN this reader will deliver.
    pub fn position(&self) -> Lsn {
        self.next
    }

    /// True when every record written so far was delivered.
    pub fn caught_up(&self) -> bool {
        self.next > self.wal.written()
    }

    /// Appends the next records (those written so far, about `max_bytes` of them at most)
    /// to `out`; returns how many.
    pub fn read(&mut self, max_bytes: usize, out: &mut Vec<RawRecord>) -> Result<usize, ReadError> {
        let written = self.wal.written();
        let mut delivered = 0;
        let mut budget = max_bytes.max(1);
        while self.next <= written && budget > 0 {
            let (seg, offset) = match self.at.take() {
                Some(at) => at,
                None => self.locate()?,
            };
            // The open segment grows; read up to its current end.
            let current = self
                .wal
                .segments()
                .into_iter()
                .find(|s| s.first_lsn == seg.first_lsn);
            let Some(current) = current else {
                // Deleted under us: the LSN is gone unless a later segment starts at it.
                self.at = None;
                return match self.locate() {
                    Ok(at) => {
                        self.at = Some(at);
                        Ok(delivered)
                    }
                    Err(e) => Err(e),
                };
            };
            if offset >= current.len {
                // This segment is exhausted: move on if a newer one exists.
                let segs = self.wal.segments();
                match segs.iter().find(|s| s.first_lsn > current.first_lsn) {
                    Some(next) => {
                        self.at = Some((next.clone(), SEGMENT_HEADER as u64));
                        continue;
                    }
                    None => {
                        self.at = Some((current, offset));
                        break;
                    }
                }
            }
            let want = ((current.len - offset) as usize).min(budget.max(64 * 1024));
            let data = self
                .wal
                .file_system()
                .read_range(&current.path, offset, want)?;
            let mut pos = 0;
            while pos < data.len() {
                match read_record(&data, pos) {
                    Ok((lsn, payload, end)) => {
                        if lsn >= self.next {
                            if lsn != self.next {
                                return Err(ReadError::Damaged {
                                    path: current.path.display().to_string(),
                                    offset: offset + pos as u64,
                                    detail: format!("expected record {}, found {lsn}", self.next),
                                });
                            }
                            out.push((lsn, payload.to_vec()));
                            delivered += 1;
                            budget = budget.saturating_sub(end - pos);
                            self.next = lsn + 1;
                        }
                        pos = end;
                        if budget == 0 {
                            break;
                        }
                    }
                    // A record cut by the read size: read it whole next time.
                    Err(_) if want < (current.len - offset) as usize => break,
                    Err(detail) => {
                        return Err(ReadError::Damaged {
                            path: current.path.display().to_string(),
                            offset: offset + pos as u64,
                            detail,
                        });
                    }
                }
            }
            if pos == 0 && !data.is_empty() {
                // One record larger than the read: take it whole.
                let whole = self.wal.file_system().read_range(
                    &current.path,
                    offset,
                    (current.len - offset) as usize,
                )?;
                let (lsn, payload, end) =
                    read_record(&whole, 0).map_err(|detail| ReadError::Damaged {
                        path: current.path.display().to_string(),
                        offset,
                        detail,
                    })?;
                if lsn >= self.next {
                    out.push((lsn, payload.to_vec()));
                    delivered += 1;
                    self.next = lsn + 1;
                }
                self.at = Some((current, offset + end as u64));
                break;
            }
            self.at = Some((current, offset + pos as u64));
        }
        Ok(delivered)
    }

    /// The segment holding `next`, and where to start reading it.
    fn locate(&self) -> Result<(SegmentMeta, u64), ReadError> {
        let segs = self.wal.segments();
        let oldest = segs.first().map_or(self.next, |s| s.first_lsn);
        match segs.iter().rev().find(|s| s.first_lsn <= self.next) {
            Some(s) => Ok((s.clone(), SEGMENT_HEADER as u64)),
            None => Err(ReadError::Gone {
                wanted: self.next,
                oldest,
            }),
        }
    }
}

//! REQ-65 at the byte level. hyper resolves a request with both `Content-Length` and
//! `Transfer-Encoding` the way RFC 9112 allows (chunked wins, the length is dropped, the
//! connection closes afterwards), so by the time the gateway sees the request the
//! ambiguity is gone. This reader watches the raw HTTP/1.1 bytes as hyper reads them,
//! follows message boundaries, and raises a flag when a request head carries both, so
//! the gateway can refuse it with 400 instead of forwarding it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Heads larger than this are hyper's to refuse (431); the watcher stops looking.
const MAX_HEAD: usize = 128 * 1024;

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping a body of known length.
    Body(u64),
    /// Inside a chunked body: reading a size line (collected here).
    ChunkSize(Vec<u8>),
    /// Skipping chunk data plus its CRLF.
    ChunkData(u64),
    /// Reading trailer lines after the last chunk (the current line collected here).
    Trailers(Vec<u8>),
    /// Nothing more to follow: an upgrade, an ambiguous request, or something hyper
    /// will refuse anyway.
    Done,
}

pub struct FramingWatch<T> {
    inner: T,
    state: State,
    ambiguous: Arc<AtomicBool>,
}

impl<T> FramingWatch<T> {
    pub fn new(inner: T) -> (FramingWatch<T>, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (
            FramingWatch {
                inner,
                state: State::Head(Vec::new()),
                ambiguous: flag.clone(),
            },
            flag,
        )
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Done);
            let (next, used) = self.step(state, bytes);
            self.state = next;
            bytes = &bytes[used..];
            if matches!(self.state, State::Done) {
                return;
            }
        }
    }

    /// Consumes a prefix of `bytes`; returns the next state and how much was used.
    fn step(&self, state: State, bytes: &[u8]) -> (State, usize) {
        match state {
            State::Head(mut head) => {
                let before = head.len();
                head.extend_from_slice(bytes);
                let Some(end) = find(&head, b"\r\n\r\n") else {
                    return if head.len() > MAX_HEAD {
                        (State::Done, bytes.len())
                    } else {
                        (State::Head(head), bytes.len())
                    };
                };
                let used = end + 4 - before;
                (self.after_head(&head[..end]), used)
            }
            State::Body(n) => {
                let take = (bytes.len() as u64).min(n);
                let left = n - take;
                (
                    if left == 0 {
                        State::Head(Vec::new())
                    } else {
                        State::Body(left)
                    },
                    take as usize,
                )
            }
            State::ChunkSize(mut line) => match bytes.iter().position(|b| *b == b'\n') {
                None => {
                    line.extend_from_slice(bytes);
                    (
                        if line.len() > 1024 {
                            State::Done
                        } else {
                            State::ChunkSize(line)
                        },
                        bytes.len(),
                    )
                }
                Some(i) => {
                    line.extend_from_slice(&bytes[..i]);
                    let text = String::from_utf8_lossy(&line);
                    let size = text.split(';').next().unwrap_or("").trim();
                    match u64::from_str_radix(size, 16) {
                        Ok(0) => (State::Trailers(Vec::new()), i + 1),
                        Ok(n) => (State::ChunkData(n.saturating_add(2)), i + 1),
                        Err(_) => (State::Done, i + 1),
                    }
                }
            },
            State::ChunkData(n) => {
                let take = (bytes.len() as u64).min(n);
                let left = n - take;
                (
                    if left == 0 {
                        State::ChunkSize(Vec::new())
                    } else {
                        State::ChunkData(left)
                    },
                    take as usize,
                )
            }
            State::Trailers(mut line) => match bytes.iter().position(|b| *b == b'\n') {
                None => {
                    line.extend_from_slice(bytes);
                    (
                        if line.len() > MAX_HEAD {
                            State::Done
                        } else {
                            State::Trailers(line)
                        },
                        bytes.len(),
                    )
                }
                Some(i) => {
                    line.extend_from_slice(&bytes[..i]);
                    let blank = line.iter().all(|b| *b == b'\r');
                    (
                        if blank {
                            State::Head(Vec::new())
                        } else {
                            State::Trailers(Vec::new())
                        },
                        i + 1,
                    )
                }
            },
            State::Done => (State::Done, bytes.len()),
        }
    }

    /// Decides what follows a request head, and flags one with both lengths.
    fn after_head(&self, head: &[u8]) -> State {
        let text = String::from_utf8_lossy(head);
        let (mut lengths, mut te, mut chunked_last, mut upgrade) = (Vec::new(), false, false, false);
        for line in text.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => lengths.push(value.trim().to_owned()),
                "transfer-encoding" => {
                    te = true;
                    chunked_last = value
                        .rsplit(',')
                        .next()
                        .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
                }
                "upgrade" => upgrade = true,
                _ => {}
            }
        }
        if te && !lengths.is_empty() {
            self.ambiguous.store(true, Ordering::SeqCst);
            return State::Done;
        }
        if upgrade || (te && !chunked_last) {
            return State::Done;
        }
        if te {
            return State::ChunkSize(Vec::new());
        }
        match lengths.first().map(|l| l.parse::<u64>()) {
            None => State::Head(Vec::new()),
            Some(Ok(0)) => State::Head(Vec::new()),
            Some(Ok(n)) => State::Body(n),
            Some(Err(_)) => State::Done,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingWatch<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !matches!(self.state, State::Done) && buf.filled().len() > before {
            let new = buf.filled()[before..].to_vec();
            self.feed(&new);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingWatch<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(chunks: &[&[u8]]) -> bool {
        let (mut w, flag) = FramingWatch::new(tokio::io::empty());
        for c in chunks {
            w.feed(c);
        }
        flag.load(Ordering::SeqCst)
    }

    #[test]
    fn req65_both_lengths_are_flagged_in_any_order_and_split() {
        assert!(flags(&[
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        assert!(flags(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n"
        ]));
        assert!(flags(&[
            b"POST / HTTP/1.1\r\nTransfer-Enc",
            b"oding: chunked\r\nContent-Length: 4\r\n",
            b"\r\n"
        ]));
    }

    #[test]
    fn message_boundaries_are_followed_across_bodies() {
        // A chunk whose data looks like a head must not be read as one.
        let body_looks_like_head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            2e\r\nX\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n\r\n0\r\n\r\n";
        assert!(!flags(&[body_looks_like_head]));
        // A sized body, then a second request with both lengths.
        assert!(flags(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        assert!(!flags(&[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
        ]));
    }
}

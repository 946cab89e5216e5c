//! Just enough RFC 6455 for an echo benchmark: the handshake, and single-frame
//! messages (client frames masked, server frames not). Written here rather than
//! pulling a WebSocket library into the gateway's dependencies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::client;
use crate::{Result, bail};

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message this code reads; the benchmark sends a few dozen bytes.
const MAX_PAYLOAD: u64 = 1 << 20;

pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Frame> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => u64::from(s.read_u16().await?),
        127 => s.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_PAYLOAD {
        return Err(std::io::Error::other("WebSocket frame too large for the bench"));
    }
    let mut mask = [0u8; 4];
    if masked {
        s.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(Frame { opcode, payload })
}

/// One final frame; masked when a mask is given (client to server).
pub async fn write_frame<S: AsyncWrite + Unpin>(
    s: &mut S,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    s.write_all(&out).await?;
    s.flush().await
}

/// A WebSocket client over TLS.
pub struct Client {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    seed: u64,
}

impl Client {
    /// Opens a connection and upgrades `/ws` on it, sending the session cookie and the
    /// page origin a browser would send.
    pub async fn connect(addr: SocketAddr, tls: &TlsConnector, cookie: Option<&str>) -> Result<Client> {
        let mut stream = client::tls_stream(addr, tls).await?;
        let mut seed = seed();
        let key_bytes: Vec<u8> = (0..16).map(|_| next(&mut seed) as u8).collect();
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let authority = addr.to_string();
        let cookie_line = cookie
            .map(|c| format!("Cookie: {}={c}\r\n", client::SESSION_COOKIE))
            .unwrap_or_default();
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: https://{authority}\r\n{cookie_line}\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
        // The answer's head, byte by byte: nothing follows it until we send.
        let mut answer = Vec::with_capacity(256);
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() > 16 * 1024 {
                bail!("WebSocket handshake answer too long");
            }
            answer.push(stream.read_u8().await?);
        }
        let text = String::from_utf8_lossy(&answer);
        if !text.starts_with("HTTP/1.1 101") {
            bail!(
                "WebSocket handshake refused: {}",
                text.lines().next().unwrap_or_default()
            );
        }
        let expected = accept_key(key.as_bytes());
        let accepted = text.lines().any(|l| {
            l.split_once(':')
                .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == expected)
        });
        if !accepted {
            bail!("WebSocket handshake without the right Sec-WebSocket-Accept");
        }
        Ok(Client { stream, seed })
    }

    /// Sends `payload` and waits for the same bytes back; returns the round-trip time.
    pub async fn echo(&mut self, payload: &[u8]) -> Result<Duration> {
        let mask = (next(&mut self.seed) as u32).to_be_bytes();
        let started = Instant::now();
        write_frame(&mut self.stream, BINARY, payload, Some(mask)).await?;
        loop {
            let frame = read_frame(&mut self.stream).await?;
            match frame.opcode {
                BINARY if frame.payload == payload => return Ok(started.elapsed()),
                BINARY | TEXT => bail!("the WebSocket echo sent back other bytes"),
                CLOSE => bail!("the WebSocket was closed during the echo"),
                _ => {}
            }
        }
    }

    pub async fn close(mut self) {
        let mask = (next(&mut self.seed) as u32).to_be_bytes();
        let _ = write_frame(&mut self.stream, CLOSE, &1000u16.to_be_bytes(), Some(mask)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), read_frame(&mut self.stream)).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Masks and keys need no cryptographic quality here.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (t ^ 0x9E37_79B9_7F4A_7C15) | 1
}

pub fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §1.3's example.
    #[test]
    fn accept_key_matches_the_rfc() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[tokio::test]
    async fn frames_round_trip_masked_and_not() {
        for len in [0usize, 5, 125, 126, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut buf = Vec::new();
                write_frame(&mut buf, BINARY, &payload, mask).await.unwrap();
                let f = read_frame(&mut buf.as_slice()).await.unwrap();
                assert_eq!((f.opcode, f.payload.as_slice()), (BINARY, payload.as_slice()));
            }
        }
    }
}

//! Length-prefixed IPC framing over async byte streams, and this crate's IPC extensions.
//!
//! Every message is `u32 big-endian length ‖ body`. Unlike v0.5, a body longer than
//! [`MAX_BODY`] does not end the session: the reader skips exactly that many bytes and reports
//! [`Frame::Oversized`], so the server answers that one request with an error.
//!
//! Extensions (never sent unless a client sends them first, so v0.5 clients never see them):
//! - [`TAGGED`] `0x80 ‖ u32 tag ‖ inner body`: the reply (or error) to a tagged request is sent
//!   tagged with the same tag, so replies may arrive out of order and errors always reach the
//!   request that caused them. Tagged `Send` requests get an empty `SendOk` reply
//!   ([`SEND_OK`]) once the node has accepted the data, which gives clients back-pressure.
//! - [`SHUTDOWN`] asks the daemon to exit; the reply is [`SHUTDOWN_OK`] with `{"pid": n}`.
//! - `0x84 ‖ JSON` / `0x85 ‖ JSON`: webhook host requests (`webhook::host::ipc`).
//! - [`EXTENSION`] `0x90 ‖ JSON {"op": ..}` asks for one of this daemon's own operations
//!   (networks); the reply is [`EXTENSION_OK`] `0x91 ‖ JSON`, or an IPC `Error`.

#[cfg(feature = "client-tokio")]
use std::io;

#[cfg(feature = "client-tokio")]
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

pub use crate::shim::ipc::MAX_BODY;

/// Extension: a tagged request or reply.
pub const TAGGED: u8 = 0x80;
/// Extension: ask the daemon to shut down.
pub const SHUTDOWN: u8 = 0x81;
/// Extension: reply to [`SHUTDOWN`], JSON `{"pid": n}`.
pub const SHUTDOWN_OK: u8 = 0x82;
/// Extension: success reply to a tagged `Send` (no payload).
pub const SEND_OK: u8 = 0x83;
/// Extension: a JSON request `{"op": ..}` for an operation v0.5 has no command for.
pub const EXTENSION: u8 = 0x90;
/// Extension: the JSON reply to [`EXTENSION`].
pub const EXTENSION_OK: u8 = 0x91;

/// One frame read from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A body within limits.
    Body(Vec<u8>),
    /// A body whose declared length exceeded the limit; its bytes were skipped.
    Oversized(usize),
}

/// Reads one frame (tokio streams). `Ok(None)` at a clean end of stream between frames.
#[cfg(feature = "client-tokio")]
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_BODY {
        let skipped = tokio::io::copy(&mut reader.take(len as u64), &mut tokio::io::sink()).await?;
        if (skipped as usize) < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(Some(Frame::Oversized(len)));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(Frame::Body(body)))
}

/// Prefixes `body` with its length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Writes one framed body (tokio streams).
#[cfg(feature = "client-tokio")]
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, body: &[u8]) -> io::Result<()> {
    writer.write_all(&frame(body)).await
}

/// Splits a tagged body into its tag and inner body; untagged bodies pass through.
pub fn split_tag(body: &[u8]) -> (Option<u32>, &[u8]) {
    match body {
        [TAGGED, a, b, c, d, inner @ ..] => (Some(u32::from_be_bytes([*a, *b, *c, *d])), inner),
        _ => (None, body),
    }
}

/// Wraps `inner` in a tag when there is one.
pub fn with_tag(tag: Option<u32>, inner: Vec<u8>) -> Vec<u8> {
    match tag {
        None => inner,
        Some(tag) => {
            let mut out = Vec::with_capacity(inner.len() + 5);
            out.push(TAGGED);
            out.extend_from_slice(&tag.to_be_bytes());
            out.extend_from_slice(&inner);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "daemon")]
    #[tokio::test]
    async fn oversized_frame_is_skipped_and_the_next_one_read() {
        let mut bytes = ((MAX_BODY + 10) as u32).to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(0xa5, MAX_BODY + 10));
        bytes.extend(frame(&[0x0d]));
        let mut reader = &bytes[..];
        assert_eq!(
            read_frame(&mut reader).await.expect("io"),
            Some(Frame::Oversized(MAX_BODY + 10))
        );
        assert_eq!(
            read_frame(&mut reader).await.expect("io"),
            Some(Frame::Body(vec![0x0d]))
        );
        assert_eq!(read_frame(&mut reader).await.expect("io"), None);
    }

    #[test]
    fn tags_round_trip() {
        let body = with_tag(Some(7), vec![0x0d]);
        assert_eq!(split_tag(&body), (Some(7), &[0x0d][..]));
        assert_eq!(split_tag(&[0x0d]), (None, &[0x0d][..]));
    }
}

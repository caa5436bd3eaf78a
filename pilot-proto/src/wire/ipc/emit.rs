//! Writing an [`IpcMessage`] back to bytes.

use super::{Command, HandshakeCmd, IpcMessage, LEN_PREFIX, MAX_BODY_LEN, field};
use crate::wire::EmitError;

/// The fixed-size front of a payload, built on the stack for [`IpcMessage::emit`].
#[derive(Default)]
struct Head {
    bytes: [u8; 16],
    len: usize,
}

impl Head {
    /// Appends `b`. Every caller appends at most 14 bytes in total (Accept), within the 16.
    fn put(mut self, b: &[u8]) -> Self {
        self.bytes[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        self
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<'a> HandshakeCmd<'a> {
    fn split(self) -> (Head, &'a [u8]) {
        let head = Head::default().put(&[self.sub()]);
        match self {
            Self::Request {
                node,
                justification: text,
            }
            | Self::Reject { node, reason: text } => (head.put(&node.to_be_bytes()), text),
            Self::Approve { node } | Self::Revoke { node } => (head.put(&node.to_be_bytes()), &[]),
            Self::Pending | Self::Trusted => (head, &[]),
            Self::Unknown { args, .. } => (head, args),
        }
    }
}

impl<'a> IpcMessage<'a> {
    /// The command byte of this message.
    pub fn command(&self) -> Command {
        match self {
            Self::Bind { .. } => Command::Bind,
            Self::BindOk { .. } => Command::BindOK,
            Self::Dial { .. } => Command::Dial,
            Self::DialOk { .. } => Command::DialOK,
            Self::Accept { .. } => Command::Accept,
            Self::Send { .. } => Command::Send,
            Self::Recv { .. } => Command::Recv,
            Self::Close { .. } => Command::Close,
            Self::CloseOk { .. } => Command::CloseOK,
            Self::Error { .. } => Command::Error,
            Self::SendTo { .. } => Command::SendTo,
            Self::RecvFrom { .. } => Command::RecvFrom,
            Self::Info => Command::Info,
            Self::InfoOk { .. } => Command::InfoOK,
            Self::Handshake(_) => Command::Handshake,
            Self::HandshakeOk { .. } => Command::HandshakeOK,
            Self::ResolveHostname { .. } => Command::ResolveHostname,
            Self::ResolveHostnameOk { .. } => Command::ResolveHostnameOK,
            Self::SetHostname { .. } => Command::SetHostname,
            Self::SetHostnameOk { .. } => Command::SetHostnameOK,
            Self::SetVisibility { .. } => Command::SetVisibility,
            Self::SetVisibilityOk { .. } => Command::SetVisibilityOK,
            Self::Deregister => Command::Deregister,
            Self::DeregisterOk { .. } => Command::DeregisterOK,
            Self::SetTags { .. } => Command::SetTags,
            Self::SetTagsOk { .. } => Command::SetTagsOK,
            Self::SetWebhook { .. } => Command::SetWebhook,
            Self::SetWebhookOk { .. } => Command::SetWebhookOK,
            Self::SetTaskExec { .. } => Command::SetTaskExec,
            Self::SetTaskExecOk { .. } => Command::SetTaskExecOK,
            Self::Unknown { cmd, .. } => Command::Unknown(*cmd),
        }
    }

    /// The payload as a fixed head and a borrowed tail.
    fn split(&self) -> (Head, &'a [u8]) {
        let h = Head::default();
        match *self {
            Self::Bind { port } | Self::BindOk { port } => (h.put(&port.to_be_bytes()), &[]),
            Self::Dial { dst } => (h.put(&dst.to_bytes()), &[]),
            Self::DialOk { conn_id } | Self::Close { conn_id } | Self::CloseOk { conn_id } => {
                (h.put(&conn_id.to_be_bytes()), &[])
            }
            Self::Accept {
                local_port,
                conn_id,
                remote,
            } => {
                let h = h.put(&local_port.to_be_bytes()).put(&conn_id.to_be_bytes());
                (h.put(&remote.to_bytes()), &[])
            }
            Self::Send { conn_id, data } | Self::Recv { conn_id, data } => {
                (h.put(&conn_id.to_be_bytes()), data)
            }
            Self::Error { code, message } => (h.put(&code.to_be_bytes()), message),
            Self::SendTo { dst, data } => (h.put(&dst.to_bytes()), data),
            Self::RecvFrom {
                src,
                dst_port,
                data,
            } => (h.put(&src.to_bytes()).put(&dst_port.to_be_bytes()), data),
            Self::Handshake(cmd) => cmd.split(),
            Self::SetVisibility { value } | Self::SetTaskExec { value } => (h.put(&[value]), &[]),
            Self::Info | Self::Deregister => (h, &[]),
            Self::InfoOk { json }
            | Self::HandshakeOk { json }
            | Self::ResolveHostnameOk { json }
            | Self::SetHostnameOk { json }
            | Self::SetVisibilityOk { json }
            | Self::DeregisterOk { json }
            | Self::SetTags { json }
            | Self::SetTagsOk { json }
            | Self::SetWebhookOk { json }
            | Self::SetTaskExecOk { json } => (h, json),
            Self::ResolveHostname { hostname } | Self::SetHostname { hostname } => (h, hostname),
            Self::SetWebhook { url } => (h, url),
            Self::Unknown { payload, .. } => (h, payload),
        }
    }

    /// Body bytes: the command byte plus the payload.
    pub fn body_len(&self) -> usize {
        let (head, tail) = self.split();
        1 + head.len + tail.len()
    }

    /// Bytes [`emit`](Self::emit) writes: prefix plus body.
    pub fn buffer_len(&self) -> usize {
        LEN_PREFIX + self.body_len()
    }

    /// Writes the whole frame (length prefix included) into the front of `buf`; returns the
    /// bytes written.
    ///
    /// # Errors
    ///
    /// [`EmitError::OutOfRange`] for a body above 1 MiB, [`EmitError::Inconsistent`] for an
    /// `Unknown` command byte that names a catalogued command, [`EmitError::BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        self.check()?;
        let len = self.buffer_len();
        EmitError::check_len(buf, len)?;

        let (head, tail) = self.split();
        // check() bounded the body to 1 MiB.
        buf[field::LENGTH].copy_from_slice(&(self.body_len() as u32).to_be_bytes());
        buf[field::COMMAND] = self.command().into();
        let tail_at = field::PAYLOAD.start + head.len;
        buf[field::PAYLOAD.start..tail_at].copy_from_slice(head.as_slice());
        buf[tail_at..len].copy_from_slice(tail);
        Ok(len)
    }

    fn check(&self) -> Result<(), EmitError> {
        let body = self.body_len();
        if body > MAX_BODY_LEN {
            return Err(EmitError::OutOfRange {
                field: "ipc body",
                value: body,
                max: MAX_BODY_LEN,
            });
        }
        let known = |b: u8| !matches!(Command::from(b), Command::Unknown(_));
        let reason = match self {
            Self::Unknown { cmd, .. } if known(*cmd) => "Unknown with a catalogued command byte",
            Self::Handshake(HandshakeCmd::Unknown { sub: 1..=6, .. }) => {
                "handshake Unknown with a catalogued sub-command"
            }
            _ => return Ok(()),
        };
        Err(EmitError::Inconsistent { reason })
    }
}

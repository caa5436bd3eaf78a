//! The IPC command byte and the trust-handshake sub-commands.

macro_rules! commands {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// The command byte.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Command {
            $($(#[$doc])* $name,)*
            /// Any other value.
            Unknown(u8),
        }

        impl From<u8> for Command {
            fn from(v: u8) -> Self {
                match v {
                    $($code => Self::$name,)*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<Command> for u8 {
            fn from(c: Command) -> Self {
                match c {
                    $(Command::$name => $code,)*
                    Command::Unknown(other) => other,
                }
            }
        }

        impl Command {
            /// The v0.5 name (`Bind`, `DialOK`, ...); `unknown` for other values.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                    Self::Unknown(_) => "unknown",
                }
            }
        }
    };
}

commands! {
    /// Driver asks to bind a port.
    Bind = 0x01,
    /// Port bound.
    BindOK = 0x02,
    /// Driver asks to open a stream.
    Dial = 0x03,
    /// Stream open.
    DialOK = 0x04,
    /// A remote stream was accepted on a bound port.
    Accept = 0x05,
    /// Driver sends stream data.
    Send = 0x06,
    /// Stream data arrived.
    Recv = 0x07,
    /// Driver closes a stream.
    Close = 0x08,
    /// Stream closed (reply, or unsolicited when the receive side ends).
    CloseOK = 0x09,
    /// A request failed.
    Error = 0x0A,
    /// Driver sends a datagram.
    SendTo = 0x0B,
    /// A datagram arrived.
    RecvFrom = 0x0C,
    /// Driver asks for daemon status.
    Info = 0x0D,
    /// Daemon status (JSON).
    InfoOK = 0x0E,
    /// Trust handshake sub-command.
    Handshake = 0x0F,
    /// Trust handshake result (JSON).
    HandshakeOK = 0x10,
    /// Driver resolves a hostname.
    ResolveHostname = 0x11,
    /// Resolution result (JSON).
    ResolveHostnameOK = 0x12,
    /// Driver sets the node's hostname.
    SetHostname = 0x13,
    /// Hostname set (JSON).
    SetHostnameOK = 0x14,
    /// Driver sets public/private visibility.
    SetVisibility = 0x15,
    /// Visibility set (JSON).
    SetVisibilityOK = 0x16,
    /// Driver deregisters the node.
    Deregister = 0x17,
    /// Deregistered (JSON).
    DeregisterOK = 0x18,
    /// Driver sets tags (JSON array).
    SetTags = 0x19,
    /// Tags set (JSON).
    SetTagsOK = 0x1A,
    /// Driver sets the webhook URL.
    SetWebhook = 0x1B,
    /// Webhook set (JSON).
    SetWebhookOK = 0x1C,
    /// Driver enables or disables task execution.
    SetTaskExec = 0x1D,
    /// Task execution set (JSON).
    SetTaskExecOK = 0x1E,
}

/// The trust-handshake sub-commands carried by [`IpcMessage::Handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeCmd<'a> {
    /// 0x01: ask `node` to trust us.
    Request {
        /// Target node ID.
        node: u32,
        /// Free text shown to the other side.
        justification: &'a [u8],
    },
    /// 0x02: approve a pending request from `node`.
    Approve {
        /// Requesting node ID.
        node: u32,
    },
    /// 0x03: reject a pending request from `node`.
    Reject {
        /// Requesting node ID.
        node: u32,
        /// Free text.
        reason: &'a [u8],
    },
    /// 0x04: list pending requests.
    Pending,
    /// 0x05: list trusted nodes.
    Trusted,
    /// 0x06: revoke trust in `node`.
    Revoke {
        /// Node ID.
        node: u32,
    },
    /// Any other sub-command byte, with its arguments.
    Unknown {
        /// The sub-command byte.
        sub: u8,
        /// Its arguments.
        args: &'a [u8],
    },
}

impl HandshakeCmd<'_> {
    /// The sub-command byte.
    pub fn sub(&self) -> u8 {
        match self {
            Self::Request { .. } => 1,
            Self::Approve { .. } => 2,
            Self::Reject { .. } => 3,
            Self::Pending => 4,
            Self::Trusted => 5,
            Self::Revoke { .. } => 6,
            Self::Unknown { sub, .. } => *sub,
        }
    }

    /// The v0.5 `pilotctl` name of the sub-command.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Request { .. } => "send",
            Self::Approve { .. } => "approve",
            Self::Reject { .. } => "reject",
            Self::Pending => "pending",
            Self::Trusted => "trusted",
            Self::Revoke { .. } => "revoke",
            Self::Unknown { .. } => "unknown",
        }
    }
}

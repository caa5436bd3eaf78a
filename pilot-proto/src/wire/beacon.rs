//! Beacon messages 0x01-0x07 that share the tunnel socket.

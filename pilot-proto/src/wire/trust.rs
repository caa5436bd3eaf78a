//! The trust-handshake message (port 444).

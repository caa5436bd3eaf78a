//! Registry client and server state machines over a reliable byte stream.

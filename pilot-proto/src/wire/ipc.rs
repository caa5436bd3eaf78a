//! The v0.5 daemon IPC framing and commands.

//! Event-stream frames (port 1002).

//! Deterministic network simulator for pilot-proto nodes.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

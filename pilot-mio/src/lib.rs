//! Blocking mio driver for embedding a pilot-proto node.

#![deny(unsafe_code)]

//! Tokio driver for pilot-proto: daemon, pilotctl, rendezvous, async client.

#![deny(unsafe_code)]
pub mod webhook;

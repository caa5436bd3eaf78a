//! SACK blocks carried in ACK payloads.

//! The 34-byte packet header with its CRC-32 checksum.

//! Virtual addresses and socket addresses: binary and text forms, ports.

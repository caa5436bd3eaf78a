//! Beacon client and server state machines (discovery, punch coordination, relay).

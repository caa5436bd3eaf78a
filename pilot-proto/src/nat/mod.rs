//! NAT traversal decisions: direct, punched or relayed paths, and when to switch.

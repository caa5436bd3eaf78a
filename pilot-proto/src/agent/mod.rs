//! The agent: a whole node brain (registry client, beacon client, NAT traversal, trust and the
//! data-plane node) behind one sans-IO interface that every driver runs unchanged.

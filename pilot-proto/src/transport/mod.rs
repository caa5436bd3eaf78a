//! The reliable stream transport, datagrams and virtual ports.

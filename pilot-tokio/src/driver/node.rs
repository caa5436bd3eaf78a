//! The seam between the driver and the node: everything the driver uses from the node type.
//!
//! Until `pilot_proto::node` is merged this re-exports the loopback stand-in; afterwards it
//! becomes `pub(crate) use pilot_proto::node::{...}` and nothing else in the driver changes.

pub(crate) use super::standin::{CloseReason, Node, NodeConfig, NodeEvent, RequestId, StreamId};

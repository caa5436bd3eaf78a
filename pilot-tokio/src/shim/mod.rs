//! Local protocol glue: the owned IPC message enum (decoded through `pilot_proto::wire::ipc`,
//! encoded to the same layout) and address re-exports from `pilot_proto::wire::addr`.

pub mod addr;
pub mod extension;
pub mod ipc;

//! Virtual addresses: re-exported from `pilot_proto::wire::addr`.

pub use pilot_proto::wire::addr::{Addr, AddrParseError, AddrPort};

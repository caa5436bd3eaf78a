//! Every Pilot Protocol v0.5 wire format, as zero-copy views and parse/emit representations.
//!
//! Views (`new_checked` + accessors) never panic on any input once constructed; `Repr`s
//! validate semantics in `parse` and write bytes in `emit`. No policy lives here.

pub mod addr;
pub mod beacon;
pub mod dataexchange;
pub mod event;
pub mod ipc;
pub mod packet;
pub mod registry;
pub mod sack;
pub mod trust;
pub mod tunnel;

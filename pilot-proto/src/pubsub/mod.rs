//! The event stream: topic grammar, subscription index and the broker state machine.

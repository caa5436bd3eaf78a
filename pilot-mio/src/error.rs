//! The crate's public error type.

use std::path::PathBuf;

use pilot_proto::agent::AgentError;
use pilot_proto::transport::CloseReason;

/// Why a [`crate::MioNode`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MioError {
    /// A socket or poll operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The identity file could not be read, parsed or written.
    #[error("identity file {path}: {reason}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("could not get randomness from the operating system")]
    Random,
    /// The node core refused the command.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A topic or topic filter is malformed.
    #[error("invalid topic: {0}")]
    Topic(String),
    /// The deadline passed before the operation completed.
    #[error("timed out")]
    TimedOut,
    /// The node was stopped through its [`crate::StopHandle`].
    #[error("node stopped")]
    Stopped,
    /// The registry has not assigned an address yet.
    #[error("not registered yet")]
    NotRegistered,
    /// A stream dial failed.
    #[error("dial failed: {0}")]
    Dial(AgentError),
    /// The stream closed before it was established or while it was used.
    #[error("stream closed: {0:?}")]
    StreamClosed(CloseReason),
    /// The event broker connection broke or sent undecodable bytes.
    #[error("event stream broken: {0}")]
    Broker(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, MioError>;

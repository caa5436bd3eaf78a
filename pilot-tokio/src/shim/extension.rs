//! The JSON requests carried by the IPC extension message (`framing::EXTENSION`): operations
//! this daemon offers that v0.5's IPC has no command for. Today: networks at the registry.
//!
//! Tokens travel in the request because the registry wants them with every network change
//! (v0.5's design); the daemon passes them on and never logs or stores them.

use serde::{Deserialize, Serialize};

/// One extension request, tagged by its `op` field.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Extension {
    /// Create a network; the creator becomes its first member.
    NetworkCreate {
        /// Network name (hostname rules).
        name: String,
        /// `open`, `token` or `invite`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        join_rule: Option<String>,
        /// Join token for the `token` rule.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The registry's admin token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin_token: Option<String>,
    },
    /// Join a network.
    NetworkJoin {
        /// The network id.
        network_id: u16,
        /// Inviting member (`invite` rule).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inviter_id: Option<u32>,
        /// Join token (`token` rule).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The registry's admin token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin_token: Option<String>,
    },
    /// Leave a network.
    NetworkLeave {
        /// The network id.
        network_id: u16,
        /// The registry's admin token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin_token: Option<String>,
    },
    /// List the registry's networks.
    NetworkList,
}

impl core::fmt::Debug for Extension {
    /// Names the operation only: requests carry secrets.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let op = match self {
            Extension::NetworkCreate { .. } => "network_create",
            Extension::NetworkJoin { .. } => "network_join",
            Extension::NetworkLeave { .. } => "network_leave",
            Extension::NetworkList => "network_list",
        };
        write!(f, "Extension({op})")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = serde_json::from_slice::<Extension>(&bytes);
        }

        #[test]
        fn joins_round_trip(network_id: u16, inviter_id: Option<u32>, token: Option<String>) {
            let join = Extension::NetworkJoin { network_id, inviter_id, token, admin_token: None };
            let text = serde_json::to_vec(&join).expect("encode");
            prop_assert_eq!(serde_json::from_slice::<Extension>(&text).expect("decode"), join);
        }
    }

    #[test]
    fn requests_round_trip_and_unknown_ops_are_refused() {
        let join = Extension::NetworkJoin {
            network_id: 3,
            inviter_id: None,
            token: Some("t".into()),
            admin_token: None,
        };
        let text = serde_json::to_string(&join).expect("encode");
        assert_eq!(text, r#"{"op":"network_join","network_id":3,"token":"t"}"#);
        assert_eq!(
            serde_json::from_str::<Extension>(&text).expect("decode"),
            join
        );
        assert!(serde_json::from_str::<Extension>(r#"{"op":"format_disk"}"#).is_err());
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let create = Extension::NetworkCreate {
            name: "lab".into(),
            join_rule: None,
            token: Some("secret-join".into()),
            admin_token: Some("secret-admin".into()),
        };
        assert!(!format!("{create:?}").contains("secret"));
    }
}

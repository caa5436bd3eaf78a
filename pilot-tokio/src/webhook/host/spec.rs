//! From the stored specs to the library's configs: secrets parsed, the verifier and topic rule
//! chosen, defaults applied. Every error is a short text for the `pilotctl` user.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderName;

use super::store::{InboundSpec, OutboundSpec, Provider};
use crate::webhook::inbound::parse_listen_url;
use crate::webhook::verify::Secret;
use crate::webhook::{InboundConfig, OutboundConfig, Route, TopicRule, Verifier};

/// The receiver config for `spec`, with `remembered` delivery ids.
pub(super) fn inbound_config(
    spec: &InboundSpec,
    remembered: Vec<(String, String)>,
) -> Result<InboundConfig, String> {
    let (listen, path) = parse_listen_url(&spec.url).map_err(|e| e.to_string())?;
    let mut route = Route::new(&path, verifier(spec)?);
    if let Some(prefix) = &spec.topic {
        route.topic_prefix.clone_from(prefix);
    }
    if let Some(name) = &spec.topic_header {
        let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("bad header name {name:?}"))?;
        route.topic = TopicRule::Header(name);
    }

    let mut config = InboundConfig::new(listen, vec![route]);
    config.allow_non_loopback = spec.allow_non_loopback;
    config.remembered = remembered;
    Ok(config)
}

fn verifier(spec: &InboundSpec) -> Result<Verifier, String> {
    let parse = |text: &String| match spec.provider {
        Provider::Standard => Secret::from_standard(text),
        _ => Secret::from_bytes(text.as_bytes()),
    };
    let secrets = spec
        .secrets
        .iter()
        .map(parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad secret: {e}"))?;
    let needs_secret = spec.provider != Provider::Unsigned;
    if needs_secret && secrets.is_empty() {
        return Err("a signed scheme needs at least one --secret".into());
    }
    Ok(match spec.provider {
        Provider::Standard => Verifier::StandardWebhooks(secrets),
        Provider::Stripe => Verifier::Stripe(secrets),
        Provider::Github => Verifier::GitHub(secrets),
        Provider::Unsigned => Verifier::Unsigned,
    })
}

/// The sender config for `spec`, queueing in `queue_dir`.
pub(super) fn outbound_config(
    spec: &OutboundSpec,
    queue_dir: PathBuf,
) -> Result<OutboundConfig, String> {
    let url = spec.url.as_str();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("the outbound url must start with http:// or https://".into());
    }
    let secret = Secret::from_standard(&spec.secret)
        .map_err(|e| format!("bad outbound secret (use whsec_...): {e}"))?;

    let mut config = OutboundConfig::new(url, secret, queue_dir);
    if let Some(ms) = spec.retry_initial_ms {
        config.initial_backoff = Duration::from_millis(ms.max(1));
    }
    if let Some(attempts) = spec.max_attempts {
        config.max_attempts = attempts.max(1);
    }
    Ok(config)
}

/// Refuses an outbound target that is this node's own receiver: every event delivered there
/// would be published again, and delivered again, without end.
// Limitation: only the exact address is compared; a host name or another address of this
// machine that reaches the receiver is not recognised.
pub(super) fn refuse_loop(inbound: &InboundSpec, outbound: &OutboundSpec) -> Result<(), String> {
    let receiver = parse_listen_url(&inbound.url).map(|(addr, _)| addr);
    let target = parse_listen_url(&outbound.url).map(|(addr, _)| addr);
    match (receiver, target) {
        (Ok(a), Ok(b)) if a == b => Err(format!(
            "the outbound target {} is this node's own webhook receiver; events would loop",
            outbound.url
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(provider: Provider, secrets: &[&str]) -> InboundSpec {
        InboundSpec {
            url: "http://127.0.0.1:0/hooks".into(),
            provider,
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            topic: None,
            topic_header: None,
            allow_non_loopback: false,
        }
    }

    #[test]
    fn inbound_specs_need_valid_secrets_for_signed_schemes() {
        let good = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert!(inbound_config(&spec(Provider::Standard, &[good]), Vec::new()).is_ok());
        assert!(inbound_config(&spec(Provider::Standard, &["not base64!"]), Vec::new()).is_err());
        assert!(inbound_config(&spec(Provider::Github, &[]), Vec::new()).is_err());
        assert!(inbound_config(&spec(Provider::Github, &["gh"]), Vec::new()).is_ok());
        assert!(inbound_config(&spec(Provider::Unsigned, &[]), Vec::new()).is_ok());

        let mut by_header = spec(Provider::Stripe, &["s"]);
        by_header.topic = Some("pay".into());
        by_header.topic_header = Some("X-Event".into());
        let config = inbound_config(&by_header, Vec::new()).unwrap();
        assert_eq!(config.routes[0].topic_prefix, "pay");
        assert!(matches!(config.routes[0].topic, TopicRule::Header(ref h) if h == "x-event"));
        by_header.topic_header = Some("bad header".into());
        assert!(inbound_config(&by_header, Vec::new()).is_err());
    }

    #[test]
    fn an_outbound_target_on_the_receivers_own_address_is_refused() {
        let inbound = spec(Provider::Unsigned, &[]);
        let mut outbound = OutboundSpec {
            url: "http://localhost:0/elsewhere".into(),
            secret: String::new(),
            retry_initial_ms: None,
            max_attempts: None,
        };
        assert!(refuse_loop(&inbound, &outbound).is_err());
        outbound.url = "http://127.0.0.1:8080/hooks".into();
        assert!(refuse_loop(&inbound, &outbound).is_ok());
        outbound.url = "https://127.0.0.1:0/hooks".into();
        assert!(
            refuse_loop(&inbound, &outbound).is_ok(),
            "TLS is not our receiver"
        );
    }

    #[test]
    fn outbound_specs_check_url_and_secret() {
        let mut spec = OutboundSpec {
            url: "http://127.0.0.1:9/in".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            retry_initial_ms: Some(20),
            max_attempts: Some(3),
        };
        let config = outbound_config(&spec, PathBuf::from("/nonexistent")).unwrap();
        assert_eq!(config.initial_backoff, Duration::from_millis(20));
        assert_eq!(config.max_attempts, 3);
        spec.url = "ftp://x".into();
        assert!(outbound_config(&spec, PathBuf::new()).is_err());
        spec.url = "http://127.0.0.1:9/in".into();
        spec.secret = String::new();
        assert!(outbound_config(&spec, PathBuf::new()).is_err());
    }
}

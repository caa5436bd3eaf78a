//! Inbound routes: how a request path picks a source, how the topic is derived, and how a
//! `set-webhook` URL becomes a bind address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::http::{HeaderMap, HeaderName, Uri};

use super::ConfigError;
use crate::webhook::verify::Secret;

/// Most topic tokens (dot-separated parts) a derived topic may have.
const MAX_TOPIC_TOKENS: usize = 16;
/// Longest derived topic in bytes.
const MAX_TOPIC_LEN: usize = 255;

/// How requests on a route are authenticated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Verifier {
    /// Standard Webhooks `v1` signatures; any of the secrets may match (rotation).
    StandardWebhooks(Vec<Secret>),
    /// Stripe `Stripe-Signature`; any of the secrets may match.
    Stripe(Vec<Secret>),
    /// GitHub `X-Hub-Signature-256`; any of the secrets may match.
    GitHub(Vec<Secret>),
    /// No signature. Refused unless the receiver is bound to a loopback address. A
    /// `webhook-id` header, if present, is still used for dedupe.
    Unsigned,
}

impl Verifier {
    fn secrets(&self) -> Option<&[Secret]> {
        match self {
            Self::StandardWebhooks(s) | Self::Stripe(s) | Self::GitHub(s) => Some(s),
            Self::Unsigned => None,
        }
    }
}

/// Where the topic of an accepted request comes from. The route's `topic_prefix` is always the
/// first part.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TopicRule {
    /// Path segments below the route path become topic tokens:
    /// route `/events`, request `/events/payments/stripe` → `<prefix>.payments.stripe`.
    Path,
    /// The value of a header is appended (for example `x-github-event: push` →
    /// `<prefix>.push`); a request without it is malformed.
    Header(HeaderName),
}

/// One source of webhooks: a path, its verifier and its topic rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name of the source; used in dedupe keys, events and logs.
    pub name: String,
    /// Path prefix, starting with `/` (`/` matches every path).
    pub path: String,
    /// How requests are authenticated.
    pub verifier: Verifier,
    /// First topic token(s), dot-separated.
    pub topic_prefix: String,
    /// How the rest of the topic is derived.
    pub topic: TopicRule,
}

impl Route {
    /// A route on `path` whose name and topic prefix come from the path (`/events/in` →
    /// `events.in`; `/` → `webhook`) and whose topic follows sub-paths.
    pub fn new(path: &str, verifier: Verifier) -> Self {
        let tokens: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let prefix = if tokens.is_empty() {
            "webhook".to_owned()
        } else {
            tokens.join(".")
        };
        Self {
            name: prefix.clone(),
            path: normalise_path(path),
            verifier,
            topic_prefix: prefix,
            topic: TopicRule::Path,
        }
    }

    pub(super) fn validate(&self, loopback: bool) -> Result<(), ConfigError> {
        let path_ok = self.path.starts_with('/') && !self.path.contains(['?', '#']);
        if !path_ok || self.name.is_empty() {
            return Err(ConfigError::BadRoute(self.path.clone()));
        }
        if self
            .topic_prefix
            .split('.')
            .any(|token| !valid_token(token))
        {
            return Err(ConfigError::BadRoute(self.path.clone()));
        }
        match self.verifier.secrets() {
            Some([]) => Err(ConfigError::NoSecrets(self.name.clone())),
            None if !loopback => Err(ConfigError::UnsignedNonLoopback),
            _ => Ok(()),
        }
    }

    /// The path below this route's prefix, if `path` is under it.
    fn rest<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.path == "/" {
            return Some(path);
        }
        let rest = path.strip_prefix(self.path.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// The topic for a request on `path` with `headers`; `None` if it cannot be derived.
    pub(super) fn topic(&self, path: &str, headers: &HeaderMap) -> Option<String> {
        let extra: Vec<&str> = match &self.topic {
            TopicRule::Path => self
                .rest(path)?
                .split('/')
                .filter(|s| !s.is_empty())
                .collect(),
            TopicRule::Header(name) => headers.get(name)?.to_str().ok()?.split('.').collect(),
        };
        if extra.iter().any(|token| !valid_token(token)) {
            return None;
        }
        let mut topic = self.topic_prefix.clone();
        for token in &extra {
            topic.push('.');
            topic.push_str(token);
        }
        let tokens = topic.split('.').count();
        (tokens <= MAX_TOPIC_TOKENS && topic.len() <= MAX_TOPIC_LEN).then_some(topic)
    }
}

/// The route with the longest path prefix that contains `path`.
pub(super) fn find<'r>(routes: &'r [Route], path: &str) -> Option<&'r Route> {
    routes
        .iter()
        .filter(|r| r.rest(path).is_some())
        .max_by_key(|r| r.path.len())
}

fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn normalise_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Splits a `set-webhook` URL (`http://localhost:8080/events`) into the exact socket address to
/// bind and the path. Only `http`, IP literals and `localhost` (127.0.0.1) are accepted: the
/// receiver never resolves names, so it binds exactly what the user wrote.
pub fn parse_listen_url(url: &str) -> Result<(SocketAddr, String), ConfigError> {
    let bad = || ConfigError::BadUrl(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") {
        return Err(ConfigError::NotHttp(url.to_owned()));
    }
    if uri.query().is_some() {
        return Err(bad());
    }
    let host = uri.host().ok_or_else(bad)?;
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad())?
    };
    let port = uri.port_u16().unwrap_or(80);
    Ok((SocketAddr::new(ip, port), normalise_path(uri.path())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn listen_url_forms() {
        let (addr, path) = parse_listen_url("http://localhost:8080/events").unwrap();
        assert_eq!(
            (addr.to_string().as_str(), path.as_str()),
            ("127.0.0.1:8080", "/events")
        );
        let (addr, path) = parse_listen_url("http://[::1]:9000").unwrap();
        assert_eq!(
            (addr.to_string().as_str(), path.as_str()),
            ("[::1]:9000", "/")
        );
        assert!(matches!(
            parse_listen_url("https://localhost/x"),
            Err(ConfigError::NotHttp(_))
        ));
        for bad in [
            "http://example.com/x",
            "localhost:8080",
            "http://127.0.0.1/x?y=1",
            "::",
        ] {
            assert!(parse_listen_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_match_on_segment_boundaries_longest_first() {
        let routes = [
            Route::new("/events", Verifier::Unsigned),
            Route::new("/events/gh/", Verifier::Unsigned),
        ];
        assert_eq!(
            find(&routes, "/events").map(|r| r.name.as_str()),
            Some("events")
        );
        assert_eq!(
            find(&routes, "/events/x").map(|r| r.name.as_str()),
            Some("events")
        );
        assert_eq!(
            find(&routes, "/events/gh/push").map(|r| r.name.as_str()),
            Some("events.gh")
        );
        assert!(find(&routes, "/eventsX").is_none());
        assert!(find(&routes, "/other").is_none());
    }

    #[test]
    fn topics_from_path_and_header() {
        let headers = HeaderMap::new();
        let route = Route::new("/events", Verifier::Unsigned);
        assert_eq!(route.topic("/events", &headers).as_deref(), Some("events"));
        assert_eq!(
            route.topic("/events/pay/ok", &headers).as_deref(),
            Some("events.pay.ok")
        );
        assert_eq!(route.topic("/events/bad token", &headers), None);

        let name = HeaderName::from_static("x-github-event");
        let route = Route {
            topic: TopicRule::Header(name.clone()),
            ..route
        };
        assert_eq!(route.topic("/events", &headers), None);
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static("pull_request.opened"));
        assert_eq!(
            route.topic("/events", &headers).as_deref(),
            Some("events.pull_request.opened")
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_urls_paths_and_headers_never_panic(url in ".{0,60}", path in "/.{0,60}",
                                                        value in "[ -~]{0,60}") {
            let _ = parse_listen_url(&url);
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert("x-event", value);
            }
            let by_path = Route::new("/", Verifier::Unsigned);
            let by_header = Route {
                topic: TopicRule::Header(HeaderName::from_static("x-event")),
                ..by_path.clone()
            };
            let topics = [by_path.topic(&path, &headers), by_header.topic(&path, &headers)];
            for topic in topics.into_iter().flatten() {
                proptest::prop_assert!(topic.len() <= MAX_TOPIC_LEN);
                proptest::prop_assert!(topic.split('.').all(valid_token));
            }
        }
    }

    #[test]
    fn validation_refuses_unsigned_beyond_loopback_and_empty_secrets() {
        let unsigned = Route::new("/e", Verifier::Unsigned);
        assert!(unsigned.validate(true).is_ok());
        assert!(matches!(
            unsigned.validate(false),
            Err(ConfigError::UnsignedNonLoopback)
        ));
        let empty = Route::new("/e", Verifier::GitHub(Vec::new()));
        assert!(matches!(
            empty.validate(true),
            Err(ConfigError::NoSecrets(_))
        ));
    }
}

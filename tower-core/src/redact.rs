//! What of a URL may be logged or shown: its scheme, host and port, and whether it carries
//! credentials. Everything else can hold a secret (a password in the userinfo or in
//! `?password=`, a token in a Slack webhook's path), so it is never printed, and a URL that does
//! not parse is not printed at all: a hand-written split of one that does not parse is how
//! secrets leak. Parsing is the `url` crate's (WHATWG URL), in this one place.

/// `scheme://[***@]host[:port]`; a `sqlite://` URL (a file path, no credentials) as it is.
///
/// ```
/// use flagtower_core::redact;
/// assert_eq!(redact::url("postgres://tower:hunter2@db:5432/tower?sslmode=require"), "postgres://***@db:5432");
/// assert_eq!(redact::url("redis://h:6379/0?password=s3cret"), "redis://h:6379");
/// assert_eq!(redact::url("sqlite://tower.db"), "sqlite://tower.db");
/// ```
pub fn url(raw: &str) -> String {
    if raw.starts_with("sqlite:") {
        return raw.to_owned();
    }
    match url::Url::parse(raw) {
        Ok(u) => {
            let credentials = !u.username().is_empty() || u.password().is_some();
            let mut out = format!("{}://{}", u.scheme(), if credentials { "***@" } else { "" });
            out.push_str(u.host_str().unwrap_or(""));
            if let Some(port) = u.port() {
                out.push_str(&format!(":{port}"));
            }
            out
        }
        Err(_) => "<a URL that does not parse>".to_owned(),
    }
}

/// `host[:port]` of a URL, or `?`: what a log line says about a webhook (whose path is its
/// secret).
pub fn host(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => "?".to_owned(),
        },
        Err(_) => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_survives_any_url_form() {
        let secrets = ["hunter2", "s3cret", "tok", "p/w", "T03R0RXPAKW", "frag"];
        for raw in [
            "postgres://tower:hunter2@db:5432/tower",
            "postgres://tower:p/w@db:5432/tower",
            "postgres://tower:hunter2?x@db/tower",
            "postgres://tower:hunter2#x@db/tower",
            "postgres://db/tower?password=hunter2",
            "postgresql://db/tower?sslmode=require&password=s3cret",
            "redis://:tok@h:6379",
            "redis://default:s3cret@[::1]:6379/2",
            "nats://tok@h:4222",
            "nats://u:s3cret@h?token=tok",
            "https://hooks.slack.com/services/T03R0RXPAKW/B0/x#frag",
            "not a url with hunter2",
        ] {
            let shown = url(raw);
            assert!(secrets.iter().all(|s| !shown.contains(s)), "{raw} → {shown}");
            let h = host(raw);
            assert!(secrets.iter().all(|s| !h.contains(s)), "{raw} → {h}");
        }
        assert_eq!(url("redis://default:s3cret@[::1]:6379/2"), "redis://***@[::1]:6379");
        assert_eq!(url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(host("https://hooks.slack.com/services/T0/B0/x"), "hooks.slack.com");
        assert_eq!(host("http://127.0.0.1:9/hooks"), "127.0.0.1:9");
    }
}

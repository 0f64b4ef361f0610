//! Who a request comes from: admin tokens, dashboard sessions and the SDK key.
//!
//! With no admin tokens configured every route is open and requests act as `anonymous` (the
//! binary refuses that on a non-loopback address unless told otherwise). With tokens:
//! - every `/api` and OFREP route needs `Authorization: Bearer <admin secret>` or a session
//!   cookie from `POST /api/session`; `/healthz` and the dashboard's files stay open;
//! - the SDK routes (`POST /api/flags/:id/events` and OFREP) also take the current SDK key as
//!   the bearer; the key opens nothing else (403);
//! - a cookie-authenticated request that changes state must come from this server's own pages
//!   (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to the server's), else 403: the browser
//!   sends the cookie along with requests other sites make.
//!
//! Secrets are compared as SHA-256 digests in constant time (no early exit, no length leak).
//!
//! Sessions are stateless, so they survive restarts and work across several Tower processes
//! sharing the same tokens: the cookie holds the token's name, an expiry and a random id from
//! the operating system, signed with HMAC-SHA-256 under a key derived from that token's secret.
//! Changing or removing the token ends its sessions; idle ones expire (each request in the
//! second half of a session's life renews it); `DELETE /api/session` clears the cookie and
//! revokes the id in this process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tower_session";

/// How long an unused dashboard session lasts by default (8 hours).
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);

/// One admin token: a name (logged as the actor of every change made with it) and a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    name: Arc<str>,
    digest: [u8; 32],
    /// The key sessions of this token are signed with.
    session_key: [u8; 32],
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The admin tokens a server accepts; empty: authentication is off.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminTokens(Vec<AdminToken>);

impl fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|t| &t.name)).finish()
    }
}

/// The shortest secret accepted: 16 characters (a guessable admin secret is no lock).
pub const MIN_SECRET_LEN: usize = 16;

impl AdminTokens {
    /// No tokens: authentication is off.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses `name:secret` entries, separated by commas or newlines (blank lines and lines
    /// starting with `#` are skipped). Names are 1–64 of `A-Z a-z 0-9 . _ @ -` and unique;
    /// secrets are at least [`MIN_SECRET_LEN`] characters. Errors never contain a secret.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut tokens: Vec<AdminToken> = Vec::new();
        for (n, entry) in list.split([',', '\n']).map(str::trim).enumerate() {
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let Some((name, secret)) = entry.split_once(':') else {
                return Err(format!("entry {} is not name:secret", n + 1));
            };
            let (name, secret) = (name.trim(), secret.trim());
            let valid_name = (1..=64).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
            if !valid_name {
                return Err(format!(
                    "entry {}: the name must be 1 to 64 letters, digits, `.`, `_`, `@` or `-`",
                    n + 1
                ));
            }
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(format!(
                    "the secret of `{name}` is shorter than {MIN_SECRET_LEN} characters"
                ));
            }
            if tokens.iter().any(|t| &*t.name == name) {
                return Err(format!("the name `{name}` is given twice"));
            }
            let mut key = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes any key length");
            key.update(b"tower session key v1");
            tokens.push(AdminToken {
                name: name.into(),
                digest: Sha256::digest(secret.as_bytes()).into(),
                session_key: key.finalize().into_bytes().into(),
            });
        }
        Ok(Self(tokens))
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token whose secret this is. Every token is compared, in constant time.
    fn find_secret(&self, presented: &str) -> Option<&AdminToken> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for t in &self.0 {
            if bool::from(t.digest.ct_eq(&digest)) {
                found = Some(t);
            }
        }
        found
    }

    fn by_name(&self, name: &str) -> Option<&AdminToken> {
        self.0.iter().find(|t| &*t.name == name)
    }
}

/// Whether `presented` is `key`, in constant time.
pub(crate) fn same_secret(presented: &str, key: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    a.ct_eq(&b).into()
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Authentication is off.
    Anonymous,
    /// An admin token, as a bearer or through a session.
    Admin { name: Arc<str>, session: Option<Session> },
    /// The current SDK key.
    Sdk,
}

impl Caller {
    /// The Tower to act through: one that logs this caller as the actor of its changes.
    pub(crate) fn tower(&self, tower: &flagtower_core::Tower) -> flagtower_core::Tower {
        match self {
            Self::Anonymous => tower.clone(),
            Self::Admin { name, .. } => tower.acting_as(name.clone().into()),
            Self::Sdk => tower.acting_as(flagtower_core::Actor::named("sdk")),
        }
    }

    /// The name recorded as the actor of the changes it makes.
    pub(crate) fn actor(&self) -> &str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Admin { name, .. } => name,
            Self::Sdk => "sdk",
        }
    }
}

/// A signed-in dashboard session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    id: String,
    /// Milliseconds since the epoch.
    expires: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Sessions and their settings, shared by every request of a server.
#[derive(Debug)]
pub(crate) struct Sessions {
    pub(crate) tokens: AdminTokens,
    idle: Duration,
    /// `TOWER_PUBLIC_URL`'s origin (`https://flags.example.com`), when set.
    public_origin: Option<String>,
    /// Session ids logged out here, until they would have expired.
    revoked: Mutex<HashMap<String, u64>>,
}

impl Sessions {
    pub(crate) fn new(tokens: AdminTokens, idle: Duration, public_url: Option<&str>) -> Self {
        let public_origin = public_url.and_then(|u| url::Url::parse(u).ok()).and_then(|u| {
            let origin = u.origin();
            origin.is_tuple().then(|| origin.ascii_serialization())
        });
        Self { tokens, idle, public_origin, revoked: Mutex::new(HashMap::new()) }
    }

    /// Whether cookies must be `Secure`: the public URL is https, or a proxy in front says the
    /// request came over TLS.
    fn secure(&self, headers: &http::HeaderMap) -> bool {
        self.public_origin.as_deref().is_some_and(|o| o.starts_with("https:"))
            || header(headers, "x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
    }

    fn sign(&self, token: &AdminToken, id: &str, expires: u64) -> String {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&token.session_key)
            .expect("HMAC takes any key length");
        mac.update(format!("{}|{expires}|{id}", token.name).as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A new session for `token`: the cookie's value.
    fn issue(&self, token: &AdminToken) -> Result<(String, Session), getrandom::Error> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw)?;
        let id = hex(&raw);
        let expires = now_ms() + self.idle.as_millis() as u64;
        Ok((self.cookie_value(token, &id, expires), Session { id, expires }))
    }

    fn cookie_value(&self, token: &AdminToken, id: &str, expires: u64) -> String {
        format!("{}.{expires}.{id}.{}", token.name, self.sign(token, id, expires))
    }

    /// The session a cookie value stands for, if it is genuine, current and not revoked.
    fn verify(&self, value: &str) -> Option<(&AdminToken, Session)> {
        let mut parts = value.rsplitn(4, '.');
        let (mac, id, expires, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let token = self.tokens.by_name(name)?;
        let expires: u64 = expires.parse().ok()?;
        let expected = self.sign(token, id, expires);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) || expires <= now_ms() {
            return None;
        }
        if self.revoked.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id) {
            return None;
        }
        Some((token, Session { id: id.to_owned(), expires }))
    }

    /// Who the request is from, by its bearer token or session cookie. `sdk_key` is the
    /// current SDK key, asked for only when a bearer is not an admin token and the route takes
    /// it.
    pub(crate) async fn authenticate<F, Fut>(
        &self,
        method: &http::Method,
        headers: &http::HeaderMap,
        sdk_route: bool,
        sdk_key: F,
    ) -> Result<Caller, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, ApiError>>,
    {
        if !self.tokens.enabled() {
            return Ok(Caller::Anonymous);
        }
        if let Some(auth) = header(headers, "authorization") {
            let Some(secret) = auth
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, s)| s.trim())
            else {
                return Err(ApiError::Unauthorized("Authorization must be `Bearer <token>`"));
            };
            if let Some(t) = self.tokens.find_secret(secret) {
                return Ok(Caller::Admin { name: t.name.clone(), session: None });
            }
            if let Some(key) = sdk_key().await?
                && same_secret(secret, &key)
            {
                return if sdk_route {
                    Ok(Caller::Sdk)
                } else {
                    Err(ApiError::Forbidden(
                        "the SDK key opens only the SDK routes (flag events and OFREP); this one needs an admin token",
                    ))
                };
            }
            return Err(ApiError::Unauthorized("that token is not valid"));
        }
        let Some(value) = cookie(headers, SESSION_COOKIE) else {
            return Err(ApiError::Unauthorized(
                "this server needs an admin token: send Authorization: Bearer <token>, or sign in",
            ));
        };
        let Some((token, session)) = self.verify(value) else {
            return Err(ApiError::Unauthorized("the session has expired; sign in again"));
        };
        if !matches!(*method, http::Method::GET | http::Method::HEAD) && !self.same_origin(headers)
        {
            return Err(ApiError::Forbidden(
                "a change with a session cookie must come from the dashboard's own pages",
            ));
        }
        Ok(Caller::Admin { name: token.name.clone(), session: Some(session) })
    }

    /// Whether a browser says the request comes from this server's own pages.
    fn same_origin(&self, headers: &http::HeaderMap) -> bool {
        if header(headers, "sec-fetch-site").is_some_and(|s| s == "same-origin") {
            return true;
        }
        let Some(origin) = header(headers, "origin") else { return false };
        if self.public_origin.as_deref() == Some(origin) {
            return true;
        }
        let Some(host) = header(headers, "host") else { return false };
        let scheme = if self.secure(headers) { "https" } else { "http" };
        origin.eq_ignore_ascii_case(&format!("{scheme}://{host}"))
    }

    /// Signs in with an admin secret: the `Set-Cookie` value and the token's name.
    pub(crate) fn sign_in(
        &self,
        secret: &str,
        headers: &http::HeaderMap,
    ) -> Result<Option<(String, Arc<str>)>, getrandom::Error> {
        let Some(token) = self.tokens.find_secret(secret) else { return Ok(None) };
        let (value, _) = self.issue(token)?;
        Ok(Some((self.set_cookie(&value, self.idle, headers), token.name.clone())))
    }

    /// The `Set-Cookie` that renews a session past the first half of its life, if due.
    pub(crate) fn renewal(&self, caller: &Caller, headers: &http::HeaderMap) -> Option<String> {
        let Caller::Admin { name, session: Some(s) } = caller else { return None };
        let left = s.expires.saturating_sub(now_ms());
        if left > self.idle.as_millis() as u64 / 2 {
            return None;
        }
        let token = self.tokens.by_name(name)?;
        let expires = now_ms() + self.idle.as_millis() as u64;
        Some(self.set_cookie(&self.cookie_value(token, &s.id, expires), self.idle, headers))
    }

    /// Signs out: revokes the session here and returns the `Set-Cookie` that clears it.
    pub(crate) fn sign_out(&self, caller: &Caller, headers: &http::HeaderMap) -> String {
        if let Caller::Admin { session: Some(s), .. } = caller {
            let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            let now = now_ms();
            revoked.retain(|_, expires| *expires > now);
            revoked.insert(s.id.clone(), s.expires);
        }
        self.set_cookie("", Duration::ZERO, headers)
    }

    fn set_cookie(&self, value: &str, max_age: Duration, headers: &http::HeaderMap) -> String {
        let secure = if self.secure(headers) { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            max_age.as_secs()
        )
    }

    /// The idle time of a session.
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The value of the cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice-secret-0123456789";

    fn sessions() -> Sessions {
        let tokens =
            AdminTokens::parse(&format!("alice:{ALICE}\n# ops\nbob:bob-secret-0123456789"))
                .unwrap();
        Sessions::new(tokens, Duration::from_secs(60), Some("https://flags.example.com/x"))
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/api/apps");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    async fn who(s: &Sessions, req: &http::request::Parts, sdk: bool) -> Result<Caller, ApiError> {
        s.authenticate(&req.method, &req.headers, sdk, || async {
            Ok(Some("the-sdk-key".to_owned()))
        })
        .await
    }

    #[test]
    fn tokens_parse_and_never_show_their_secrets() {
        let t = AdminTokens::parse(&format!(" alice:{ALICE} ,,")).unwrap();
        assert_eq!(t.len(), 1);
        assert!(!format!("{t:?}").contains(ALICE));
        for bad in
            ["alice", "al ice:0123456789abcdef", "a:short", "a:0123456789abcdef,a:0123456789abcdeg"]
        {
            let e = AdminTokens::parse(bad).unwrap_err();
            assert!(!e.contains("0123456789abcde"), "{e}");
        }
        assert!(!AdminTokens::parse("").unwrap().enabled());
    }

    #[tokio::test]
    async fn bearers_are_admin_tokens_or_the_sdk_key_on_its_routes() {
        let s = sessions();
        let admin = request("POST", &[("authorization", &format!("Bearer {ALICE}"))]);
        assert_eq!(who(&s, &admin, false).await.unwrap().actor(), "alice");
        let sdk = request("POST", &[("authorization", "Bearer the-sdk-key")]);
        assert_eq!(who(&s, &sdk, true).await.unwrap(), Caller::Sdk);
        assert!(matches!(who(&s, &sdk, false).await, Err(ApiError::Forbidden(_))));
        let wrong = request("GET", &[("authorization", "Bearer nope")]);
        assert!(matches!(who(&s, &wrong, true).await, Err(ApiError::Unauthorized(_))));
        let basic = request("GET", &[("authorization", "Basic YTpi")]);
        assert!(matches!(who(&s, &basic, false).await, Err(ApiError::Unauthorized(_))));
        assert!(matches!(
            who(&s, &request("GET", &[]), false).await,
            Err(ApiError::Unauthorized(_))
        ));
        let off = Sessions::new(AdminTokens::none(), SESSION_IDLE, None);
        assert_eq!(who(&off, &request("POST", &[]), false).await.unwrap(), Caller::Anonymous);
    }

    #[tokio::test]
    async fn sessions_are_signed_same_origin_and_revocable() {
        let s = sessions();
        let (set, name) = s.sign_in(ALICE, &http::HeaderMap::new()).unwrap().unwrap();
        assert_eq!(&*name, "alice");
        assert!(set.contains("HttpOnly; SameSite=Strict") && set.ends_with("; Secure"), "{set}");
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
        let cookie = format!("other=1; {SESSION_COOKIE}={value}");
        let get = request("GET", &[("cookie", &cookie)]);
        let caller = who(&s, &get, false).await.unwrap();
        assert_eq!(caller.actor(), "alice");
        assert_eq!(s.renewal(&caller, &get.headers), None, "fresh sessions are not renewed");

        let cross = request("POST", &[("cookie", &cookie), ("origin", "https://evil.example")]);
        assert!(matches!(who(&s, &cross, false).await, Err(ApiError::Forbidden(_))));
        let bare = request("POST", &[("cookie", &cookie)]);
        assert!(matches!(who(&s, &bare, false).await, Err(ApiError::Forbidden(_))));
        let same = request("POST", &[("cookie", &cookie), ("origin", "https://flags.example.com")]);
        assert!(who(&s, &same, false).await.is_ok());
        let fetch = request("POST", &[("cookie", &cookie), ("sec-fetch-site", "same-origin")]);
        assert!(who(&s, &fetch, false).await.is_ok());

        // Tampered: another name, a later expiry.
        let forged = value.replacen("alice", "bob", 1);
        let req = request("GET", &[("cookie", &format!("{SESSION_COOKIE}={forged}"))]);
        assert!(who(&s, &req, false).await.is_err());
        let mut parts: Vec<&str> = value.split('.').collect();
        let later = (parts[1].parse::<u64>().unwrap() + 1).to_string();
        parts[1] = &later;
        let req = request("GET", &[("cookie", &format!("{SESSION_COOKIE}={}", parts.join(".")))]);
        assert!(who(&s, &req, false).await.is_err());

        // A change of the token's secret ends its sessions.
        let changed = Sessions::new(
            AdminTokens::parse("alice:a-new-secret-0123456789").unwrap(),
            Duration::from_secs(60),
            None,
        );
        assert!(who(&changed, &get, false).await.is_err());

        let cleared = s.sign_out(&caller, &get.headers);
        assert!(
            cleared.starts_with(&format!("{SESSION_COOKIE}=;")) && cleared.contains("Max-Age=0")
        );
        assert!(who(&s, &get, false).await.is_err(), "revoked");
    }

    #[tokio::test]
    async fn sessions_expire_and_renew() {
        let tokens = AdminTokens::parse(&format!("alice:{ALICE}")).unwrap();
        let s = Sessions::new(tokens, Duration::from_millis(1500), None);
        let token = s.tokens.by_name("alice").unwrap().clone();
        // Issued with less than half its life left: renewed.
        let value = s.cookie_value(&token, "00ff", now_ms() + 500);
        let req = request("GET", &[("cookie", &format!("{SESSION_COOKIE}={value}"))]);
        let caller = who(&s, &req, false).await.unwrap();
        let renewed = s.renewal(&caller, &req.headers).expect("renewed");
        assert!(renewed.contains("Max-Age=1") && !renewed.contains("Secure"), "{renewed}");
        let expired = s.cookie_value(&token, "00ff", now_ms() - 1);
        let req = request("GET", &[("cookie", &format!("{SESSION_COOKIE}={expired}"))]);
        assert!(who(&s, &req, false).await.is_err());
    }
}

//! The dashboard's files: embedded in the binary, served at `/assets/…`, with `index.html` for
//! every other page path so deep links work (the browser's router renders the page).
//!
//! With `TOWER_DASHBOARD_DIR` set, files are read from that directory at each request instead,
//! so the dashboard can be edited without rebuilding.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../dashboard/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../dashboard/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../dashboard/favicon.svg"),
    },
];

/// The policy every dashboard response carries: only this origin's scripts, styles and API.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Each embedded file's entity tag, from a hash of its bytes.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| format!("\"{:016x}\"", fnv1a(a.body))).collect());

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Whether `path` is a dashboard page or file (anything outside `/api/` and `/healthz`).
pub(crate) fn serves(path: &str) -> bool {
    !(path == "/api" || path.starts_with("/api/") || path == "/healthz")
}

/// Answers a GET or HEAD of a dashboard path; `None` for an unknown `/assets/…` file.
pub(crate) fn respond(
    path: &str,
    if_none_match: Option<&HeaderValue>,
    dir: Option<&Path>,
) -> Option<Response<Bytes>> {
    let name = match path.strip_prefix("/assets/") {
        Some("index.html") => return None,
        Some(file) => file,
        // Every page is the one document; the browser's router shows the page (or not-found).
        None => "index.html",
    };
    let index = ASSETS.iter().position(|a| a.name == name)?;
    let asset = &ASSETS[index];
    let (body, etag) = match dir.and_then(|d| read_from(d, asset.name)) {
        Some(body) => {
            let etag = format!("\"{:016x}\"", fnv1a(&body));
            (Bytes::from(body), etag)
        }
        None => (Bytes::from_static(asset.body), ETAGS[index].clone()),
    };
    let not_modified = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if not_modified {
        let mut res = Response::new(Bytes::new());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        let mut res = Response::new(body);
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        res
    };
    let h = res.headers_mut();
    // Revalidate every time: a new binary's files are picked up at once, and an unchanged
    // file costs a 304.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Some(res)
}

fn read_from(dir: &Path, name: &str) -> Option<Vec<u8>> {
    let path: PathBuf = dir.join(name);
    match std::fs::read(&path) {
        Ok(body) => Some(body),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read a dashboard file; serving the embedded one");
            None
        }
    }
}

/// The total size of the embedded files, in bytes.
pub fn embedded_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_get_the_document_and_files_their_own_type() {
        let page = respond("/flags/3", None, None).unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let js = respond("/assets/app.js", None, None).unwrap();
        assert_eq!(js.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(respond("/assets/nope.js", None, None).is_none());
        assert!(respond("/assets/index.html", None, None).is_none(), "the document is not a file");
        assert!(respond("/assets/../Cargo.toml", None, None).is_none());
        assert!(!serves("/api/apps") && !serves("/healthz") && serves("/") && serves("/logs"));
    }

    #[test]
    fn an_unchanged_file_is_a_304() {
        let first = respond("/assets/app.css", None, None).unwrap();
        let etag = first.headers()[header::ETAG].clone();
        let again = respond("/assets/app.css", Some(&etag), None).unwrap();
        assert_eq!(again.status(), 304);
        assert!(again.body().is_empty());
    }

    #[test]
    fn the_embedded_files_are_small() {
        assert!(embedded_size() < 300 * 1024, "{} bytes", embedded_size());
    }
}

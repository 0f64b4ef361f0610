//! The dashboard's files: embedded in the binary, served at `/assets/…`, with `index.html` for
//! every other page path so deep links work (the browser's router renders the page).
//!
//! Embedded files are gzipped once, at first use, and sent compressed to clients that accept it
//! (about a quarter of the bytes). With `TOWER_DASHBOARD_DIR` set, files are read from that
//! directory at each request instead, uncompressed, so the dashboard can be edited without
//! rebuilding.

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

// Every file of `dashboard/`, listed by build.rs.
include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The policy every dashboard response carries: only this origin's scripts, styles and API.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Each embedded file's entity tag, from a hash of its bytes.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| format!("\"{:016x}\"", fnv1a(a.body))).collect());

/// Each embedded file gzipped, when that makes it smaller.
static GZIPPED: LazyLock<Vec<Option<Bytes>>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(a.body).ok()?;
            let packed = gz.finish().ok()?;
            (packed.len() < a.body.len()).then(|| Bytes::from(packed))
        })
        .collect()
});

/// Whether an `Accept-Encoding` header accepts gzip (and does not refuse it with `q=0`).
pub(crate) fn accepts_gzip(accept_encoding: Option<&HeaderValue>) -> bool {
    let Some(v) = accept_encoding.and_then(|v| v.to_str().ok()) else { return false };
    v.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0))
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Whether `path` is a dashboard page or file (anything outside `/api/`, `/ofrep/` and
/// `/healthz`).
pub(crate) fn serves(path: &str) -> bool {
    !(path == "/api"
        || path.starts_with("/api/")
        || path == "/healthz"
        || path == "/metrics"
        || path == "/ofrep"
        || path.starts_with("/ofrep/"))
}

/// Answers a GET or HEAD of a dashboard path; `None` for an unknown `/assets/…` file.
pub(crate) fn respond(
    path: &str,
    if_none_match: Option<&HeaderValue>,
    gzip: bool,
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
    let (body, etag, gzipped) = match dir.and_then(|d| read_from(d, asset.name)) {
        Some(body) => {
            let etag = format!("\"{:016x}\"", fnv1a(&body));
            (Bytes::from(body), etag, false)
        }
        None => match GZIPPED[index].as_ref().filter(|_| gzip) {
            // Another representation, another tag.
            Some(packed) => (packed.clone(), ETAGS[index].replacen('"', "\"gz-", 1), true),
            None => (Bytes::from_static(asset.body), ETAGS[index].clone(), false),
        },
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
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
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
        let page = respond("/flags/3", None, false, None).unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let js = respond("/assets/main.js", None, false, None).unwrap();
        assert_eq!(js.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(respond("/assets/nope.js", None, false, None).is_none());
        assert!(
            respond("/assets/index.html", None, false, None).is_none(),
            "the document is not a file"
        );
        assert!(respond("/assets/../Cargo.toml", None, false, None).is_none());
        assert!(!serves("/api/apps") && !serves("/healthz") && serves("/") && serves("/logs"));
    }

    #[test]
    fn an_unchanged_file_is_a_304() {
        let first = respond("/assets/app.css", None, false, None).unwrap();
        let etag = first.headers()[header::ETAG].clone();
        let again = respond("/assets/app.css", Some(&etag), false, None).unwrap();
        assert_eq!(again.status(), 304);
        assert!(again.body().is_empty());
    }

    #[test]
    fn files_go_gzipped_to_clients_that_accept_it() {
        use std::io::Read;
        let plain = respond("/assets/main.js", None, false, None).unwrap();
        let packed = respond("/assets/main.js", None, true, None).unwrap();
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(packed.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(packed.headers()[header::VARY], "accept-encoding");
        assert!(packed.body().len() * 2 < plain.body().len(), "{} bytes", packed.body().len());
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed.body()[..]).read_to_end(&mut unpacked).unwrap();
        assert_eq!(unpacked, plain.body().to_vec());
        assert_ne!(packed.headers()[header::ETAG], plain.headers()[header::ETAG]);
        let etag = packed.headers()[header::ETAG].clone();
        assert_eq!(respond("/assets/main.js", Some(&etag), true, None).unwrap().status(), 304);

        let h = |v: &'static str| Some(HeaderValue::from_static(v));
        assert!(accepts_gzip(h("gzip, deflate, br").as_ref()));
        assert!(accepts_gzip(h("br;q=1.0, GZIP;q=0.5").as_ref()));
        assert!(!accepts_gzip(h("gzip;q=0, br").as_ref()));
        assert!(!accepts_gzip(h("identity").as_ref()));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn the_embedded_files_are_small() {
        assert!(embedded_size() < 300 * 1024, "{} bytes", embedded_size());
    }
}

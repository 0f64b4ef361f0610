//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the whole API (`openapi.json` beside
//! this file, written by hand, embedded in the binary).
//!
//! It is checked against the code by the tests below, so it cannot drift: every path and
//! method it lists is one the router answers, every route the router answers is in it with all
//! its methods (an exhaustive `match` over [`Route`] and OFREP's endpoints, so a new route does
//! not compile until it is documented), every `$ref` resolves, and its error codes are the ones
//! [`ApiError`](crate::ApiError) renders. `scripts/schemathesis` checks the answers of the
//! running binary against it.
//!
//! Access: the document is served like every other `/api` route, behind the admin tokens when
//! there are some. It is not one of the open routes (`/healthz`, the dashboard's files): the
//! dashboard does not need it, the tooling that reads it (client generators, schemathesis) is an
//! operator's and has a token, and keeping the rule "everything under `/api` needs a token"
//! without exceptions is what `auth.rs` and the security tests check.

use bytes::Bytes;
use http::{HeaderValue, Response, header};

/// The document, as served.
pub(crate) const DOCUMENT: &[u8] = include_bytes!("openapi.json");

/// The answer to `GET /api/openapi.json`.
pub(crate) fn response() -> Response<Bytes> {
    let mut res = Response::new(Bytes::from_static(DOCUMENT));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::error::ApiError;
    use crate::ofrep::{AppFrom, Endpoint};
    use crate::routes::Route;

    fn document() -> Value {
        serde_json::from_slice(DOCUMENT).expect("openapi.json is JSON")
    }

    const METHODS: [&str; 8] =
        ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    /// A path the template stands for, each `{parameter}` given a sample value.
    fn concrete(template: &str) -> String {
        template
            .split('/')
            .map(|seg| match seg {
                "{appId}" | "{flagId}" => "7",
                "{key}" => "new%20cart",
                s if s.contains('{') => panic!("no sample value for {s} in {template}"),
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The methods the server answers at `path` (upper case), and what answers it; `None` when
    /// only the dashboard or a 404 does.
    fn served(path: &str) -> Option<(String, BTreeSet<String>)> {
        if crate::dashboard::serves(path) {
            return None;
        }
        let route = Route::find(path);
        let ofrep = crate::ofrep::find(path);
        assert!(route.is_none() || ofrep.is_none(), "{path} is both a REST and an OFREP route");
        if let Some(route) = route {
            let methods = route.allowed().iter().map(|m| (*m).to_owned()).collect();
            return Some((format!("{route:?}"), methods));
        }
        let (from, endpoint) = ofrep?;
        Some((
            format!("OFREP {from:?} {endpoint:?}"),
            BTreeSet::from([endpoint.method().to_owned()]),
        ))
    }

    /// Where each route is documented. Exhaustive: a new [`Route`] does not compile until it is
    /// given its template here, and [`every_route`] a path of it.
    fn documented(route: Route<'_>) -> &'static str {
        match route {
            Route::Apps => "/api/apps",
            Route::App(_) => "/api/apps/{appId}",
            Route::AppFlags(_) => "/api/apps/{appId}/flags",
            Route::Flag(_) => "/api/flags/{flagId}",
            Route::FlagToggle(_) => "/api/flags/{flagId}/toggle",
            Route::FlagEvents(_) => "/api/flags/{flagId}/events",
            Route::FlagTimeseries(_) => "/api/flags/{flagId}/timeseries",
            Route::CircuitOpen(_) => "/api/flags/circuit/{flagId}/open",
            Route::CircuitClose(_) => "/api/flags/circuit/{flagId}/close",
            Route::Logs => "/api/logs",
            Route::AppLogs(_) => "/api/logs/{appId}",
            Route::Keys => "/api/keys",
            Route::Health => "/healthz",
            Route::Stream => "/api/stream",
            Route::Session => "/api/session",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/api/openapi.json",
        }
    }

    /// Where each OFREP endpoint is documented (exhaustive, as [`documented`]).
    fn documented_ofrep(from: &AppFrom<'_>, endpoint: &Endpoint) -> &'static str {
        match (from, endpoint) {
            (AppFrom::Path(_), Endpoint::Flag(_)) => {
                "/api/apps/{appId}/ofrep/v1/evaluate/flags/{key}"
            }
            (AppFrom::Path(_), Endpoint::Bulk) => "/api/apps/{appId}/ofrep/v1/evaluate/flags",
            (AppFrom::Path(_), Endpoint::Events) => "/api/apps/{appId}/ofrep/v1/events",
            (AppFrom::Path(_), Endpoint::Configuration) => {
                "/api/apps/{appId}/ofrep/v1/configuration"
            }
            (AppFrom::Request, Endpoint::Flag(_)) => "/ofrep/v1/evaluate/flags/{key}",
            (AppFrom::Request, Endpoint::Bulk) => "/ofrep/v1/evaluate/flags",
            (AppFrom::Request, Endpoint::Events) => "/ofrep/v1/events",
            (AppFrom::Request, Endpoint::Configuration) => "/ofrep/v1/configuration",
        }
    }

    /// A path of every route and OFREP endpoint the server answers.
    fn every_route() -> Vec<&'static str> {
        vec![
            "/api/apps",
            "/api/apps/1",
            "/api/apps/1/flags",
            "/api/flags/1",
            "/api/flags/1/toggle",
            "/api/flags/1/events",
            "/api/flags/1/timeseries",
            "/api/flags/circuit/1/open",
            "/api/flags/circuit/1/close",
            "/api/logs",
            "/api/logs/1",
            "/api/keys",
            "/healthz",
            "/api/stream",
            "/api/session",
            "/metrics",
            "/api/openapi.json",
            "/api/apps/1/ofrep/v1/evaluate/flags/checkout",
            "/api/apps/1/ofrep/v1/evaluate/flags",
            "/api/apps/1/ofrep/v1/events",
            "/api/apps/1/ofrep/v1/configuration",
            "/ofrep/v1/evaluate/flags/checkout",
            "/ofrep/v1/evaluate/flags",
            "/ofrep/v1/events",
            "/ofrep/v1/configuration",
        ]
    }

    /// The documented methods of each path (upper case).
    fn documented_methods(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .map(|(template, item)| {
                let item = item.as_object().expect("a path item is an object");
                for key in item.keys() {
                    assert!(
                        METHODS.contains(&key.as_str()) || key == "parameters",
                        "{template}: `{key}` is no method"
                    );
                }
                let methods = item
                    .keys()
                    .filter(|k| METHODS.contains(&k.as_str()))
                    .map(|k| k.to_uppercase())
                    .collect();
                (template.clone(), methods)
            })
            .collect()
    }

    #[test]
    fn every_documented_operation_is_served() {
        let doc = document();
        for (template, methods) in documented_methods(&doc) {
            let path = concrete(&template);
            let Some((what, allowed)) = served(&path) else {
                panic!("{template} is documented but no route answers {path}");
            };
            assert_eq!(methods, allowed, "{template} ({what}): documented methods vs served ones");
        }
    }

    #[test]
    fn every_served_route_is_documented_with_all_its_methods() {
        let doc = document();
        let methods = documented_methods(&doc);
        let mut templates = BTreeSet::new();
        for path in every_route() {
            let template = match (Route::find(path), crate::ofrep::find(path)) {
                (Some(route), None) => documented(route),
                (None, Some((from, endpoint))) => documented_ofrep(&from, &endpoint),
                other => panic!("{path}: {other:?}"),
            };
            assert!(templates.insert(template), "two sample paths of {template}");
            let Some(documented) = methods.get(template) else {
                panic!("{path} is served but {template} is not in openapi.json");
            };
            let (what, allowed) = served(path).expect("served");
            assert_eq!(documented, &allowed, "{template} ({what})");
        }
        let undocumented: Vec<_> =
            methods.keys().filter(|t| !templates.contains(t.as_str())).collect();
        assert!(undocumented.is_empty(), "no sample path for {undocumented:?}");
    }

    /// Every `$ref` of `value`, with where it is.
    fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        out.push((at.clone(), v.as_str().expect("a $ref is a string")));
                    } else {
                        refs(v, format!("{at}/{k}"), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    refs(v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_ref_resolves() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"), "info.version");
        assert!(doc["info"]["title"].is_string());
        let mut found = Vec::new();
        refs(&doc, String::new(), &mut found);
        assert!(found.len() > 100, "the document uses its components");
        for (at, target) in found {
            let pointer =
                target.strip_prefix('#').unwrap_or_else(|| panic!("{at}: external {target}"));
            assert!(doc.pointer(pointer).is_some(), "{at}: {target} does not resolve");
        }
        let schemes = doc["components"]["securitySchemes"].as_object().expect("securitySchemes");
        let mut ids = BTreeSet::new();
        for (template, item) in doc["paths"].as_object().expect("paths") {
            let params_of = |v: &Value| -> Vec<Value> {
                v["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| match p["$ref"].as_str() {
                        Some(r) => doc.pointer(&r[1..]).expect("resolved above").clone(),
                        None => p.clone(),
                    })
                    .collect()
            };
            let shared = params_of(item);
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let id =
                    op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {template}"));
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                // Every `{name}` of the template is a declared path parameter, and no other is.
                let params: Vec<Value> = shared.iter().cloned().chain(params_of(op)).collect();
                let declared: BTreeSet<&str> = params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| {
                        assert_eq!(p["required"], true, "{id}: path parameters are required");
                        p["name"].as_str().expect("name")
                    })
                    .collect();
                let in_template: BTreeSet<&str> = template
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .collect();
                assert_eq!(declared, in_template, "{id}: path parameters");
                let responses = op["responses"].as_object().expect("responses");
                assert!(responses.keys().any(|s| s.starts_with('2')), "{id}: no success");
                for status in responses.keys() {
                    assert!(
                        status.len() == 3
                            && status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                        "{id}: status {status}"
                    );
                }
                for requirement in
                    op["security"].as_array().or(doc["security"].as_array()).into_iter().flatten()
                {
                    for scheme in requirement.as_object().expect("requirement").keys() {
                        assert!(schemes.contains_key(scheme), "{id}: no security scheme {scheme}");
                    }
                }
            }
        }
    }

    /// One of every [`ApiError`]; the `match` makes a new variant fail to compile here.
    fn every_error() -> Vec<ApiError> {
        let all = vec![
            ApiError::BadRequest(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::MethodNotAllowed(&["GET"]),
            ApiError::Conflict(String::new()),
            ApiError::PayloadTooLarge(1),
            ApiError::RequestTimeout(Duration::from_secs(1)),
            ApiError::UnsupportedMediaType,
            ApiError::MisdirectedRequest,
            ApiError::Unauthorized(""),
            ApiError::Forbidden(""),
            ApiError::TooManyRequests(Duration::from_secs(1)),
            ApiError::Validation { field: None, message: String::new() },
            ApiError::RulesetTooLarge { size: 2, limit: 1 },
            ApiError::Unavailable("down".into()),
            ApiError::Busy(""),
            ApiError::Internal("bug".into()),
        ];
        for e in &all {
            match e {
                ApiError::BadRequest(_)
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed(_)
                | ApiError::Conflict(_)
                | ApiError::PayloadTooLarge(_)
                | ApiError::RequestTimeout(_)
                | ApiError::UnsupportedMediaType
                | ApiError::MisdirectedRequest
                | ApiError::Unauthorized(_)
                | ApiError::Forbidden(_)
                | ApiError::TooManyRequests(_)
                | ApiError::Validation { .. }
                | ApiError::RulesetTooLarge { .. }
                | ApiError::Unavailable(_)
                | ApiError::Busy(_)
                | ApiError::Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn the_error_codes_are_the_ones_the_server_renders() {
        let doc = document();
        let enumerated: BTreeSet<String> = doc
            .pointer("/components/schemas/Error/properties/error/properties/code/enum")
            .and_then(Value::as_array)
            .expect("the Error schema's codes")
            .iter()
            .map(|c| c.as_str().expect("a code").to_owned())
            .collect();
        let rendered: BTreeSet<String> = every_error()
            .into_iter()
            .map(|e| {
                let body: Value = serde_json::from_slice(e.into_response().body()).expect("JSON");
                body["error"]["code"].as_str().expect("code").to_owned()
            })
            .collect();
        assert_eq!(enumerated, rendered);
    }

    #[test]
    fn the_document_is_served_as_json() {
        let res = response();
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(document(), serde_json::from_slice::<Value>(res.body()).unwrap());
        assert!(matches!(Route::find("/api/openapi.json"), Some(Route::OpenApi)));
        assert_eq!(Route::OpenApi.allowed(), ["GET"]);
    }
}

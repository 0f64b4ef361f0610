//! The read model: the answers of the read routes that flags are read through constantly and
//! changed through rarely (`GET /api/flags/:id`, `/api/apps/:id/flags`, `/api/apps`), kept as
//! the bytes sent, each under the version of what it depends on ([`Tower::app_version`] of its
//! app, or [`Tower::apps_version`] for the list of apps) taken *before* the store was read. A
//! copy is served while that version stays the same: every change made through this process
//! moves it before the change returns, and another process's when the live feed reads it (at
//! once on PostgreSQL, through NOTIFY). So a reader never gets an answer older than the newest
//! change it could know of, without a store read, a thread hand-off or serialization per
//! request.
//!
//! Bounded: at most [`ServerOptions::read_cache_bytes`](crate::ServerOptions) of answers; past
//! that the model starts over empty (answers are re-read as they are asked for).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use flagtower_core::versions::Version;
use flagtower_core::{AppId, Tower};

use crate::routes::Route;

/// What an answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depends {
    App(AppId, Version),
    AllApps(Version),
}

#[derive(Debug)]
struct Entry {
    depends: Depends,
    body: Bytes,
}

/// A request the model may answer, before its store read: what to check after it.
#[derive(Debug)]
pub(crate) struct Pending {
    key: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A flag's answer: its app is known from an earlier copy (with the app's version then),
    /// or learned from the answer (with all apps' version then).
    Flag(Option<(AppId, Version)>, Version),
    App(AppId, Version),
    AllApps(Version),
}

#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    entries: RwLock<HashMap<String, Entry>>,
    bytes: AtomicUsize,
    max_bytes: usize,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

impl ReadCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self { max_bytes, ..Self::default() }
    }

    /// The bytes of answers held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// How many answers are held.
    pub(crate) fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// For a `GET` of a route the model keeps: the held answer when it is current (`Ok`), or
    /// what to pass to [`ReadCache::keep`] with the answer read from the store (`Err`). `None`
    /// for any other request.
    pub(crate) fn lookup(
        &self,
        tower: &Tower,
        route: Option<Route<'_>>,
        method: &http::Method,
        path_and_query: &str,
    ) -> Option<Result<Bytes, Pending>> {
        if *method != http::Method::GET || self.max_bytes == 0 {
            return None;
        }
        let route = route?;
        let key = match route {
            Route::Flag(_) | Route::AppFlags(_) | Route::Apps => path_and_query,
            _ => return None,
        };
        let held = {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            entries.get(key).map(|e| (e.depends, e.body.clone()))
        };
        if let Some((depends, body)) = &held {
            let current = match *depends {
                Depends::App(app, v) => tower.app_version(app) == v,
                Depends::AllApps(v) => tower.apps_version() == v,
            };
            if current {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Some(Ok(body.clone()));
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let kind = match route {
            Route::Flag(_) => {
                let known = match held {
                    Some((Depends::App(app, _), _)) => Some((app, tower.app_version(app))),
                    _ => None,
                };
                Kind::Flag(known, tower.apps_version())
            }
            Route::AppFlags(raw) => match raw.parse::<i64>() {
                Ok(id) if id > 0 => {
                    let app = AppId::new(id);
                    Kind::App(app, tower.app_version(app))
                }
                _ => return None,
            },
            _ => Kind::AllApps(tower.apps_version()),
        };
        Some(Err(Pending { key: key.to_owned(), kind }))
    }

    /// Keeps a `200` answer read after `pending` was taken.
    pub(crate) fn keep(&self, tower: &Tower, pending: Pending, body: &Bytes) {
        let depends = match pending.kind {
            Kind::App(app, v) => Depends::App(app, v),
            Kind::AllApps(v) => Depends::AllApps(v),
            Kind::Flag(known, all_before) => {
                let Some(app) = flag_app(body) else { return };
                match known {
                    Some((a, v)) if a == app => Depends::App(app, v),
                    // Nothing changed anywhere during the read: the app's version now is the
                    // one from before it.
                    _ if tower.apps_version() == all_before => {
                        Depends::App(app, tower.app_version(app))
                    }
                    _ => return,
                }
            }
        };
        let size = pending.key.len() + body.len();
        if size > self.max_bytes {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.bytes.load(Ordering::Relaxed) + size > self.max_bytes {
            entries.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
        let key_len = pending.key.len();
        if let Some(old) = entries.insert(pending.key, Entry { depends, body: body.clone() }) {
            self.bytes.fetch_sub(key_len + old.body.len(), Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }
}

/// The app of a flag's answer (`{"payload": {"app_id": …}}`), read only when it is kept.
fn flag_app(body: &[u8]) -> Option<AppId> {
    #[derive(serde::Deserialize)]
    struct Answer {
        payload: Flag,
    }
    #[derive(serde::Deserialize)]
    struct Flag {
        app_id: i64,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    (answer.payload.app_id > 0).then(|| AppId::new(answer.payload.app_id))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn flag_answer(app: i64, filler: usize) -> Bytes {
        Bytes::from(format!(r#"{{"payload":{{"app_id":{app},"x":"{}"}}}}"#, "x".repeat(filler)))
    }

    #[tokio::test]
    async fn answers_are_kept_within_the_bound_and_start_over_when_full() {
        let store = Arc::new(flagtower_core::InMemoryStore::new());
        let tower = Tower::builder(store).start().await.unwrap();
        let cache = ReadCache::new(3000);
        let get = &http::Method::GET;
        for id in ["1", "2"] {
            let target = format!("/api/flags/{id}");
            let Some(Err(pending)) = cache.lookup(&tower, Route::find(&target), get, &target)
            else {
                panic!("a miss")
            };
            cache.keep(&tower, pending, &flag_answer(1, 1200));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.bytes() <= 3000, "{}", cache.bytes());
        let target = "/api/flags/1";
        assert!(matches!(cache.lookup(&tower, Route::find(target), get, target), Some(Ok(_))));
        // A third does not fit: the model starts over with it alone.
        let target = "/api/flags/3";
        let Some(Err(pending)) = cache.lookup(&tower, Route::find(target), get, target) else {
            panic!("a miss")
        };
        cache.keep(&tower, pending, &flag_answer(1, 1200));
        assert_eq!(cache.len(), 1);
        assert!(cache.bytes() <= 3000, "{}", cache.bytes());
        // One larger than the whole bound is not kept at all.
        let target = "/api/flags/4";
        let Some(Err(pending)) = cache.lookup(&tower, Route::find(target), get, target) else {
            panic!("a miss")
        };
        cache.keep(&tower, pending, &flag_answer(1, 4000));
        assert_eq!(cache.len(), 1);
        // Off: nothing is looked up.
        assert!(ReadCache::new(0).lookup(&tower, Route::find(target), get, target).is_none());
        tower.shutdown().await;
    }
}

//! What this process knows of each app's changes, as versions to tag read caches with: a
//! version moves whenever this process learns that the app changed, at once for its own
//! commits (before the write returns) and, for a store other processes share, when the live
//! feed reads their changes (at once with PostgreSQL's NOTIFY, else at its next poll).
//!
//! A reader that takes an app's version *before* it reads the store, and keeps what it read
//! under that version, never serves data older than what the version says: a change it missed
//! moves the version after the read, which makes the kept copy stale.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::AppId;

/// An app's version, or of all apps ([`crate::Tower::apps_version`]). Only compared for
/// equality, within one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(u64);

#[derive(Debug, Default)]
pub(crate) struct Versions {
    /// Moved by every change of any app (created, renamed, deleted, a new revision).
    all: AtomicU64,
    /// Each app's: the value of `all` at its last change (0: none seen since start).
    apps: RwLock<HashMap<AppId, u64>>,
}

impl Versions {
    /// `app` changed (this process committed it, or the feed saw it).
    pub(crate) fn changed(&self, app: AppId) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let v = self.all.fetch_add(1, Ordering::SeqCst) + 1;
        apps.insert(app, v);
    }

    pub(crate) fn app(&self, app: AppId) -> Version {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        Version(apps.get(&app).copied().unwrap_or(0))
    }

    pub(crate) fn all(&self) -> Version {
        Version(self.all.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_moves_its_app_and_all_but_no_other() {
        let v = Versions::default();
        let (a, b) = (AppId::new(1), AppId::new(2));
        let (va, vb, all) = (v.app(a), v.app(b), v.all());
        v.changed(a);
        assert_ne!(v.app(a), va);
        assert_eq!(v.app(b), vb);
        assert_ne!(v.all(), all);
        let again = v.app(a);
        v.changed(a);
        assert_ne!(v.app(a), again);
    }
}

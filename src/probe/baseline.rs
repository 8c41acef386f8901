//! What a check compares against: the first DNS answer set, certificate or page it saw,
//! until someone accepts a change. Kept in memory and, when the agent has a store, in the
//! embedded database, so a restart neither forgets a baseline nor takes a defaced page as one.

use std::sync::{Arc, Mutex, OnceLock};

use crate::store::Store;

#[derive(Debug, Default)]
pub struct Baseline {
    value: Mutex<Option<String>>,
    persist: OnceLock<(Arc<Store>, String)>,
}

/// How the current value compares with the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// There was none; the current value became it (when it was allowed to).
    First,
    Same,
    /// Differs; holds the baseline it differs from.
    Changed(String),
}

impl Baseline {
    /// Binds the baseline to the store under `key` and loads what the store holds. Only the
    /// first call counts: the running check keeps one binding for its life.
    pub fn attach(&self, store: Arc<Store>, key: String) {
        if self.persist.get().is_some() {
            return;
        }
        match store.baseline(&key) {
            Ok(Some(stored)) => *self.lock() = Some(stored),
            Ok(None) => {
                if let Some(current) = self.lock().clone() {
                    persist(&store, &key, &current);
                }
            }
            Err(error) => {
                tracing::warn!(key, %error, "cannot read a baseline; keeping it in memory")
            }
        }
        let _ = self.persist.set((store, key));
    }

    /// Compares `current` with the baseline; with none yet, `current` becomes it if `settable`.
    pub fn compare(&self, current: &str, settable: bool) -> Comparison {
        let mut value = self.lock();
        match &*value {
            Some(seen) if seen == current => Comparison::Same,
            Some(seen) => Comparison::Changed(seen.clone()),
            None => {
                if settable {
                    *value = Some(current.to_owned());
                    if let Some((store, key)) = self.persist.get() {
                        persist(store, key, current);
                    }
                }
                Comparison::First
            }
        }
    }

    /// Forgets the baseline: the next value becomes it.
    pub fn clear(&self) {
        *self.lock() = None;
        if let Some((store, key)) = self.persist.get() {
            if let Err(error) = store.clear_baseline(key) {
                tracing::warn!(key, %error, "cannot clear a stored baseline");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Poisoning needs a panic while the lock is held, which nothing here can cause.
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A baseline is rare to write (first sight, after an accept): one short synchronous commit.
fn persist(store: &Store, key: &str, value: &str) {
    if let Err(error) = store.set_baseline(key, value) {
        tracing::warn!(key, %error, "cannot store a baseline; keeping it in memory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_becomes_the_baseline_and_survives_a_new_process() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let b = Baseline::default();
        b.attach(Arc::clone(&store), "portal/http".into());
        assert_eq!(b.compare("trang chủ", true), Comparison::First);
        assert_eq!(b.compare("trang chủ", true), Comparison::Same);

        // A restart: a new probe, the same store.
        let after_restart = Baseline::default();
        after_restart.attach(Arc::clone(&store), "portal/http".into());
        assert_eq!(
            after_restart.compare("HACKED", true),
            Comparison::Changed("trang chủ".into())
        );
        after_restart.clear();
        let again = Baseline::default();
        again.attach(store, "portal/http".into());
        assert_eq!(again.compare("trang mới", true), Comparison::First);
    }

    #[test]
    fn an_unsettable_first_value_does_not_become_the_baseline() {
        let b = Baseline::default();
        assert_eq!(b.compare("NXDOMAIN", false), Comparison::First);
        assert_eq!(b.compare("127.0.10.1", true), Comparison::First);
        assert_eq!(b.compare("127.0.10.1", true), Comparison::Same);
    }
}

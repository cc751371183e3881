//! The token file and the revocation list: loaded into the core at start, reloaded when they
//! change, failing closed.
//!
//! Whether the router requires tokens is decided here, from configuration, and never undone
//! while it runs: a JWT key, [`AuthConfig::require_tokens`], or a token file that exists (at
//! start or later) require them. A reload that finds the token file missing, blank (0 bytes, as
//! during a rewrite that is not atomic) or unreadable keeps the tokens loaded before and warns;
//! a file that parses and holds no tokens is taken at its word, and the router then refuses
//! everyone with a clear error. The revocation list is kept the same way: a blank or missing
//! list never un-revokes anything once a list was loaded.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::Core;
use super::tokens::{self, TokenFile, TokenFileError, TokenFileState};
use super::{AuthConfig, Shared};
use crate::core::auth::CpskToken;

/// How often the token files are checked for changes.
const POLL: Duration = Duration::from_millis(500);

/// A file's modification time and length when last read (both, so a rewrite within one clock
/// tick is still noticed).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: Option<&PathBuf>) -> Stamp {
    let m = std::fs::metadata(p?).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// What was read last, for the watcher.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    tokens: Stamp,
    revoked: Stamp,
    /// The token file existed at some point (its disappearance is then a warning).
    token_file_seen: bool,
    /// A revocation list was loaded.
    revoked_loaded: bool,
}

/// Loads the JWT settings, the token file and the revocation list into `core` at start.
pub(crate) fn load(core: &mut Core, cfg: &AuthConfig) -> Result<Mutex<Watch>, TokenFileError> {
    let mut watch = Watch {
        tokens: stamp(cfg.token_file.as_ref()),
        revoked: stamp(cfg.revoked_file.as_ref()),
        ..Watch::default()
    };
    let auth = core.auth_mut();
    auth.set_jwt(cfg.jwt.clone());
    auth.set_required(cfg.require_tokens);
    if let Some(path) = &cfg.token_file {
        match TokenFile::read(path)? {
            TokenFileState::Missing => {}
            TokenFileState::Blank => {
                watch.token_file_seen = true;
                auth.set_required(true);
                tracing::warn!(file = %path.display(), "the token file is empty: tokens are required and none is accepted yet");
            }
            TokenFileState::Loaded(f) => {
                watch.token_file_seen = true;
                auth.set_required(true);
                auth.set_cpsk(f.cpsk_table(path, tokens::unix_now())?);
            }
        }
    }
    if let Some(path) = &cfg.revoked_file
        && let Some(list) = tokens::load_revoked(path)?
    {
        watch.revoked_loaded = true;
        auth.set_revoked(list);
    }
    let auth = core.auth();
    if auth.required() {
        tracing::info!(
            tokens = auth.cpsk().len(),
            jwt = cfg.jwt.is_some(),
            "authentication on: HELLO must carry a valid token"
        );
        if auth.cpsk().is_empty() && cfg.jwt.is_none() {
            tracing::warn!(
                "tokens are required and none is configured: every client is refused until one is added (clasp token create)"
            );
        }
    } else {
        tracing::info!("open mode: no tokens or keys configured, every client may do everything");
    }
    Ok(Mutex::new(watch))
}

/// Reloads the token file and the revocation list when they change, and brings live sessions
/// in line (ended when their token is gone, scopes narrowed or widened as edited).
pub(crate) async fn watch(shared: Arc<Shared>) {
    let cfg = &shared.config.auth;
    if cfg.token_file.is_none() && cfg.revoked_file.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let (tokens_now, revoked_now) = (
            stamp(cfg.token_file.as_ref()),
            stamp(cfg.revoked_file.as_ref()),
        );
        let mut w = shared.auth_watch.lock();
        let tokens_changed = w.tokens != tokens_now;
        let revoked_changed = w.revoked != revoked_now;
        if !tokens_changed && !revoked_changed {
            continue;
        }
        // Whatever the outcome, do not retry until a file changes again.
        w.tokens = tokens_now;
        w.revoked = revoked_now;
        let tokens = match (&cfg.token_file, tokens_changed) {
            (Some(p), true) => read_tokens(p, &mut w),
            _ => Reload::Keep,
        };
        let revoked = match (&cfg.revoked_file, revoked_changed) {
            (Some(p), true) => read_revoked(p, &mut w),
            _ => None,
        };
        drop(w);
        shared.with_core(|core, now| {
            let auth = core.auth_mut();
            match tokens {
                Reload::Keep => {}
                Reload::Require => auth.set_required(true),
                Reload::Table(table) => {
                    auth.set_required(true);
                    auth.set_cpsk(table);
                    tracing::info!(tokens = auth.cpsk().len(), "token file reloaded");
                    if auth.cpsk().is_empty() && cfg.jwt.is_none() {
                        tracing::warn!(
                            "the token file holds no valid token: every client is refused until one is added"
                        );
                    }
                }
            }
            if let Some(list) = revoked {
                core.auth_mut().set_revoked(list);
                tracing::info!("revocation list reloaded");
            }
            core.revalidate(now);
        });
    }
}

/// What a reload of the token file does.
enum Reload {
    /// Keep the tokens in force.
    Keep,
    /// Keep them, and require tokens (a blank token file appeared).
    Require,
    /// Replace them.
    Table(HashMap<String, CpskToken>),
}

fn read_tokens(path: &Path, w: &mut Watch) -> Reload {
    let keep = "the tokens loaded before stay in force";
    match TokenFile::read(path) {
        Ok(TokenFileState::Loaded(f)) => {
            w.token_file_seen = true;
            match f.cpsk_table(path, tokens::unix_now()) {
                Ok(t) => Reload::Table(t),
                Err(e) => {
                    tracing::error!(error = %e, "token file not reloaded; {keep}");
                    Reload::Require
                }
            }
        }
        Ok(TokenFileState::Missing) if w.token_file_seen => {
            tracing::warn!(file = %path.display(), "the token file is gone; {keep} (restart the router to change that)");
            Reload::Keep
        }
        Ok(TokenFileState::Missing) => Reload::Keep,
        Ok(TokenFileState::Blank) => {
            w.token_file_seen = true;
            tracing::warn!(file = %path.display(), "the token file is empty (being rewritten?); {keep}");
            Reload::Require
        }
        Err(e) => {
            tracing::error!(error = %e, "token file not reloaded; {keep}");
            Reload::Require
        }
    }
}

/// The new revocation list, or `None` (with a warning) to keep the one in force.
fn read_revoked(path: &Path, w: &mut Watch) -> Option<HashSet<String>> {
    match tokens::load_revoked(path) {
        Ok(Some(list)) => {
            w.revoked_loaded = true;
            Some(list)
        }
        Ok(None) => {
            if w.revoked_loaded {
                tracing::warn!(file = %path.display(), "the revocation list is empty or gone; the revocations loaded before stay in force (write a `#` comment line for an empty list)");
            }
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "revocation list not reloaded; the previous one stays in force");
            None
        }
    }
}

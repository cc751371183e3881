//! The token file: CPSK tokens with their scopes, kept in the data directory (`tokens.json`),
//! managed by `clasp token` and loaded (and reloaded when it changes) by the router.
//!
//! The JSON layout is the reference's `clasp token` file:
//! `{"tokens": {"cpsk_…": {"token", "subject"?, "scopes": […], "expires_at"? (Unix s),
//! "created_at" (Unix s)}}}`. The reference router's line format is read too: one token per
//! line, optionally followed by a space and comma-separated scopes (none = `admin:/**`), `#`
//! comments. Files are written to a temporary file created with mode 0600 and renamed into place,
//! so a token file is never readable by others, not even for a moment.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::core::auth::{CpskToken, ScopeError, Scopes};

/// The token file's name inside a data directory.
pub const TOKEN_FILE: &str = "tokens.json";

/// Why a token file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path}: not a token file: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A token's scopes do not parse.
    #[error("{path}: token {token}: {source}")]
    Scope {
        /// The file.
        path: PathBuf,
        /// The token (shortened).
        token: String,
        /// The cause.
        source: ScopeError,
    },
    /// A token does not look like `cpsk_` + 32 hex digits.
    #[error("{path}: `{token}` is not a CPSK token (cpsk_ followed by 32 hex digits)")]
    Format {
        /// The file.
        path: PathBuf,
        /// The token (shortened).
        token: String,
    },
}

/// One token as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token itself.
    pub token: String,
    /// Who it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// What it allows (`read:/lights/**`, …).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When it stops being valid (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When it was made (Unix seconds).
    #[serde(default)]
    pub created_at: u64,
}

/// The contents of a token file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFile {
    /// Tokens by their text.
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenRecord>,
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new random token: `cpsk_` + 32 lowercase hex digits from the OS random generator.
pub fn generate() -> String {
    format!("cpsk_{}", uuid::Uuid::new_v4().simple())
}

/// Whether `t` has the shape of a CPSK token.
pub fn is_cpsk(t: &str) -> bool {
    t.strip_prefix("cpsk_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `t` shortened for messages: the prefix and the first hex digits.
pub fn short(t: &str) -> String {
    t.chars().take(13).collect::<String>() + "…"
}

/// What the router found when it read the token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFileState {
    /// There is no file.
    Missing,
    /// The file holds nothing but white space (0 bytes while it is being rewritten, say).
    Blank,
    /// The file's tokens.
    Loaded(TokenFile),
}

impl TokenFile {
    /// Reads a token file for the router, telling a missing or blank file apart from one
    /// that holds no tokens (`{"tokens": {}}`), so a file caught mid-rewrite is never taken for
    /// "no tokens".
    pub fn read(path: &Path) -> Result<TokenFileState, TokenFileError> {
        match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFileState::Missing),
            Err(source) => Err(TokenFileError::Io {
                path: path.to_owned(),
                source,
            }),
            Ok(t) if t.trim().is_empty() => Ok(TokenFileState::Blank),
            Ok(_) => TokenFile::load(path).map(TokenFileState::Loaded),
        }
    }

    /// Reads a token file (JSON, or the reference router's line format); a missing file is
    /// an empty one.
    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenFile::default()),
            Err(source) => {
                return Err(TokenFileError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let file = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|source| TokenFileError::Json {
                path: path.to_owned(),
                source,
            })?
        } else {
            TokenFile::from_lines(&text)
        };
        // Check every token now, so a bad file is reported when it is loaded, not later.
        file.cpsk_table(path, 0)?;
        Ok(file)
    }

    fn from_lines(text: &str) -> TokenFile {
        let mut tokens = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (token, scopes) = match line.split_once(char::is_whitespace) {
                Some((t, rest)) => (t, rest.trim()),
                None => (line, ""),
            };
            let scopes = scopes
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            tokens.insert(
                token.to_owned(),
                TokenRecord {
                    token: token.to_owned(),
                    subject: None,
                    scopes,
                    expires_at: None,
                    created_at: 0,
                },
            );
        }
        TokenFile { tokens }
    }

    /// Writes the file atomically with mode 0600, creating its directory if needed.
    pub fn save(&self, path: &Path) -> Result<(), TokenFileError> {
        let mut json =
            serde_json::to_string_pretty(self).map_err(|source| TokenFileError::Json {
                path: path.to_owned(),
                source,
            })?;
        json.push('\n');
        write_private(path, json.as_bytes()).map_err(|source| TokenFileError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The router's CPSK table; tokens without scopes get `admin:/**` as in the reference.
    /// `now` (Unix seconds) is only used to leave out tokens that have already expired.
    pub fn cpsk_table(
        &self,
        path: &Path,
        now: u64,
    ) -> Result<HashMap<String, CpskToken>, TokenFileError> {
        let mut out = HashMap::new();
        for (token, rec) in &self.tokens {
            if !token.starts_with("cpsk_") {
                return Err(TokenFileError::Format {
                    path: path.to_owned(),
                    token: short(token),
                });
            }
            let scopes = if rec.scopes.is_empty() {
                Scopes::admin()
            } else {
                Scopes::from_iter_str(rec.scopes.iter().map(String::as_str)).map_err(|source| {
                    TokenFileError::Scope {
                        path: path.to_owned(),
                        token: short(token),
                        source,
                    }
                })?
            };
            if rec.expires_at.is_some_and(|e| e <= now) {
                continue;
            }
            out.insert(
                token.clone(),
                CpskToken {
                    subject: rec.subject.clone(),
                    scopes,
                    expires_at: rec.expires_at.map(|e| e.saturating_mul(1_000_000)),
                },
            );
        }
        Ok(out)
    }

    /// The tokens that are `t` or start with it (a prefix of at least 9 characters).
    pub fn find(&self, t: &str) -> Vec<String> {
        if self.tokens.contains_key(t) {
            return vec![t.to_owned()];
        }
        if t.len() < 9 {
            return Vec::new();
        }
        self.tokens
            .keys()
            .filter(|k| k.starts_with(t))
            .cloned()
            .collect()
    }
}

/// Writes `bytes` to `path` so that only its owner can ever read it: into a temporary file
/// created with mode 0600, synced, then renamed into place (creating the directory if needed).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a revocation list: one token, `jti` or subject per line, `#` comments. A missing file
/// is `None`; so is a blank one (0 bytes, as while it is rewritten), which the router does not
/// take for "nothing is revoked" once it has a list (a list with nothing revoked says so with a
/// comment line).
pub fn load_revoked(path: &Path) -> Result<Option<HashSet<String>>, TokenFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => Ok(Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_reference_shape_and_are_unique() {
        let tokens: HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(tokens.len(), 1000);
        assert!(tokens.iter().all(|t| is_cpsk(t) && t.len() == 37));
    }

    #[test]
    fn save_load_round_trip_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("sub").join(TOKEN_FILE);
        let mut f = TokenFile::default();
        let t = generate();
        f.tokens.insert(
            t.clone(),
            TokenRecord {
                token: t.clone(),
                subject: Some("desk".into()),
                scopes: vec!["read:/**".into(), "write:/lights/**".into()],
                expires_at: Some(4_000_000_000),
                created_at: 1,
            },
        );
        f.save(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(TokenFile::load(&path).ok(), Some(f.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode())
                .unwrap_or_default();
            assert_eq!(mode & 0o777, 0o600);
        }
        let table = f.cpsk_table(&path, 0).unwrap_or_default();
        assert!(
            table[&t]
                .scopes
                .allows(crate::core::auth::Action::Write, "/lights/1")
        );
        assert_eq!(f.find(&t[..12]), vec![t.clone()]);
        assert!(f.find("cpsk_").is_empty());
    }

    #[test]
    fn reference_line_format_is_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tokens.txt");
        let a = generate();
        let b = generate();
        std::fs::write(
            &path,
            format!("# comment\n{a} read:/a/**,write:/a/b\n\n{b}\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let f = TokenFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let table = f.cpsk_table(&path, 0).unwrap_or_default();
        assert!(
            !table[&a]
                .scopes
                .allows(crate::core::auth::Action::Write, "/a/c")
        );
        assert!(
            table[&b]
                .scopes
                .allows(crate::core::auth::Action::Admin, "/x")
        );
    }
}

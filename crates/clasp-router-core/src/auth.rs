//! Authentication and authorisation decisions, with no I/O: tokens, keys and the time are
//! handed in by the shell.
//!
//! * **Open mode** (nothing configured): every session may do everything and tokens in HELLO
//!   are ignored, as in the reference.
//! * **Authenticated mode**: HELLO must carry a token that is accepted, and the session gets
//!   that token's [`Scopes`]. It is decided by configuration ([`Auth::set_required`], a JWT key,
//!   a CPSK table that held a token), never by how many tokens are left: once required, tokens
//!   stay required even when the last one is revoked or expires, and a router that requires
//!   tokens but has none refuses everyone with a clear error ([`AuthError::NoneConfigured`]).
//!
//! Two kinds of token are accepted: **CPSK** pre-shared keys (`cpsk_` + 32 hex digits, looked
//! up exactly in a table, compatible with the reference) and **JWT**s (HS256 with a shared
//! secret, EdDSA or RS256 with configured public keys), whose `scope` claim lists the scopes and
//! whose `exp`, `nbf`, `aud` and `iss` are checked against the time passed in. Every JWT opens
//! one session only (replay protection): it is remembered by its `jti`, or by its signature when
//! it has none, for its lifetime; revoked token ids and `jti`s are refused.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use clasp_proto::ErrorCode;
use clasp_proto::pattern::{Pattern, PatternError};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// What a scope allows: `admin` implies `write`, `write` implies `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read: GET, SUBSCRIBE, QUERY, snapshots.
    Read,
    /// Write: SET, PUBLISH, BUNDLE contents, ANNOUNCE (and read).
    Write,
    /// Everything.
    Admin,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        match s.to_ascii_lowercase().as_str() {
            "read" | "r" => Some(Action::Read),
            "write" | "w" => Some(Action::Write),
            "admin" | "a" | "*" => Some(Action::Admin),
            _ => None,
        }
    }

    /// The canonical lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Admin => "admin",
        }
    }
}

/// Why a scope could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// No `:` between action and pattern.
    #[error("scope `{0}` is not ACTION:PATTERN (for example read:/lights/**)")]
    Syntax(String),
    /// The action is not read, write or admin.
    #[error("scope `{0}`: unknown action (expected read, write or admin)")]
    Action(String),
    /// The pattern does not compile.
    #[error("scope `{scope}`: {error}")]
    Pattern {
        /// The scope text.
        scope: String,
        /// Why the pattern is invalid.
        error: PatternError,
    },
}

/// One scope: an action on the addresses of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    action: Action,
    pattern: Pattern,
}

impl Scope {
    /// Parses `action:pattern` (`read:/lights/**`, `w:/cue/*`, `admin:/**`).
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let s = s.trim();
        let (action, pattern) = s
            .split_once(':')
            .ok_or_else(|| ScopeError::Syntax(s.to_owned()))?;
        let action = Action::parse(action.trim()).ok_or_else(|| ScopeError::Action(s.into()))?;
        let pattern = Pattern::compile(pattern.trim()).map_err(|error| ScopeError::Pattern {
            scope: s.to_owned(),
            error,
        })?;
        Ok(Scope { action, pattern })
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.action.name(), self.pattern)
    }
}

/// The scopes of a session. An action is allowed if any scope allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses a list separated by commas or whitespace.
    pub fn parse(list: &str) -> Result<Scopes, ScopeError> {
        Scopes::from_iter_str(list.split([',', ' ', '\t', '\n']).filter(|s| !s.is_empty()))
    }

    /// Parses each string as one scope.
    pub fn from_iter_str<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Scopes, ScopeError> {
        items
            .into_iter()
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Scopes)
    }

    /// Everything (`admin:/**`), what a CPSK token without scopes gets, as in the reference.
    pub fn admin() -> Scopes {
        Scopes(vec![Scope {
            action: Action::Admin,
            pattern: Pattern::compile("/**").expect("`/**` is a valid pattern"),
        }])
    }

    /// The scopes.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether there are none (a session with no scopes may do nothing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `action` on `address` is allowed.
    pub fn allows(&self, action: Action, address: &str) -> bool {
        self.0
            .iter()
            .any(|s| s.action >= action && s.pattern.matches(address))
    }

    /// Whether `action` on every address `pattern` can match is allowed by one scope (pattern
    /// inclusion, not the pattern text treated as an address: `read:/a/*` does not allow
    /// subscribing to `/a/**`).
    pub fn allows_pattern(&self, action: Action, pattern: &Pattern) -> bool {
        self.0
            .iter()
            .any(|s| s.action >= action && pattern.is_subset_of(&s.pattern))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

/// The kind of token a grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A CPSK token from the table (it ends when removed from the table).
    Cpsk,
    /// A JWT.
    Jwt,
}

/// What an accepted token grants a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Where it came from.
    pub kind: TokenKind,
    /// Identifies the token for revocation: the CPSK token, or the JWT's `jti` (else its
    /// subject).
    pub token_id: String,
    /// Who the token was issued to, if it says.
    pub subject: Option<String>,
    /// What the session may do.
    pub scopes: Scopes,
    /// When the grant ends (wall µs since the Unix epoch).
    pub expires_at: Option<u64>,
}

/// Why a token was refused. Each maps to ERROR 300, or 302 for expiry, with a clear text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in HELLO.
    #[error("Authentication required: send a token in HELLO")]
    Missing,
    /// Not a CPSK token and not a JWT.
    #[error("Unrecognized token format")]
    Format,
    /// A CPSK token that is not registered.
    #[error("Invalid token: token not found")]
    Unknown,
    /// The token's lifetime is over.
    #[error("Token has expired")]
    Expired,
    /// A JWT whose `nbf` is in the future.
    #[error("Token not valid yet (nbf)")]
    NotYetValid,
    /// The token was revoked.
    #[error("Token has been revoked")]
    Revoked,
    /// A JWT `jti` seen before within its lifetime.
    #[error("Token already used: a JWT opens one session only (replay)")]
    Replayed,
    /// A JWT that does not verify or does not fit the configuration.
    #[error("Invalid token: {0}")]
    Jwt(String),
    /// Tokens became required while the session was open without one.
    #[error("Authentication is now required on this router; reconnect with a token")]
    NowRequired,
    /// Tokens are required and none is configured (every token was revoked or has expired).
    #[error(
        "Authentication required, and this router has no valid token configured: ask its operator for one (clasp token create)"
    )]
    NoneConfigured,
}

impl AuthError {
    /// How `/metrics` counts this refusal.
    pub fn kind(&self) -> crate::metrics::RefusalKind {
        use crate::metrics::RefusalKind;
        match self {
            AuthError::Missing | AuthError::NowRequired => RefusalKind::AuthMissing,
            AuthError::Format | AuthError::Unknown => RefusalKind::AuthUnknown,
            AuthError::Expired => RefusalKind::AuthExpired,
            AuthError::Revoked => RefusalKind::AuthRevoked,
            AuthError::Replayed => RefusalKind::AuthReplayed,
            AuthError::NotYetValid | AuthError::Jwt(_) => RefusalKind::AuthInvalid,
            AuthError::NoneConfigured => RefusalKind::AuthNoneConfigured,
        }
    }

    /// The ERROR code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Expired => ErrorCode::TokenExpired,
            _ => ErrorCode::Unauthorized,
        }
    }
}

/// A registered CPSK token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpskToken {
    /// Who it was issued to.
    pub subject: Option<String>,
    /// What it allows.
    pub scopes: Scopes,
    /// When it stops being valid (wall µs), if ever.
    pub expires_at: Option<u64>,
}

/// JWT verification settings.
#[derive(Clone)]
pub struct JwtConfig {
    /// Secret for HS256 tokens; `None` refuses HS256.
    pub hs256_secret: Option<Vec<u8>>,
    /// Public keys for asymmetric tokens, each with its algorithm (EdDSA or RS256).
    pub public_keys: Vec<(Algorithm, DecodingKey)>,
    /// Required `aud`: the token's `aud` must be this string, or a list with this string as
    /// one of its elements (compared exactly).
    pub audience: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Refuse tokens without `exp` (default true).
    pub require_exp: bool,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Longest time a `jti` is remembered (its token's lifetime, at most this).
    pub replay_window: Duration,
    /// Most `jti`s remembered at once; past it, tokens with a new `jti` are refused rather than
    /// letting an old one be replayed.
    pub max_tracked_jti: usize,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            hs256_secret: None,
            public_keys: Vec::new(),
            audience: None,
            issuer: None,
            require_exp: true,
            leeway: Duration::from_secs(30),
            replay_window: Duration::from_secs(24 * 3600),
            max_tracked_jti: 1_000_000,
        }
    }
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("hs256", &self.hs256_secret.is_some())
            .field(
                "public_keys",
                &self.public_keys.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            )
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("require_exp", &self.require_exp)
            .finish()
    }
}

/// The claims we read from a JWT.
#[derive(Debug, serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    scope: Option<OneOrMany>,
    #[serde(default)]
    scopes: Option<OneOrMany>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The items of a scope claim: a list, or one string of items separated by spaces (as in
    /// OAuth's `scope`) or commas.
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => s.split([' ', ',']).filter(|x| !x.is_empty()).collect(),
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Three dot-separated parts, of a bounded size.
fn looks_like_jwt(token: &str) -> bool {
    token.len() <= 16 * 1024 && token.split('.').count() == 3
}

/// The router's authenticator: the CPSK table, the JWT settings, the revocation list and the
/// `jti`s already used.
#[derive(Debug, Default)]
pub struct Auth {
    /// Tokens are required (set by configuration, or once a token was configured).
    required: bool,
    cpsk: HashMap<String, CpskToken>,
    jwt: Option<JwtConfig>,
    revoked: HashSet<String>,
    /// `jti:<jti>` (or `sha256:<hash of the signed part>` for a JWT without one) → when it
    /// may be forgotten (wall µs).
    seen_jti: HashMap<String, u64>,
}

impl Auth {
    /// Open mode: nothing configured.
    pub fn open() -> Auth {
        Auth::default()
    }

    /// Whether HELLO must carry a valid token: required by configuration, by a JWT key, or
    /// because the CPSK table has held a token. It does not turn off when the last token goes.
    pub fn required(&self) -> bool {
        self.required || self.jwt.is_some()
    }

    /// Requires tokens (or, with `false`, returns to open mode unless a JWT key is set). The
    /// shell calls it from its configuration; a non-empty CPSK table requires tokens too.
    pub fn set_required(&mut self, required: bool) {
        self.required = required;
    }

    /// Replaces the CPSK table. A table with a token makes tokens required from then on; an
    /// empty one does not make the router open again.
    pub fn set_cpsk(&mut self, tokens: HashMap<String, CpskToken>) {
        self.required |= !tokens.is_empty();
        self.cpsk = tokens;
    }

    /// Whether any token can be accepted at all (a CPSK token or a JWT key).
    fn any_configured(&self) -> bool {
        !self.cpsk.is_empty() || self.jwt.is_some()
    }

    /// `grant` as the configuration now has it: a CPSK token's current scopes, subject and
    /// expiry (its table entry may have been edited since the session began); `None` when
    /// nothing changed or the grant is not a CPSK token (a JWT's claims cannot change).
    pub fn refreshed(&self, grant: &Grant) -> Option<Grant> {
        if grant.kind != TokenKind::Cpsk {
            return None;
        }
        let t = self.cpsk.get(&grant.token_id)?;
        if t.scopes == grant.scopes
            && t.subject == grant.subject
            && t.expires_at == grant.expires_at
        {
            return None;
        }
        Some(Grant {
            kind: TokenKind::Cpsk,
            token_id: grant.token_id.clone(),
            subject: t.subject.clone(),
            scopes: t.scopes.clone(),
            expires_at: t.expires_at,
        })
    }

    /// The CPSK table.
    pub fn cpsk(&self) -> &HashMap<String, CpskToken> {
        &self.cpsk
    }

    /// Sets (or with `None` removes) JWT verification.
    pub fn set_jwt(&mut self, jwt: Option<JwtConfig>) {
        self.jwt = jwt;
    }

    /// Replaces the revocation list (CPSK tokens, JWT `jti`s or subjects).
    pub fn set_revoked(&mut self, revoked: HashSet<String>) {
        self.revoked = revoked;
    }

    /// Checks the token of a HELLO at wall time `now` (µs).
    pub fn authenticate(&mut self, token: Option<&str>, now: u64) -> Result<Grant, AuthError> {
        if !self.any_configured() {
            return Err(AuthError::NoneConfigured);
        }
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(AuthError::Missing);
        };
        if token.starts_with("cpsk_") {
            return self.cpsk_grant(token, now);
        }
        if looks_like_jwt(token) {
            return self.jwt(token, now);
        }
        Err(AuthError::Format)
    }

    /// The grant of a CPSK token, if it is registered and still valid.
    fn cpsk_grant(&self, token: &str, now: u64) -> Result<Grant, AuthError> {
        let t = self.cpsk.get(token).ok_or(AuthError::Unknown)?;
        let grant = Grant {
            kind: TokenKind::Cpsk,
            token_id: token.to_owned(),
            subject: t.subject.clone(),
            scopes: t.scopes.clone(),
            expires_at: t.expires_at,
        };
        self.still_valid(&grant, now)?;
        Ok(grant)
    }

    /// Whether a grant given earlier still holds at `now` (not revoked, not expired, and for a
    /// CPSK token still registered).
    pub fn still_valid(&self, grant: &Grant, now: u64) -> Result<(), AuthError> {
        if self.revoked.contains(&grant.token_id)
            || grant
                .subject
                .as_ref()
                .is_some_and(|s| self.revoked.contains(s))
        {
            return Err(AuthError::Revoked);
        }
        if grant.kind == TokenKind::Cpsk && !self.cpsk.contains_key(&grant.token_id) {
            return Err(AuthError::Revoked);
        }
        if grant.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    /// Forgets `jti`s whose tokens have expired.
    pub fn sweep(&mut self, now: u64) {
        self.seen_jti.retain(|_, until| *until > now);
    }

    /// Checks a token like [`Auth::authenticate`] without using it up: a JWT's `jti` is not
    /// recorded, so the same token can still open a session (or be checked again). For
    /// services beside the router, such as the rendezvous API, that accept the router's tokens.
    pub fn check(&self, token: &str, now: u64) -> Result<Grant, AuthError> {
        if !self.any_configured() {
            return Err(AuthError::NoneConfigured);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.starts_with("cpsk_") {
            return self.cpsk_grant(token, now);
        }
        if looks_like_jwt(token) {
            let (grant, jti) = self.verify_jwt(token, now)?;
            if jti.is_some_and(|j| self.revoked.contains(&j)) {
                return Err(AuthError::Revoked);
            }
            self.still_valid(&grant, now)?;
            return Ok(grant);
        }
        Err(AuthError::Format)
    }

    fn jwt(&mut self, token: &str, now: u64) -> Result<Grant, AuthError> {
        let bad = |m: &str| AuthError::Jwt(m.to_owned());
        let (grant, jti) = self.verify_jwt(token, now)?;
        if jti.as_ref().is_some_and(|j| self.revoked.contains(j)) {
            return Err(AuthError::Revoked);
        }
        // A token without a `jti` is remembered by a hash of its header and claims (what the
        // signature covers), so it is single-use too, whatever encoding its signature has.
        let key = match &jti {
            Some(j) => format!("jti:{j}"),
            None => {
                use sha2::Digest as _;
                let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
                let digest = sha2::Sha256::digest(signed.as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        };
        {
            let Some(cfg) = &self.jwt else {
                return Err(AuthError::Format);
            };
            if self.seen_jti.contains_key(&key) {
                return Err(AuthError::Replayed);
            }
            let window = now.saturating_add(cfg.replay_window.as_micros() as u64);
            let until = grant.expires_at.map_or(window, |e| e.min(window));
            let max = cfg.max_tracked_jti;
            if self.seen_jti.len() >= max {
                self.sweep(now);
                if self.seen_jti.len() >= max {
                    return Err(bad("too many tokens in use; try again later"));
                }
            }
            self.seen_jti.insert(key, until);
        }
        self.still_valid(&grant, now)?;
        Ok(grant)
    }

    /// Verifies a JWT's signature and claims; returns the grant and the `jti`, if any.
    fn verify_jwt(&self, token: &str, now: u64) -> Result<(Grant, Option<String>), AuthError> {
        let bad = |m: &str| AuthError::Jwt(m.to_owned());
        let Some(cfg) = &self.jwt else {
            return Err(AuthError::Format);
        };
        // The header is parsed by the library, which knows no `none` algorithm: such a token
        // fails here, as does any algorithm it does not know.
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            AuthError::Jwt(format!("unreadable header or unsupported algorithm ({e})"))
        })?;
        let key = match header.alg {
            Algorithm::HS256 => match &cfg.hs256_secret {
                Some(secret) => DecodingKey::from_secret(secret)
                    .map_err(|e| AuthError::Jwt(format!("HS256 secret unusable ({e})")))?,
                None => return Err(bad("HS256 tokens are not accepted by this router")),
            },
            alg @ (Algorithm::EdDSA | Algorithm::RS256) => cfg
                .public_keys
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, k)| k.clone())
                .ok_or_else(|| {
                    AuthError::Jwt(format!("{alg:?} tokens are not accepted by this router"))
                })?,
            alg => return Err(AuthError::Jwt(format!("algorithm {alg:?} is not accepted"))),
        };
        let mut validation = Validation::new(header.alg);
        // Time-based claims and the audience are checked below against the router's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| AuthError::Jwt(format!("signature or claims invalid ({e})")))?;
        let c = data.claims;
        let now_s = now as f64 / 1e6;
        let leeway = cfg.leeway.as_secs_f64();
        match c.exp {
            Some(exp) if exp + leeway <= now_s => return Err(AuthError::Expired),
            None if cfg.require_exp => return Err(bad("the token has no exp claim")),
            _ => {}
        }
        if c.nbf.is_some_and(|nbf| nbf - leeway > now_s) {
            return Err(AuthError::NotYetValid);
        }
        if let Some(want) = &cfg.audience {
            let ok = match &c.aud {
                Some(OneOrMany::One(a)) => a == want,
                Some(OneOrMany::Many(list)) => list.iter().any(|a| a == want),
                None => false,
            };
            if !ok {
                return Err(AuthError::Jwt(format!("audience must include `{want}`")));
            }
        }
        if let Some(want) = &cfg.issuer
            && c.iss.as_deref() != Some(want.as_str())
        {
            return Err(AuthError::Jwt(format!("issuer must be `{want}`")));
        }
        let mut items = Vec::new();
        for list in [&c.scope, &c.scopes].into_iter().flatten() {
            items.extend(list.items());
        }
        let scopes = Scopes::from_iter_str(items)
            .map_err(|e| AuthError::Jwt(format!("bad scope claim: {e}")))?;
        let expires_at = c.exp.map(|e| (e.max(0.0) * 1e6) as u64);
        let token_id = c.jti.clone().or_else(|| c.sub.clone()).unwrap_or_default();
        let grant = Grant {
            kind: TokenKind::Jwt,
            token_id,
            subject: c.sub,
            scopes,
            expires_at,
        };
        Ok((grant, c.jti))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_does_not_use_up_a_jwt_but_authenticate_does() {
        let secret = b"a secret of thirty-two bytes or more!!".to_vec();
        let mut auth = Auth::open();
        auth.set_jwt(Some(JwtConfig {
            hs256_secret: Some(secret.clone()),
            ..JwtConfig::default()
        }));
        let now = 1_700_000_000_000_000;
        let claims = serde_json::json!({"jti": "j1", "exp": 1_700_000_600, "scope": "write:/a/**"});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret).unwrap(),
        )
        .unwrap();
        for _ in 0..2 {
            let g = auth.check(&token, now).unwrap();
            assert!(g.scopes.allows(Action::Write, "/a/b"));
        }
        auth.authenticate(Some(&token), now).unwrap();
        assert!(matches!(
            auth.authenticate(Some(&token), now),
            Err(AuthError::Replayed)
        ));
        // Checking is still possible (the token is valid), and revocation applies to it.
        assert!(auth.check(&token, now).is_ok());
        auth.set_revoked(["j1".to_owned()].into());
        assert!(matches!(auth.check(&token, now), Err(AuthError::Revoked)));
        assert!(matches!(auth.check("", now), Err(AuthError::Missing)));
        assert!(matches!(
            auth.check("cpsk_nope", now),
            Err(AuthError::Unknown)
        ));
    }

    #[test]
    fn scopes_parse_and_allow() {
        let s = Scopes::parse("read:/**, write:/allowed/**  a:/admin/x").unwrap();
        assert!(s.allows(Action::Read, "/anything"));
        assert!(s.allows(Action::Write, "/allowed/x/y"));
        assert!(!s.allows(Action::Write, "/forbidden/x"));
        assert!(s.allows(Action::Admin, "/admin/x"));
        assert_eq!(s.to_string(), "read:/**,write:/allowed/**,admin:/admin/x");
        assert!(matches!(Scopes::parse("read"), Err(ScopeError::Syntax(_))));
        assert!(matches!(
            Scopes::parse("fly:/a"),
            Err(ScopeError::Action(_))
        ));
        assert!(matches!(
            Scopes::parse("read:a"),
            Err(ScopeError::Pattern { .. })
        ));
    }

    #[test]
    fn write_implies_read_and_patterns_are_judged_by_inclusion() {
        let s = Scopes::parse("write:/a/*").unwrap();
        assert!(s.allows(Action::Read, "/a/b"));
        let p = |x: &str| Pattern::compile(x).unwrap();
        assert!(s.allows_pattern(Action::Read, &p("/a/*")));
        assert!(s.allows_pattern(Action::Read, &p("/a/b")));
        assert!(!s.allows_pattern(Action::Read, &p("/a/**")));
        assert!(!s.allows_pattern(Action::Admin, &p("/a/b")));
    }

    #[test]
    fn cpsk_tokens() {
        let mut a = Auth::open();
        assert!(!a.required());
        let mut t = HashMap::new();
        t.insert(
            "cpsk_0123".to_owned(),
            CpskToken {
                subject: None,
                scopes: Scopes::admin(),
                expires_at: Some(100),
            },
        );
        a.set_cpsk(t);
        assert!(a.required());
        assert!(a.authenticate(Some("cpsk_0123"), 50).is_ok());
        assert_eq!(
            a.authenticate(Some("cpsk_0123"), 100),
            Err(AuthError::Expired)
        );
        assert_eq!(
            a.authenticate(Some("cpsk_9999"), 50),
            Err(AuthError::Unknown)
        );
        assert_eq!(a.authenticate(None, 50), Err(AuthError::Missing));
        assert_eq!(a.authenticate(Some(""), 50), Err(AuthError::Missing));
        assert_eq!(a.authenticate(Some("jwt_x"), 50), Err(AuthError::Format));
        a.set_revoked(["cpsk_0123".to_owned()].into());
        assert_eq!(
            a.authenticate(Some("cpsk_0123"), 50),
            Err(AuthError::Revoked)
        );
        // The last token going away does not open the router.
        a.set_cpsk(HashMap::new());
        assert!(a.required());
        assert_eq!(a.authenticate(None, 50), Err(AuthError::NoneConfigured));
        assert_eq!(
            a.authenticate(Some("cpsk_9999"), 50),
            Err(AuthError::NoneConfigured)
        );
    }
}

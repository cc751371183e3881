//! `clasp token create | list | revoke`: the CPSK tokens in the token file a router loads.
//!
//! The file is `tokens.json` in the router's data directory unless `--file` says otherwise. A
//! running router notices changes within a second: new tokens work at once, and the sessions of
//! a revoked token end.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use clasp_router::core::auth::Scopes;
use clasp_router::server::tokens::{TOKEN_FILE, TokenFile, TokenRecord, generate, short, unix_now};
use serde_json::json;

/// `clasp token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    cmd: TokenCmd,
    /// The token file [default: tokens.json in the data directory].
    #[arg(long, global = true, env = "CLASP_TOKEN_FILE")]
    file: Option<PathBuf>,
    /// The router's data directory [default: the user's data directory].
    #[arg(long, global = true, env = "CLASP_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Make a new token and print it on standard output.
    Create {
        /// What it allows, comma-separated: read:PATTERN, write:PATTERN, admin:PATTERN.
        #[arg(long, required = true)]
        scopes: String,
        /// Lifetime: 30s, 15m, 12h, 7d or seconds [default: never expires].
        #[arg(long)]
        expires: Option<String>,
        /// Who it is for (shown by `list`).
        #[arg(long)]
        subject: Option<String>,
    },
    /// List the tokens (shortened) with their scopes and expiry.
    List {
        /// Include expired tokens.
        #[arg(long)]
        all: bool,
        /// JSON output (full tokens).
        #[arg(long)]
        json: bool,
    },
    /// Remove a token (given whole or by a prefix of at least 9 characters); the router ends
    /// its sessions.
    Revoke {
        /// The token or its prefix.
        token: String,
    },
}

/// Parses `30s`, `15m`, `12h`, `7d` or a number of seconds: a lifetime, so not zero.
fn parse_duration(s: &str) -> anyhow::Result<u64> {
    match parse_secs(s)? {
        0 => bail!("`{}` is not a usable lifetime", s.trim()),
        v => Ok(v),
    }
}

/// Parses `30s`, `15m`, `12h`, `7d` or a number of seconds (zero included).
pub(crate) fn parse_secs(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a duration (30s, 15m, 12h, 7d)"))?;
    let mul = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("`{s}`: unknown unit `{unit}` (use s, m, h or d)"),
    };
    n.checked_mul(mul)
        .with_context(|| format!("`{s}` is too long"))
}

fn when(unix: u64) -> String {
    let now = unix_now();
    if unix <= now {
        return "expired".into();
    }
    let left = unix - now;
    match left {
        0..=3599 => format!("expires in {} min", left.div_ceil(60)),
        3600..=172_799 => format!("expires in {} h", left / 3600),
        _ => format!("expires in {} days", left / 86_400),
    }
}

/// Runs `clasp token`.
pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let path = match args.file {
        Some(f) => f,
        None => match args.data_dir {
            Some(d) => d.join(TOKEN_FILE),
            None => crate::server::default_data_dir()?.join(TOKEN_FILE),
        },
    };
    let mut file = TokenFile::load(&path)?;
    match args.cmd {
        TokenCmd::Create {
            scopes,
            expires,
            subject,
        } => {
            let parsed = Scopes::parse(&scopes)?;
            if parsed.is_empty() {
                bail!("--scopes lists no scope");
            }
            let now = unix_now();
            let expires_at = expires
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|s| now + s);
            let token = generate();
            file.tokens.insert(
                token.clone(),
                TokenRecord {
                    token: token.clone(),
                    subject: subject.clone(),
                    scopes: parsed.iter().map(ToString::to_string).collect(),
                    expires_at,
                    created_at: now,
                },
            );
            file.save(&path)?;
            println!("{token}");
            eprintln!(
                "token {} created in {} ({}{})",
                short(&token),
                path.display(),
                parsed,
                expires_at
                    .map(|e| format!(", {}", when(e)))
                    .unwrap_or_default()
            );
        }
        TokenCmd::List { all, json } => {
            let now = unix_now();
            let shown: Vec<&TokenRecord> = file
                .tokens
                .values()
                .filter(|t| all || t.expires_at.is_none_or(|e| e > now))
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&json!(shown))?);
                return Ok(());
            }
            if shown.is_empty() {
                eprintln!(
                    "no tokens in {} (the router is in open mode)",
                    path.display()
                );
            }
            for t in shown {
                let scopes = if t.scopes.is_empty() {
                    "admin:/**".to_owned()
                } else {
                    t.scopes.join(",")
                };
                let mut line = format!("{}  {scopes}", short(&t.token));
                if let Some(s) = &t.subject {
                    line.push_str(&format!("  subject={s}"));
                }
                match t.expires_at {
                    Some(e) => line.push_str(&format!("  {}", when(e))),
                    None => line.push_str("  never expires"),
                }
                println!("{line}");
            }
        }
        TokenCmd::Revoke { token } => {
            let found = file.find(&token);
            match found.as_slice() {
                [] => bail!("no token matches `{}` in {}", short(&token), path.display()),
                [one] => {
                    file.tokens.remove(one);
                    file.save(&path)?;
                    println!("revoked {}", short(one));
                }
                many => bail!(
                    "`{}` matches {} tokens; give more of it",
                    short(&token),
                    many.len()
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").ok(), Some(30));
        assert_eq!(parse_duration("15m").ok(), Some(900));
        assert_eq!(parse_duration("12h").ok(), Some(43_200));
        assert_eq!(parse_duration("7d").ok(), Some(604_800));
        assert_eq!(parse_duration("90").ok(), Some(90));
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_secs("0").ok(), Some(0), "an age bound may be zero");
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("soon").is_err());
    }
}

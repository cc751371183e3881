//! The journal and history options of `clasp server` and `clasp relay` (see docs/time.md).

use anyhow::bail;
use clap::Args;
use clasp_proto::{SignalType, SignalTypes};
use clasp_router::server::{JournalConfig, ServerConfig};
use serde::Deserialize;

/// `--journal` and its companions.
#[derive(Debug, Args)]
pub(crate) struct JournalArgs {
    /// Keep a journal of every SET and event the router broadcasts (in journal.redb beside
    /// the state, or in memory with --memory): subscriptions can ask for history from it and
    /// clients can REPLAY a time range.
    #[arg(long, env = "CLASP_JOURNAL")]
    journal: bool,
    /// How long the journal keeps entries, e.g. 90s, 30m, 24h, 7d (0: until the size bounds)
    /// [default: 24h].
    #[arg(long, env = "CLASP_JOURNAL_RETENTION", value_name = "AGE")]
    journal_retention: Option<String>,
    /// Most megabytes of entries the journal keeps (the oldest go first) [default: 1024].
    #[arg(long, env = "CLASP_JOURNAL_MAX_MB", value_name = "MB")]
    journal_max_mb: Option<u64>,
    /// Signal kinds journaled, comma-separated: param, event, stream, gesture, timeline
    /// [default: param,event].
    #[arg(long, env = "CLASP_JOURNAL_KINDS", value_name = "KINDS")]
    journal_kinds: Option<String>,
    /// Without a journal: the last N broadcasts of each address kept in memory for
    /// subscriptions that ask for history (0: none) [default: 8].
    #[arg(long, env = "CLASP_HISTORY_DEPTH", value_name = "N")]
    history_depth: Option<usize>,
}

/// The same in the `--config` file's `[journal]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JournalFile {
    enabled: Option<bool>,
    retention: Option<String>,
    max_mb: Option<u64>,
    kinds: Option<Vec<String>>,
    history_depth: Option<usize>,
}

/// Applies the journal options (flags win over the file).
pub(crate) fn apply(
    args: &JournalArgs,
    file: Option<JournalFile>,
    c: &mut ServerConfig,
) -> anyhow::Result<()> {
    let file = file.unwrap_or_default();
    if let Some(d) = args.history_depth.or(file.history_depth) {
        c.router.history_depth = d;
    }
    let kinds = match (&args.journal_kinds, &file.kinds) {
        (Some(k), _) => Some(parse_kinds(k.split(','))?),
        (None, Some(k)) => Some(parse_kinds(k.iter().map(String::as_str))?),
        (None, None) => None,
    };
    if let Some(k) = kinds {
        c.router.journal_kinds = k;
    }
    if !(args.journal || file.enabled.unwrap_or(false)) {
        return Ok(());
    }
    let mut j = JournalConfig::default();
    if let Some(age) = args
        .journal_retention
        .as_deref()
        .or(file.retention.as_deref())
    {
        let secs = crate::token::parse_secs(age)?;
        j.retention.max_age_us = (secs > 0).then_some(secs.saturating_mul(1_000_000));
    }
    if let Some(mb) = args.journal_max_mb.or(file.max_mb) {
        if mb == 0 {
            bail!("--journal-max-mb must be at least 1");
        }
        j.retention.max_bytes = mb.saturating_mul(1 << 20);
    }
    c.journal = Some(j);
    Ok(())
}

fn parse_kinds<'a>(names: impl Iterator<Item = &'a str>) -> anyhow::Result<SignalTypes> {
    let mut kinds = Vec::new();
    for n in names.map(str::trim).filter(|n| !n.is_empty()) {
        match SignalType::ALL.into_iter().find(|t| t.name() == n) {
            Some(t) => kinds.push(t),
            None => bail!(
                "unknown signal kind `{n}` in the journal kinds; use param, event, stream, gesture or timeline"
            ),
        }
    }
    if kinds.is_empty() {
        bail!(
            "the journal kinds are empty; name at least one of param, event, stream, gesture, timeline"
        );
    }
    Ok(SignalTypes::of(&kinds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let k = parse_kinds("param, stream".split(',')).unwrap();
        assert!(k.accepts(SignalType::Stream) && !k.accepts(SignalType::Event));
        assert!(parse_kinds("param,bogus".split(',')).is_err());
    }
}

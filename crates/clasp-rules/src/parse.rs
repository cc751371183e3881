//! Reading a rules file from text: TOML or JSON, syntax and shape errors with their line and
//! column, then the checks of [`RuleSet`] located in the text too.

use std::path::Path;

use crate::RulesError;
use crate::locate::{self, Location};
use crate::ruleset::RuleSet;
use crate::spec::RulesFile;

/// Largest rules file accepted (bytes).
pub const MAX_FILE: usize = 4 << 20;

/// The language of a rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file name's extension says (`.toml`, `.json`, any case).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        if ext.eq_ignore_ascii_case("toml") {
            Some(Format::Toml)
        } else if ext.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

impl RulesFile {
    /// Reads and checks a rules file: the [`RuleSet`] an [`crate::Engine`] runs, or the first
    /// problem found, with its line and column.
    pub fn parse(text: &str, format: Format) -> Result<RuleSet, RulesError> {
        let file = RulesFile::read(text, format)?;
        RuleSet::compile(&file).map_err(|p| {
            let at = locate::find(text, format, &p.path);
            p.into_error(at)
        })
    }

    /// Reads a rules file without checking its values (syntax and shape only).
    pub fn read(text: &str, format: Format) -> Result<RulesFile, RulesError> {
        if text.len() > MAX_FILE {
            return Err(RulesError::Syntax {
                at: Location { line: 1, column: 1 },
                message: format!("the file is larger than {} MiB", MAX_FILE >> 20),
            });
        }
        match format {
            Format::Toml => toml::from_str(text).map_err(|e| RulesError::Syntax {
                at: locate::location(text, e.span().map_or(0, |s| s.start)),
                message: e.message().trim_end().to_owned(),
            }),
            Format::Json => serde_json::from_str(text).map_err(|e| {
                let offset = locate::json_offset(text, e.line(), e.column());
                RulesError::Syntax {
                    at: locate::location(text, offset),
                    message: json_message(&e),
                }
            }),
        }
    }
}

/// serde_json's message without its " at line L column C" suffix (the location is given
/// apart).
fn json_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

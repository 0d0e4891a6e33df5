//! Reading the TOML files: syntax, sections, and the separate policy and table files.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::diag::{Diagnostic, Severity, SourceFile};
use crate::model::Config;
use crate::raw;
use crate::validate;

/// A configuration that passed every check, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates the configuration at `path` (and the policy file it names).
///
/// On failure, returns every diagnostic found (errors and warnings), in file order.
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(path, &text),
        Err(e) => Err(vec![Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the configuration: {e}"),
        }]),
    }
}

/// Validates configuration text as if it had been read from `path` (which is used in
/// diagnostics and to resolve `policy_file` and table files relative to its folder).
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let mut cx = Context::default();
    let main = cx.add_file(SourceFile::new(path, text.to_string()));
    let mut sections = Sections::default();
    cx.read_file(main, FileRole::Main, &mut sections);

    if let Some(policy) = sections.policy_file.take() {
        let base = path.parent().unwrap_or(Path::new("."));
        let policy_path = base.join(&policy.value);
        match std::fs::read_to_string(&policy_path) {
            Ok(policy_text) => {
                let id = cx.add_file(SourceFile::new(&policy_path, policy_text));
                sections.policy_path = Some(policy_path);
                cx.read_file(id, FileRole::Policy, &mut sections);
            }
            Err(e) => cx.error(
                main,
                policy.span,
                format!("cannot read policy_file `{}`: {e}", policy_path.display()),
            ),
        }
    }
    cx.read_table_files(&mut sections);

    let config = validate::validate(&mut cx, path, sections);
    let mut diags = cx.diags;
    diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    match config {
        Some(config) if !diags.iter().any(|d| d.severity == Severity::Error) => Ok(Loaded {
            config,
            warnings: diags,
        }),
        _ => Err(diags),
    }
}

/// A value together with the file and span it came from.
#[derive(Debug)]
pub(crate) struct Sourced<T> {
    pub file: usize,
    pub span: Range<usize>,
    pub value: T,
}

/// A `[tables]` entry as written.
#[derive(Debug)]
pub(crate) struct RawTable {
    pub name: String,
    /// Entries with the file and span of each.
    pub entries: Vec<Sourced<String>>,
    /// `file = "…"`: the path as written, read into `entries` by the loader.
    pub file: Option<Sourced<String>>,
}

/// Every section of the configuration as written, across the main and policy files.
#[derive(Debug, Default)]
pub(crate) struct Sections {
    pub policy_file: Option<Sourced<String>>,
    pub policy_path: Option<PathBuf>,
    pub appliance: Option<Sourced<raw::Appliance>>,
    pub dpdk: Option<Sourced<raw::Dpdk>>,
    pub interfaces: Vec<Sourced<raw::Interface>>,
    pub routes: Vec<Sourced<raw::Route>>,
    pub neighbors: Vec<Sourced<raw::Neighbor>>,
    pub carp: Vec<Sourced<raw::Carp>>,
    pub pfsync: Option<Sourced<raw::Pfsync>>,
    pub control: Option<Sourced<raw::Control>>,
    pub limits: Option<Sourced<raw::Limits>>,
    pub timeouts: Option<Sourced<raw::Timeouts>>,
    pub tables: Vec<Sourced<RawTable>>,
    pub policy: Option<Sourced<raw::Policy>>,
    /// Where `[[rule]]`s were first seen (to refuse rules in both files).
    pub rules_seen: Option<(usize, Range<usize>)>,
    pub rules: Vec<Sourced<raw::Rule>>,
    /// Sections that failed to parse (`*` for a syntax error): validation then skips the
    /// reference checks that would only echo that error (an "unknown interface" because
    /// the interface's own section was malformed).
    pub broken: Vec<String>,
    /// `(section, name)` of entries that failed to parse but whose `name` could be read,
    /// so references to them are not reported as unknown.
    pub unparsed_names: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileRole {
    Main,
    Policy,
}

const MAIN_SECTIONS: &[&str] = &[
    "policy_file",
    "appliance",
    "dpdk",
    "interface",
    "route",
    "neighbor",
    "carp",
    "pfsync",
    "control",
    "limits",
    "timeouts",
    "tables",
    "policy",
    "rule",
];
const POLICY_SECTIONS: &[&str] = &["tables", "policy", "rule"];

/// The files read so far and the diagnostics found in them.
#[derive(Debug, Default)]
pub(crate) struct Context {
    pub files: Vec<SourceFile>,
    pub diags: Vec<Diagnostic>,
}

impl Context {
    fn add_file(&mut self, file: SourceFile) -> usize {
        self.files.push(file);
        self.files.len() - 1
    }

    pub fn error(&mut self, file: usize, span: Range<usize>, message: impl Into<String>) {
        let d = self.files[file].diagnostic(Severity::Error, span, message);
        self.diags.push(d);
    }

    pub fn warning(&mut self, file: usize, span: Range<usize>, message: impl Into<String>) {
        let d = self.files[file].diagnostic(Severity::Warning, span, message);
        self.diags.push(d);
    }

    /// 1-based (line, column) of a span's start.
    pub fn position(&self, file: usize, span: &Range<usize>) -> (usize, usize) {
        self.files[file].position(span.start)
    }

    pub fn path(&self, file: usize) -> &Path {
        self.files[file].path()
    }

    /// Deserializes one value into its raw type; a failure becomes a diagnostic.
    fn de<T: DeserializeOwned>(&mut self, file: usize, value: Spanned<DeValue<'_>>) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = e.span().unwrap_or(span);
                self.error(file, at, improve_message(e.message()));
                None
            }
        }
    }

    fn read_file(&mut self, file: usize, role: FileRole, sections: &mut Sections) {
        let text = self.files[file].text.clone();
        let (root, errors) = DeTable::parse_recoverable(&text);
        if !errors.is_empty() {
            sections.broken.push("*".into());
            for e in errors {
                let at = e.span().unwrap_or(0..0);
                self.error(file, at, format!("TOML syntax: {}", e.message().trim_end()));
            }
            return;
        }
        let allowed = match role {
            FileRole::Main => MAIN_SECTIONS,
            FileRole::Policy => POLICY_SECTIONS,
        };
        for (key, value) in root.into_inner() {
            let name = key.get_ref().as_ref();
            let key_span = key.span();
            if !allowed.contains(&name) {
                let msg = if role == FileRole::Policy && MAIN_SECTIONS.contains(&name) {
                    format!("`{name}` belongs in the main configuration; a policy file holds only [tables], [policy] and [[rule]]")
                } else {
                    unknown_key_message(name, allowed)
                };
                self.error(file, key_span, msg);
                continue;
            }
            let span = value.span();
            macro_rules! single {
                ($field:ident) => {{
                    if let Some(prev) = &sections.$field {
                        let (l, c) = self.position(prev.file, &prev.span);
                        let p = self.path(prev.file).display().to_string();
                        self.error(
                            file,
                            key_span,
                            format!("[{name}] is already defined at {p}:{l}:{c}"),
                        );
                    } else if let Some(v) = self.de(file, value) {
                        sections.$field = Some(Sourced {
                            file,
                            span,
                            value: v,
                        });
                    } else {
                        sections.broken.push(name.to_string());
                    }
                }};
            }
            macro_rules! array {
                ($field:ident) => {{
                    match value.into_inner() {
                        DeValue::Array(items) => {
                            for item in items {
                                let span = item.span();
                                let item_name = item.get_ref().as_table().and_then(|t| {
                                    t.iter()
                                        .find(|(k, _)| k.get_ref().as_ref() == "name")
                                        .and_then(|(_, v)| v.get_ref().as_str().map(str::to_string))
                                });
                                let parsed = self.de(file, item);
                                if parsed.is_none() {
                                    if let Some(n) = item_name {
                                        sections.unparsed_names.push((name.to_string(), n));
                                    }
                                }
                                match parsed {
                                    Some(v) => sections.$field.push(Sourced { file, span, value: v }),
                                    None => sections.broken.push(name.to_string()),
                                }
                            }
                        }
                        _ => {
                            sections.broken.push(name.to_string());
                            self.error(
                                file,
                                key_span,
                                format!("`{name}` must be an array of tables: write [[{name}]], once per {name}"),
                            );
                        }
                    }
                }};
            }
            match name {
                "policy_file" => match value.get_ref().as_str() {
                    Some(s) => {
                        sections.policy_file = Some(Sourced { file, span, value: s.to_string() })
                    }
                    None => self.error(
                        file,
                        span,
                        "policy_file must be a string: the path of the policy file, relative to this file's folder",
                    ),
                },
                "appliance" => single!(appliance),
                "dpdk" => single!(dpdk),
                "pfsync" => single!(pfsync),
                "control" => single!(control),
                "limits" => single!(limits),
                "timeouts" => single!(timeouts),
                "policy" => single!(policy),
                "interface" => array!(interfaces),
                "route" => array!(routes),
                "neighbor" => array!(neighbors),
                "carp" => array!(carp),
                "rule" => {
                    if let Some((pf, ps)) = &sections.rules_seen {
                        let (l, c) = self.position(*pf, ps);
                        let p = self.path(*pf).display().to_string();
                        self.error(
                            file,
                            key_span,
                            format!("rules are already defined at {p}:{l}:{c}; keep all [[rule]]s in one file so their order is clear"),
                        );
                        continue;
                    }
                    sections.rules_seen = Some((file, key_span.clone()));
                    array!(rules)
                }
                "tables" => self.read_tables(file, value, sections),
                _ => unreachable!("allowed sections are all handled"),
            }
        }
    }

    fn read_tables(&mut self, file: usize, value: Spanned<DeValue<'_>>, sections: &mut Sections) {
        let span = value.span();
        let DeValue::Table(tables) = value.into_inner() else {
            sections.broken.push("tables".into());
            self.error(
                file,
                span,
                "[tables] must be a table of `name = [addresses]`",
            );
            return;
        };
        for (key, value) in tables {
            let name = key.get_ref().to_string();
            let key_span = key.span();
            let vspan = value.span();
            let mut table = RawTable {
                name,
                entries: Vec::new(),
                file: None,
            };
            match value.into_inner() {
                DeValue::Array(items) => {
                    for item in items {
                        let ispan = item.span();
                        match item.get_ref().as_str() {
                            Some(s) => table.entries.push(Sourced {
                                file,
                                span: ispan,
                                value: s.to_string(),
                            }),
                            None => self.error(
                                file,
                                ispan,
                                format!(
                                    "invalid type: {}, expected an address or CIDR string",
                                    item.get_ref().type_str()
                                ),
                            ),
                        }
                    }
                }
                v @ DeValue::Table(_) => {
                    let Some(spec) =
                        self.de::<raw::TableSpec>(file, Spanned::new(vspan.clone(), v))
                    else {
                        sections.unparsed_names.push(("tables".into(), table.name));
                        continue;
                    };
                    for a in spec.addresses {
                        table.entries.push(Sourced {
                            file,
                            span: a.span(),
                            value: a.into_inner(),
                        });
                    }
                    table.file = spec.file.map(|f| Sourced {
                        file,
                        span: f.span(),
                        value: f.into_inner(),
                    });
                }
                other => {
                    self.error(
                        file,
                        vspan,
                        format!(
                            "invalid type: {}, expected a list of addresses or {{ file = \"path\" }}",
                            other.type_str()
                        ),
                    );
                    continue;
                }
            }
            sections.tables.push(Sourced {
                file,
                span: key_span,
                value: table,
            });
        }
    }

    /// Reads `file = "…"` tables: one address or CIDR per line, `#` comments, blank lines.
    fn read_table_files(&mut self, sections: &mut Sections) {
        for t in 0..sections.tables.len() {
            let Some(spec) = sections.tables[t].value.file.take() else {
                continue;
            };
            let base = self
                .path(spec.file)
                .parent()
                .unwrap_or(Path::new("."))
                .to_path_buf();
            let path = base.join(&spec.value);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    self.error(
                        spec.file,
                        spec.span,
                        format!("cannot read table file `{}`: {e}", path.display()),
                    );
                    continue;
                }
            };
            let id = self.add_file(SourceFile::new(&path, text.clone()));
            let mut offset = 0;
            for line in text.split_inclusive('\n') {
                let content = line.split('#').next().unwrap_or("");
                let trimmed = content.trim();
                if !trimmed.is_empty() {
                    let start = offset + (content.len() - content.trim_start().len());
                    sections.tables[t].value.entries.push(Sourced {
                        file: id,
                        span: start..start + trimmed.len(),
                        value: trimmed.to_string(),
                    });
                }
                offset += line.len();
            }
        }
    }
}

/// "unknown key `x`, expected one of …", with a suggestion when one is close.
pub(crate) fn unknown_key_message(name: &str, allowed: &[&str]) -> String {
    let mut msg = format!("unknown key `{name}`");
    if let Some(s) = closest(name, allowed) {
        msg.push_str(&format!(" (did you mean `{s}`?)"));
    }
    let list: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
    msg.push_str(&format!(", expected one of {}", list.join(", ")));
    msg
}

/// The allowed name closest to `name` by edit distance, if it is close enough to be a typo.
pub(crate) fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(name, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4) && *d < a.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// serde's messages are good but terse; add the hint operators need most.
fn improve_message(message: &str) -> String {
    let message = message.trim_end().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let names: Vec<&str> = expected
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect();
            let mut msg = format!("unknown key `{field}`");
            if let Some(s) = closest(field, &names) {
                msg.push_str(&format!(" (did you mean `{s}`?)"));
            }
            if field == "policy_file" {
                msg.push_str(
                    " (policy_file is a top-level key: put it before the first [section])",
                );
            }
            msg.push_str(expected);
            return msg;
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(closest("interfce", MAIN_SECTIONS), Some("interface"));
        assert_eq!(closest("rules", MAIN_SECTIONS), Some("rule"));
        assert_eq!(closest("zzzzzz", MAIN_SECTIONS), None);
    }
}

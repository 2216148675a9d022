//! Where each setting comes from: its flag, its `LEFI_*` variable and its key in the TOML file,
//! read as text with the place it was given, for the one parser per setting in [`super`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Origin;
use crate::cli::ServeArgs;

/// The TOML type a key of the config file takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Toml {
    String,
    Integer,
    StringArray,
}

/// One setting: its TOML key (also clap's id of the flag), flag, variable, the TOML type it takes,
/// and where clap put the value of the flag or variable.
pub(super) struct Key {
    pub(super) toml: &'static str,
    pub(super) flag: &'static str,
    pub(super) env: &'static str,
    pub(super) kind: Toml,
    pub(super) given: fn(&ServeArgs) -> Vec<String>,
}

pub(super) fn text(value: &Option<String>) -> Vec<String> {
    value.iter().cloned().collect()
}

pub(super) fn path_text(path: &Option<PathBuf>) -> Vec<String> {
    path.iter().map(|p| p.display().to_string()).collect()
}

pub(super) const LISTEN: Key = Key {
    toml: "listen",
    flag: "--listen",
    env: "LEFI_LISTEN",
    kind: Toml::String,
    given: |a| text(&a.listen),
};
pub(super) const ADMIN_LISTEN: Key = Key {
    toml: "admin_listen",
    flag: "--admin-listen",
    env: "LEFI_ADMIN_LISTEN",
    kind: Toml::String,
    given: |a| text(&a.admin_listen),
};
pub(super) const METRICS_LISTEN: Key = Key {
    toml: "metrics_listen",
    flag: "--metrics-listen",
    env: "LEFI_METRICS_LISTEN",
    kind: Toml::String,
    given: |a| text(&a.metrics_listen),
};
pub(super) const DATABASE_URL: Key = Key {
    toml: "database_url",
    flag: "--database-url",
    env: "LEFI_DATABASE_URL",
    kind: Toml::String,
    given: |a| text(&a.database_url),
};
pub(super) const MAX_DB_CONNECTIONS: Key = Key {
    toml: "max_db_connections",
    flag: "--max-db-connections",
    env: "LEFI_MAX_DB_CONNECTIONS",
    kind: Toml::Integer,
    given: |a| text(&a.max_db_connections),
};
pub(super) const TLS_CERT: Key = Key {
    toml: "tls_cert",
    flag: "--tls-cert",
    env: "LEFI_TLS_CERT",
    kind: Toml::String,
    given: |a| path_text(&a.tls_cert),
};
pub(super) const TLS_KEY: Key = Key {
    toml: "tls_key",
    flag: "--tls-key",
    env: "LEFI_TLS_KEY",
    kind: Toml::String,
    given: |a| path_text(&a.tls_key),
};
pub(super) const CLIENT_CA: Key = Key {
    toml: "client_ca",
    flag: "--client-ca",
    env: "LEFI_CLIENT_CA",
    kind: Toml::String,
    given: |a| path_text(&a.client_ca),
};
pub(super) const OPERATOR_CA: Key = Key {
    toml: "operator_ca",
    flag: "--operator-ca",
    env: "LEFI_OPERATOR_CA",
    kind: Toml::String,
    given: |a| path_text(&a.operator_ca),
};
pub(super) const CRL: Key = Key {
    toml: "crl",
    flag: "--crl",
    env: "LEFI_CRL",
    kind: Toml::StringArray,
    given: |a| a.crl.iter().map(|p| p.display().to_string()).collect(),
};
pub(super) const HEARTBEAT_INTERVAL: Key = Key {
    toml: "heartbeat_interval",
    flag: "--heartbeat-interval",
    env: "LEFI_HEARTBEAT_INTERVAL",
    kind: Toml::String,
    given: |a| text(&a.heartbeat_interval),
};
pub(super) const SHUTDOWN_GRACE: Key = Key {
    toml: "shutdown_grace",
    flag: "--shutdown-grace",
    env: "LEFI_SHUTDOWN_GRACE",
    kind: Toml::String,
    given: |a| text(&a.shutdown_grace),
};
pub(super) const MAX_CONSENT_DAYS: Key = Key {
    toml: "max_consent_days",
    flag: "--max-consent-days",
    env: "LEFI_MAX_CONSENT_DAYS",
    kind: Toml::Integer,
    given: |a| text(&a.max_consent_days),
};
pub(super) const MAX_MESSAGE_SIZE: Key = Key {
    toml: "max_message_size",
    flag: "--max-message-size",
    env: "LEFI_MAX_MESSAGE_SIZE",
    kind: Toml::String,
    given: |a| text(&a.max_message_size),
};

pub(super) const HISTORY_RETENTION: Key = Key {
    toml: "history_retention",
    flag: "--history-retention",
    env: "LEFI_HISTORY_RETENTION",
    kind: Toml::String,
    given: |a| text(&a.history_retention),
};

pub(super) const PARTY_MAX_STREAMS: Key = Key {
    toml: "party_max_streams",
    flag: "--party-max-streams",
    env: "LEFI_PARTY_MAX_STREAMS",
    kind: Toml::Integer,
    given: |a| text(&a.party_max_streams),
};
pub(super) const PARTY_RATE_LIMIT: Key = Key {
    toml: "party_rate_limit",
    flag: "--party-rate-limit",
    env: "LEFI_PARTY_RATE_LIMIT",
    kind: Toml::Integer,
    given: |a| text(&a.party_rate_limit),
};
pub(super) const PARTY_RATE_BURST: Key = Key {
    toml: "party_rate_burst",
    flag: "--party-rate-burst",
    env: "LEFI_PARTY_RATE_BURST",
    kind: Toml::Integer,
    given: |a| text(&a.party_rate_burst),
};

/// Every key the config file may hold.
pub(super) const KEYS: [&Key; 18] = [
    &LISTEN,
    &ADMIN_LISTEN,
    &METRICS_LISTEN,
    &HISTORY_RETENTION,
    &DATABASE_URL,
    &MAX_DB_CONNECTIONS,
    &TLS_CERT,
    &TLS_KEY,
    &CLIENT_CA,
    &OPERATOR_CA,
    &CRL,
    &HEARTBEAT_INTERVAL,
    &SHUTDOWN_GRACE,
    &MAX_CONSENT_DAYS,
    &MAX_MESSAGE_SIZE,
    &PARTY_MAX_STREAMS,
    &PARTY_RATE_LIMIT,
    &PARTY_RATE_BURST,
];

/// A value as given (text; a list for `crl`), and where.
#[derive(Debug, Clone)]
pub(super) struct Given {
    pub(super) values: Vec<String>,
    pub(super) origin: Origin,
}

impl Given {
    pub(super) fn text(&self) -> &str {
        self.values.first().map_or("", String::as_str)
    }
}

/// The problems found so far.
#[derive(Debug, Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn push(&mut self, problem: String) {
        self.0.push(problem);
    }
}

/// The config file's values that have the right TOML type, by key.
#[derive(Debug, Default)]
pub(super) struct FileValues(pub(super) BTreeMap<&'static str, Given>);

impl FileValues {
    /// Reads and checks the whole file: a syntax error (the file cannot be read further), every
    /// unknown key and every value of the wrong type are each a problem, with its line.
    pub(super) fn read(path: &Path, origin: &Origin, problems: &mut Problems) -> FileValues {
        match std::fs::read_to_string(path) {
            Ok(text) => FileValues::parse(path, &text, problems),
            Err(e) => {
                problems.push(format!(
                    "{origin} '{}': cannot read the config file: {e}",
                    path.display()
                ));
                FileValues::default()
            }
        }
    }

    /// Checks the text of the file at `path` (which only names it in problems), as [`Self::read`]
    /// does once it has read it.
    pub(super) fn parse(path: &Path, text: &str, problems: &mut Problems) -> FileValues {
        let table = match toml::from_str::<BTreeMap<String, toml::Spanned<toml::Value>>>(text) {
            Ok(table) => table,
            Err(e) => {
                let line = e.span().map_or(1, |span| line_of(text, span.start));
                problems.push(format!(
                    "{}:{line}: not valid TOML: {}",
                    path.display(),
                    e.message().trim()
                ));
                return FileValues::default();
            }
        };
        let mut values = BTreeMap::new();
        for (name, value) in table {
            let line = line_of(text, value.span().start);
            let Some(key) = KEYS.iter().find(|k| k.toml == name) else {
                let known: Vec<&str> = KEYS.iter().map(|k| k.toml).collect();
                problems.push(format!(
                    "{}:{line} {name}: unknown key (the keys are {})",
                    path.display(),
                    known.join(", ")
                ));
                continue;
            };
            let origin = Origin::File {
                path: path.to_path_buf(),
                line,
                key: key.toml,
            };
            match typed(value.into_inner(), key.kind) {
                Ok(values_of_key) => {
                    values.insert(
                        key.toml,
                        Given {
                            values: values_of_key,
                            origin,
                        },
                    );
                }
                Err(found) => {
                    let expected = match key.kind {
                        Toml::String => "a string",
                        Toml::Integer => "an integer",
                        Toml::StringArray => "an array of strings",
                    };
                    problems.push(format!("{origin}: expected {expected}, found {found}"));
                }
            }
        }
        FileValues(values)
    }
}

/// A TOML value as text, if it has the type `kind`; else the type it has.
pub(super) fn typed(value: toml::Value, kind: Toml) -> Result<Vec<String>, &'static str> {
    match (kind, value) {
        (Toml::String, toml::Value::String(s)) => Ok(vec![s]),
        (Toml::Integer, toml::Value::Integer(i)) => Ok(vec![i.to_string()]),
        (Toml::StringArray, toml::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                other => Err(other.type_str()),
            })
            .collect(),
        (_, other) => Err(other.type_str()),
    }
}

/// The 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The flags and variables clap gathered, with where each came from, then the file.
pub(super) struct Sources<'a> {
    pub(super) args: &'a ServeArgs,
    pub(super) file: FileValues,
}

impl Sources<'_> {
    /// The value of `key`: the flag or variable, else the file's.
    pub(super) fn get(&self, key: &Key) -> Option<Given> {
        let args = self.args;
        let given = (key.given)(args);
        if given.is_empty() {
            return self.file.0.get(key.toml).cloned();
        }
        let origin = if args.from_env.iter().any(|id| id == key.toml) {
            Origin::Env(key.env)
        } else {
            Origin::Flag(key.flag)
        };
        Some(Given {
            values: given,
            origin,
        })
    }

    /// The value of `key` parsed by `parse`; `None` (and a problem) when it does not parse.
    pub(super) fn parse<T>(
        &self,
        key: &Key,
        expected: &str,
        parse: impl Fn(&str) -> Result<T, String>,
        problems: &mut Problems,
    ) -> Option<(T, Origin)> {
        let given = self.get(key)?;
        match parse(given.text().trim()) {
            Ok(value) => Some((value, given.origin)),
            Err(e) => {
                problems.push(format!(
                    "{} '{}' is not {expected}{}",
                    given.origin,
                    given.text(),
                    if e.is_empty() {
                        String::new()
                    } else {
                        format!(": {e}")
                    }
                ));
                None
            }
        }
    }

    /// The value of `key` as [`Sources::parse`] reads it, if it also passes `check` (which says
    /// what it must be); `default` when it is not given, does not parse or fails the check.
    pub(super) fn parse_checked<T>(
        &self,
        key: &Key,
        expected: &str,
        parse: impl Fn(&str) -> Result<T, String>,
        check: impl Fn(&T) -> Result<(), &'static str>,
        default: T,
        problems: &mut Problems,
    ) -> T {
        match self.parse(key, expected, parse, problems) {
            Some((value, origin)) => match check(&value) {
                Ok(()) => value,
                Err(must) => {
                    problems.push(format!("{origin} {must}"));
                    default
                }
            },
            None => default,
        }
    }
}

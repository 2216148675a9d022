//! Settings for `lefi serve`: command-line flags, `LEFI_*` environment variables and an optional TOML
//! file, merged in that order of precedence and validated before any port is bound.
//!
//! Every problem is collected and reported together, each naming the flag, variable or file it
//! concerns, so an operator fixes a broken configuration in one round.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::ServeArgs;

/// Default address of the party API.
pub const DEFAULT_PARTY_ADDR: &str = "127.0.0.1:50051";
/// Default address of the admin API.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:50052";
/// Default database in `--dev` mode: an embedded SQLite file in the working directory.
pub const DEFAULT_DEV_DATABASE_URL: &str = "sqlite://lefi.db";
/// Default idle heartbeat interval on delivery streams.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Default time open calls get to finish once shutdown begins.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default longest consent period: three years.
pub const DEFAULT_MAX_CONSENT_DAYS: u32 = 1096;

/// Fully resolved settings of a server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the party API (insurers, authorities) listens.
    pub party_addr: SocketAddr,
    /// Where the admin API (operators at the agency) listens.
    pub admin_addr: SocketAddr,
    /// The database to use.
    pub database: DatabaseSettings,
    /// Certificates and keys, already read from disk.
    pub tls: TlsMaterial,
    /// How often an idle delivery stream sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// How long open calls get to finish once shutdown begins, before they are cut.
    pub shutdown_grace: Duration,
    /// The longest a registered consent may run, from given_on to expires_on, in days.
    pub max_consent_days: u32,
}

/// Database connection settings.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// `sqlite://path` or `postgres://user@host/db`; may hold a password, so never printed.
    pub url: String,
    /// Upper bound on pooled connections (PostgreSQL, and SQLite's read pool).
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Removes any password from a database URL, for logs and start-up summaries.
pub fn redact_url(url: &str) -> String {
    // postgres://user:secret@host/db -> postgres://user:***@host/db
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// PEM material the server needs, read once at start.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The server's certificate chain (PEM).
    pub server_cert_pem: Vec<u8>,
    /// The server's private key (PEM, PKCS#8 or SEC1 or PKCS#1).
    pub server_key_pem: Vec<u8>,
    /// CA certificates that party client certificates must chain to (PEM).
    pub party_ca_pem: Vec<u8>,
    /// CA certificates that operator client certificates must chain to (PEM).
    pub operator_ca_pem: Vec<u8>,
    /// Certificate revocation lists (PEM or DER), applied to party certificates.
    pub crls: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("server_key_pem", &"<redacted>")
            .field("crls", &self.crls.len())
            .finish_non_exhaustive()
    }
}

/// The optional TOML configuration file (`--config`). Every key is optional; flags and
/// environment variables override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub max_db_connections: Option<u32>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub operator_ca: Option<PathBuf>,
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// For example `"15s"`.
    pub heartbeat_interval: Option<String>,
    /// For example `"10s"`.
    pub shutdown_grace: Option<String>,
    pub max_consent_days: Option<u32>,
}

/// Configuration problems, all of them at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Where the certificate files come from when `--dev` generated them.
#[derive(Debug, Clone)]
pub struct DevPaths {
    pub certs_dir: PathBuf,
}

/// Resolves `serve` arguments (already merged with the environment by clap) and the optional file
/// into [`Settings`]. In `--dev` mode, missing TLS paths default to the files in `dev.certs_dir`.
pub fn resolve(args: &ServeArgs, dev: Option<&DevPaths>) -> Result<Settings, ConfigError> {
    let mut problems = Vec::new();
    let file = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => match toml::from_str::<FileConfig>(&text) {
                Ok(file) => file,
                Err(e) => {
                    problems.push(format!("config file '{}': {e}", path.display()));
                    FileConfig::default()
                }
            },
            Err(e) => {
                problems.push(format!("cannot read config file '{}': {e}", path.display()));
                FileConfig::default()
            }
        },
        None => FileConfig::default(),
    };

    let party_addr = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| parse_default_addr(DEFAULT_PARTY_ADDR));
    let admin_addr = args
        .admin_listen
        .or(file.admin_listen)
        .unwrap_or_else(|| parse_default_addr(DEFAULT_ADMIN_ADDR));
    if party_addr == admin_addr && party_addr.port() != 0 {
        problems.push(format!(
            "--listen and --admin-listen are both {party_addr}: the party and admin APIs need separate ports"
        ));
    }

    let database_url = args.database_url.clone().or(file.database_url.clone());
    let database_url = match (database_url, dev) {
        (Some(url), _) => url,
        (None, Some(_)) => DEFAULT_DEV_DATABASE_URL.to_string(),
        (None, None) => {
            problems.push(
                "--database-url is required without --dev (or LEFI_DATABASE_URL, or database_url in the config file); \
                 use sqlite://path/to/lefi.db or postgres://user@host/db"
                    .to_string(),
            );
            String::new()
        }
    };
    let known_scheme = ["sqlite:", "postgres:", "postgresql:"]
        .iter()
        .any(|scheme| database_url.starts_with(scheme));
    if !database_url.is_empty() && !known_scheme {
        problems.push(format!(
            "--database-url '{}' is neither sqlite:// nor postgres://",
            redact_url(&database_url)
        ));
    }

    let mut read = |flag: &str, given: Option<&PathBuf>, dev_name: &str| -> Vec<u8> {
        let path = match (given, dev) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.certs_dir.join(dev_name),
            (None, None) => {
                problems.push(format!(
                    "{flag} is required without --dev (or {}, or {} in the config file)",
                    env_name(flag),
                    flag.trim_start_matches("--").replace('-', "_")
                ));
                return Vec::new();
            }
        };
        read_file(flag, &path, &mut problems)
    };
    let server_cert_pem = read(
        "--tls-cert",
        args.tls_cert.as_ref().or(file.tls_cert.as_ref()),
        "server.pem",
    );
    let server_key_pem = read(
        "--tls-key",
        args.tls_key.as_ref().or(file.tls_key.as_ref()),
        "server.key",
    );
    let party_ca_pem = read(
        "--client-ca",
        args.client_ca.as_ref().or(file.client_ca.as_ref()),
        "ca.pem",
    );
    let operator_ca_pem = read(
        "--operator-ca",
        args.operator_ca.as_ref().or(file.operator_ca.as_ref()),
        "ca.pem",
    );
    let crl_paths = if args.crl.is_empty() { &file.crl } else { &args.crl };
    let crls = crl_paths
        .iter()
        .map(|p| read_file("--crl", p, &mut problems))
        .collect();

    let heartbeat_interval = duration_setting(
        "--heartbeat-interval",
        args.heartbeat_interval
            .as_deref()
            .or(file.heartbeat_interval.as_deref()),
        DEFAULT_HEARTBEAT,
        &mut problems,
    );
    if heartbeat_interval < Duration::from_millis(100) || heartbeat_interval > Duration::from_secs(3600) {
        problems.push("--heartbeat-interval must be between 100ms and 1h".to_string());
    }
    let shutdown_grace = duration_setting(
        "--shutdown-grace",
        args.shutdown_grace.as_deref().or(file.shutdown_grace.as_deref()),
        DEFAULT_SHUTDOWN_GRACE,
        &mut problems,
    );
    let max_connections = args.max_db_connections.or(file.max_db_connections).unwrap_or(8);
    if max_connections == 0 {
        problems.push("--max-db-connections must be at least 1".to_string());
    }

    let max_consent_days = args
        .max_consent_days
        .or(file.max_consent_days)
        .unwrap_or(DEFAULT_MAX_CONSENT_DAYS);
    if max_consent_days == 0 {
        problems.push("--max-consent-days must be at least 1".to_string());
    }

    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    Ok(Settings {
        party_addr,
        admin_addr,
        database: DatabaseSettings {
            url: database_url,
            max_connections,
        },
        tls: TlsMaterial {
            server_cert_pem,
            server_key_pem,
            party_ca_pem,
            operator_ca_pem,
            crls,
        },
        heartbeat_interval,
        shutdown_grace,
        max_consent_days,
    })
}

fn parse_default_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn env_name(flag: &str) -> String {
    format!(
        "LEFI_{}",
        flag.trim_start_matches("--").replace('-', "_").to_uppercase()
    )
}

fn read_file(flag: &str, path: &Path, problems: &mut Vec<String>) -> Vec<u8> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.is_empty() => {
            problems.push(format!("{flag} file '{}' is empty", path.display()));
            bytes
        }
        Ok(bytes) => bytes,
        Err(e) => {
            problems.push(format!("cannot read {flag} file '{}': {e}", path.display()));
            Vec::new()
        }
    }
}

fn duration_setting(
    flag: &str,
    given: Option<&str>,
    default: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    match given {
        None => default,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!(
                    "{flag} '{text}' is not a duration such as 15s or 2m: {e}"
                ));
                default
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://lefi.db"), "sqlite://lefi.db");
    }

    #[test]
    fn env_names_follow_flags() {
        assert_eq!(env_name("--tls-cert"), "LEFI_TLS_CERT");
    }
}

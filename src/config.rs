//! Settings for `lefi serve`: command-line flags, `LEFI_*` environment variables and an optional TOML
//! file, merged in that order of precedence and validated before any port is bound.
//!
//! Every problem is collected and reported together, each named by where the value came from (the
//! flag `--x`, the variable `LEFI_X`, or `FILE:LINE key` in the config file), so an operator fixes a
//! broken configuration in one round. Flags and variables arrive as text (clap only gathers them;
//! [`ServeArgs::from_env`] says which came from the environment), and so do the file's values once
//! their TOML type is checked: one parser per setting serves all three.
//!
//! [`plan`] checks every setting and, without `--dev`, reads the certificate files too (all
//! problems at once); with `--dev` the files may not exist yet, and [`Plan::load`] reads them after
//! `serve --dev` has checked its ports and generated them. [`resolve`] does both steps at once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::domain::limits::PartyLimits;

mod sources;

use sources::*;

/// Default address of the party API.
pub const DEFAULT_PARTY_ADDR: &str = "127.0.0.1:50051";
/// Default address of the admin API.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:50052";
/// Where `--dev` serves its metrics: the port Prometheus exporters conventionally use.
pub const DEFAULT_DEV_METRICS_ADDR: &str = "127.0.0.1:9464";
/// Default database in `--dev` mode: an embedded SQLite file in the working directory.
pub const DEFAULT_DEV_DATABASE_URL: &str = "sqlite://lefi.db";
/// Default idle heartbeat interval on delivery streams.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Default time open calls get to finish once shutdown begins.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default time delivery history is kept.
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest history retention: the contract promises cursors stay valid at least this long.
pub const MIN_HISTORY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default longest consent period: three years.
pub const DEFAULT_MAX_CONSENT_DAYS: u32 = 1096;
/// Default largest request message the server reads: gRPC's customary 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Bounds of `--max-message-size`.
const MESSAGE_BYTES_RANGE: std::ops::RangeInclusive<usize> = 64 * 1024..=256 * 1024 * 1024;
/// Default upper bound on pooled database connections.
pub const DEFAULT_MAX_DB_CONNECTIONS: u32 = 8;

/// Fully resolved settings of a server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the party API (insurers, authorities) listens.
    pub party_addr: SocketAddr,
    /// Where the admin API (operators at the agency) listens.
    pub admin_addr: SocketAddr,
    /// Where Prometheus scrapes `GET /metrics` (plain HTTP); `None`: no metrics listener.
    pub metrics_addr: Option<SocketAddr>,
    /// The database to use.
    pub database: DatabaseSettings,
    /// Certificates and keys, already read from disk.
    pub tls: TlsMaterial,
    /// How often an idle delivery stream sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// How long open calls get to finish once shutdown begins, before they are cut.
    pub shutdown_grace: Duration,
    /// How long delivery history is kept before the pruner deletes it (cursors older expire).
    pub history_retention: Duration,
    /// The longest a registered consent may run, from given_on to expires_on, in days.
    pub max_consent_days: u32,
    /// The largest request message the APIs read, in bytes.
    pub max_message_bytes: usize,
    /// Each party's limits, unless an operator set its own.
    pub party_limits: PartyLimits,
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
    // Read as the `url` crate (and so sqlx) reads it: tabs and line breaks are dropped, and the user
    // information ends at the last `@` before the path, so a password may hold an `@`.
    let url: String = url.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
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
    /// The files `crls` were read from, read again when the CRLs are reloaded (SIGHUP, or the
    /// admin call); empty when the CRLs were given as bytes.
    pub crl_files: Vec<PathBuf>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("server_key_pem", &"<redacted>")
            .field("crls", &self.crls.len())
            .finish_non_exhaustive()
    }
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

/// Where a setting's value came from: a problem names it, so the operator fixes the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--listen`.
    Flag(&'static str),
    /// An environment variable, e.g. `LEFI_LISTEN`.
    Env(&'static str),
    /// A key of the config file, at a line.
    File {
        path: PathBuf,
        line: usize,
        key: &'static str,
    },
    /// A file `--dev` provides in its certificate directory.
    Dev(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Env(var) => f.write_str(var),
            Origin::File { path, line, key } => write!(f, "{}:{line} {key}", path.display()),
            Origin::Dev(path) => write!(f, "--dev ({})", path.display()),
        }
    }
}

/// A file the server reads, and where its path came from.
#[derive(Debug, Clone)]
struct FileSetting {
    path: PathBuf,
    origin: Origin,
}

/// Every setting resolved; the files' contents read (without `--dev`) or still to read.
#[derive(Debug)]
pub struct Plan {
    pub party_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    database: DatabaseSettings,
    tls_cert: Option<FileSetting>,
    tls_key: Option<FileSetting>,
    client_ca: Option<FileSetting>,
    operator_ca: Option<FileSetting>,
    crls: Vec<FileSetting>,
    heartbeat_interval: Duration,
    shutdown_grace: Duration,
    history_retention: Duration,
    max_consent_days: u32,
    max_message_bytes: usize,
    party_limits: PartyLimits,
    /// The files' contents, once read.
    read: Option<TlsMaterial>,
}

/// A size in bytes: a whole number, optionally followed by KiB, MiB (or KB/MB, read as the binary
/// units gRPC limits are usually given in).
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| "not a whole number of bytes".to_string())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "kb" | "k" => 1024,
        "mib" | "mb" | "m" => 1024 * 1024,
        other => return Err(format!("unknown unit '{other}' (use KiB or MiB)")),
    };
    number.checked_mul(factor).ok_or_else(|| "too large".to_string())
}

/// Resolves `serve` arguments and the optional config file into [`Settings`], reading the
/// certificate files: [`plan`] then [`Plan::load`].
pub fn resolve(args: &ServeArgs, dev: Option<&DevPaths>) -> Result<Settings, ConfigError> {
    plan(args, dev)?.load()
}

/// Resolves and checks every setting from the flags, the variables and the config file; without
/// `--dev`, also reads the certificate files. In `--dev` mode, missing TLS paths default to the
/// files in `dev.certs_dir`, read later by [`Plan::load`].
pub fn plan(args: &ServeArgs, dev: Option<&DevPaths>) -> Result<Plan, ConfigError> {
    let mut problems = Problems::default();
    let file = match &args.config {
        Some(path) => {
            let origin = if args.from_env.iter().any(|id| id == "config") {
                Origin::Env("LEFI_CONFIG")
            } else {
                Origin::Flag("--config")
            };
            FileValues::read(path, &origin, &mut problems)
        }
        None => FileValues::default(),
    };
    plan_with(args, file, problems, dev)
}

/// Checks the text of a config file as `lefi serve --dev --config PATH` does once it has read the
/// file, with no flags and no variables: every problem of its keys and values, each named by `path`
/// (which is only a name here) and line. It reads nothing from disk: in `--dev` mode the
/// certificate files are read by [`Plan::load`], which this does not call.
///
/// The fuzz target `config_file` (`fuzz/`) and the replay of its corpus in `cargo test` feed it
/// arbitrary text; `serve` itself goes through [`plan`].
pub fn plan_file_text(path: &Path, text: &str) -> Result<Plan, ConfigError> {
    let args = ServeArgs {
        config: Some(path.to_path_buf()),
        ..ServeArgs::default()
    };
    let dev = DevPaths {
        certs_dir: PathBuf::from("certs-dev"),
    };
    let mut problems = Problems::default();
    let file = FileValues::parse(path, text, &mut problems);
    plan_with(&args, file, problems, Some(&dev))
}

/// [`plan`] once the config file (if any) has been checked, with the problems found in it.
fn plan_with(
    args: &ServeArgs,
    file: FileValues,
    mut problems: Problems,
    dev: Option<&DevPaths>,
) -> Result<Plan, ConfigError> {
    let sources = Sources { args, file };
    let problems = &mut problems;

    let address = |t: &str| t.parse::<SocketAddr>().map_err(|_| String::new());
    let party = sources.parse(&LISTEN, "an address such as 127.0.0.1:50051", address, problems);
    let admin = sources.parse(
        &ADMIN_LISTEN,
        "an address such as 127.0.0.1:50052",
        address,
        problems,
    );
    let party_addr = party
        .as_ref()
        .map_or(default_addr(DEFAULT_PARTY_ADDR), |(a, _)| *a);
    let admin_addr = admin
        .as_ref()
        .map_or(default_addr(DEFAULT_ADMIN_ADDR), |(a, _)| *a);
    if party_addr == admin_addr && party_addr.port() != 0 {
        let named = |given: &Option<(SocketAddr, Origin)>, key: &Key| {
            given
                .as_ref()
                .map_or(format!("{} (default)", key.flag), |(_, origin)| {
                    origin.to_string()
                })
        };
        problems.push(format!(
            "{} and {} are both {party_addr}: the party and admin APIs need separate ports",
            named(&party, &LISTEN),
            named(&admin, &ADMIN_LISTEN)
        ));
    }

    let metrics = sources.parse(
        &METRICS_LISTEN,
        "an address such as 127.0.0.1:9464",
        address,
        problems,
    );
    let metrics_addr = match (metrics, dev) {
        (Some((addr, _)), _) => Some(addr),
        (None, Some(_)) => Some(default_addr(DEFAULT_DEV_METRICS_ADDR)),
        (None, None) => None,
    };
    if let Some(addr) = metrics_addr.filter(|a| a.port() != 0)
        && (addr == party_addr || addr == admin_addr)
    {
        problems.push(format!(
            "{} is {addr}, the address of an API: the metrics listener needs a port of its own",
            METRICS_LISTEN.flag
        ));
    }

    let database_url = sources.get(&DATABASE_URL);
    let url = match (&database_url, dev) {
        (Some(given), _) => given.text().to_string(),
        (None, Some(_)) => DEFAULT_DEV_DATABASE_URL.to_string(),
        (None, None) => {
            problems.push(required(
                &DATABASE_URL,
                " (sqlite://path/to/lefi.db or postgres://user@host/db)",
            ));
            String::new()
        }
    };
    if let Some(given) = &database_url {
        let known_scheme = ["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|scheme| url.starts_with(scheme));
        if !known_scheme {
            problems.push(format!(
                "{} '{}' is neither sqlite:// nor postgres://",
                given.origin,
                redact_url(&url)
            ));
        }
    }
    let whole = |t: &str| t.parse::<u32>().map_err(|e| e.to_string());
    let at_least_one = |n: &u32| {
        if *n == 0 {
            Err("must be at least 1")
        } else {
            Ok(())
        }
    };
    let max_connections = sources.parse_checked(
        &MAX_DB_CONNECTIONS,
        "a whole number",
        whole,
        at_least_one,
        DEFAULT_MAX_DB_CONNECTIONS,
        problems,
    );

    let file_setting = |key: &Key, dev_name: &str, problems: &mut Problems| -> Option<FileSetting> {
        match (sources.get(key), dev) {
            (Some(given), _) => Some(FileSetting {
                path: PathBuf::from(given.text()),
                origin: given.origin,
            }),
            (None, Some(d)) => {
                let path = d.certs_dir.join(dev_name);
                Some(FileSetting {
                    origin: Origin::Dev(path.clone()),
                    path,
                })
            }
            (None, None) => {
                problems.push(required(key, ""));
                None
            }
        }
    };
    let tls_cert = file_setting(&TLS_CERT, "server.pem", problems);
    let tls_key = file_setting(&TLS_KEY, "server.key", problems);
    let client_ca = file_setting(&CLIENT_CA, "ca.pem", problems);
    let operator_ca = file_setting(&OPERATOR_CA, "operator-ca.pem", problems);
    let crls = sources
        .get(&CRL)
        .map(|given| {
            given
                .values
                .iter()
                .map(|p| FileSetting {
                    path: PathBuf::from(p),
                    origin: given.origin.clone(),
                })
                .collect()
        })
        .unwrap_or_default();

    let duration = |t: &str| humantime::parse_duration(t).map_err(|e| e.to_string());
    let heartbeat_interval = sources.parse_checked(
        &HEARTBEAT_INTERVAL,
        "a duration such as 15s or 2m",
        duration,
        |d| {
            if (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(d) {
                Ok(())
            } else {
                Err("must be between 100ms and 1h")
            }
        },
        DEFAULT_HEARTBEAT,
        problems,
    );
    let shutdown_grace = sources
        .parse(&SHUTDOWN_GRACE, "a duration such as 10s", duration, problems)
        .map_or(DEFAULT_SHUTDOWN_GRACE, |(d, _)| d);
    let history_retention = sources.parse_checked(
        &HISTORY_RETENTION,
        "a duration such as 30d",
        duration,
        |d| {
            if *d >= MIN_HISTORY_RETENTION {
                Ok(())
            } else {
                Err("must be at least 7 days (the contract promises cursors that long)")
            }
        },
        DEFAULT_HISTORY_RETENTION,
        problems,
    );
    let max_consent_days = sources.parse_checked(
        &MAX_CONSENT_DAYS,
        "a whole number of days",
        whole,
        at_least_one,
        DEFAULT_MAX_CONSENT_DAYS,
        problems,
    );
    let max_message_bytes = sources.parse_checked(
        &MAX_MESSAGE_SIZE,
        "a size such as 4MiB or 65536",
        parse_size,
        |n| {
            if MESSAGE_BYTES_RANGE.contains(n) {
                Ok(())
            } else {
                Err("must be between 64KiB and 256MiB")
            }
        },
        DEFAULT_MAX_MESSAGE_BYTES,
        problems,
    );

    let default = PartyLimits::DEFAULT;
    let mut limit = |key: &Key, default: u32| {
        sources.parse_checked(key, "a whole number", whole, at_least_one, default, problems)
    };
    let party_limits = PartyLimits {
        max_streams: limit(&PARTY_MAX_STREAMS, default.max_streams),
        requests_per_second: limit(&PARTY_RATE_LIMIT, default.requests_per_second),
        burst: limit(&PARTY_RATE_BURST, default.burst),
    };

    let mut plan = Plan {
        party_addr,
        admin_addr,
        metrics_addr,
        database: DatabaseSettings { url, max_connections },
        tls_cert,
        tls_key,
        client_ca,
        operator_ca,
        crls,
        heartbeat_interval,
        shutdown_grace,
        history_retention,
        max_consent_days,
        max_message_bytes,
        party_limits,
        read: None,
    };
    // Without --dev the files are already there: read them now, so that their problems come with
    // the others. With --dev they may not exist yet; `load` reads them once generated.
    if dev.is_none() {
        plan.read = Some(plan.read_files(problems));
    }
    if !problems.0.is_empty() {
        return Err(ConfigError(std::mem::take(&mut problems.0)));
    }
    Ok(plan)
}

impl Plan {
    /// The settings, reading the certificate, key, CA and CRL files unless [`plan`] already did;
    /// every file that cannot be read is a problem.
    pub fn load(mut self) -> Result<Settings, ConfigError> {
        let tls = match self.read.take() {
            Some(tls) => tls,
            None => {
                let mut problems = Problems::default();
                let tls = self.read_files(&mut problems);
                if !problems.0.is_empty() {
                    return Err(ConfigError(problems.0));
                }
                tls
            }
        };
        Ok(Settings {
            party_addr: self.party_addr,
            admin_addr: self.admin_addr,
            metrics_addr: self.metrics_addr,
            database: self.database,
            tls,
            heartbeat_interval: self.heartbeat_interval,
            shutdown_grace: self.shutdown_grace,
            history_retention: self.history_retention,
            max_consent_days: self.max_consent_days,
            max_message_bytes: self.max_message_bytes,
            party_limits: self.party_limits,
        })
    }

    fn read_files(&self, problems: &mut Problems) -> TlsMaterial {
        let mut read = |file: &Option<FileSetting>| -> Vec<u8> {
            match file {
                Some(file) => read_file(file, problems),
                None => Vec::new(),
            }
        };
        TlsMaterial {
            server_cert_pem: read(&self.tls_cert),
            server_key_pem: read(&self.tls_key),
            party_ca_pem: read(&self.client_ca),
            operator_ca_pem: read(&self.operator_ca),
            crls: self.crls.iter().map(|f| read_file(f, problems)).collect(),
            crl_files: self.crls.iter().map(|f| f.path.clone()).collect(),
        }
    }
}

/// "--x is required without --dev: …", naming the three places to set it.
fn required(key: &Key, example: &str) -> String {
    format!(
        "{} is required without --dev{example}: set the flag, {}, or {} in the config file",
        key.flag, key.env, key.toml
    )
}

fn default_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn read_file(file: &FileSetting, problems: &mut Problems) -> Vec<u8> {
    match std::fs::read(&file.path) {
        Ok(bytes) if bytes.is_empty() => {
            problems.push(format!("{} '{}' is empty", file.origin, file.path.display()));
            bytes
        }
        Ok(bytes) => bytes,
        Err(e) => {
            problems.push(format!(
                "{} '{}' cannot be read: {e}",
                file.origin,
                file.path.display()
            ));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `lefi.toml` holding `text`, in a directory that lives as long as the returned guard.
    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lefi.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// Asserts that one of `problems` starts with `start`.
    fn assert_has_problem(problems: &[String], start: &str) {
        assert!(problems.iter().any(|p| p.starts_with(start)), "{problems:#?}");
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://lefi.db"), "sqlite://lefi.db");
    }

    #[test]
    fn redacts_a_password_holding_an_at_sign_or_a_line_break_whole() {
        // Found by the fuzz target `config_file`: the password ended at its first `@`, where the
        // `url` crate (and so sqlx) reads it to the last one, and a line break split "://".
        assert_eq!(redact_url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgres://u:pw@h/db?x=a@b"),
            "postgres://u:***@h/db?x=a@b"
        );
        assert_eq!(redact_url("postgres:/\n/u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://h/db?x=a:b@c"), "postgres://h/db?x=a:b@c");
    }

    #[test]
    fn every_key_follows_its_flag() {
        for key in KEYS {
            assert_eq!(key.flag, format!("--{}", key.toml.replace('_', "-")));
            assert_eq!(key.env, format!("LEFI_{}", key.toml.to_uppercase()));
        }
    }

    fn problems_of(args: &ServeArgs) -> Vec<String> {
        match plan(args, None) {
            Ok(_) => Vec::new(),
            Err(ConfigError(problems)) => problems,
        }
    }

    #[test]
    fn every_file_problem_at_once_each_with_its_line() {
        let (_dir, path) = config_file(
            "listen = \"nowhere\"\nmax_db_connections = \"eight\"\ncolour = \"blue\"\n\
             crl = [\"a.crl\", 7]\nheartbeat_interval = \"soon\"\n",
        );
        let args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let problems = problems_of(&args);
        let file = path.display().to_string();
        for expected in [
            format!("{file}:1 listen 'nowhere' is not an address"),
            format!("{file}:2 max_db_connections: expected an integer, found string"),
            format!("{file}:3 colour: unknown key"),
            format!("{file}:4 crl: expected an array of strings, found integer"),
            format!("{file}:5 heartbeat_interval 'soon' is not a duration"),
            "--database-url is required".to_string(),
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(&expected)),
                "{expected} not in {problems:#?}"
            );
        }
    }

    #[test]
    fn a_syntax_error_names_its_line_and_the_rest_is_still_checked() {
        let (_dir, path) = config_file("listen = \"127.0.0.1:1\"\n\nadmin_listen = \n");
        let args = ServeArgs {
            config: Some(path.clone()),
            max_consent_days: Some("forever".to_string()),
            ..ServeArgs::default()
        };
        let problems = problems_of(&args);
        assert_has_problem(&problems, &format!("{}:3: not valid TOML", path.display()));
        assert_has_problem(&problems, "--max-consent-days 'forever' is not a whole number");
    }

    #[test]
    fn the_example_configuration_holds_only_keys_and_values_serve_accepts() {
        let args = ServeArgs {
            config: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lefi.example.toml")),
            ..ServeArgs::default()
        };
        // Its certificate paths do not exist here; everything else must be accepted.
        let problems: Vec<String> = problems_of(&args)
            .into_iter()
            .filter(|p| !p.contains("cannot be read"))
            .collect();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn message_sizes_take_binary_units_and_stay_within_bounds() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("4MiB"), Ok(4 * 1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Ok(512 * 1024));
        assert!(parse_size("4GB").is_err());
        assert!(parse_size("lots").is_err());
        for (given, problem) in [
            ("1KiB", "--max-message-size must be between 64KiB and 256MiB"),
            ("big", "--max-message-size 'big' is not a size"),
        ] {
            let args = ServeArgs {
                max_message_size: Some(given.to_string()),
                ..ServeArgs::default()
            };
            let problems = problems_of(&args);
            assert_has_problem(&problems, problem);
        }
    }

    #[test]
    fn values_from_the_environment_are_named_by_their_variable() {
        let args = ServeArgs {
            listen: Some("nowhere".to_string()),
            admin_listen: Some("also nowhere".to_string()),
            from_env: vec!["listen".to_string()],
            ..ServeArgs::default()
        };
        let problems = problems_of(&args);
        assert_has_problem(&problems, "LEFI_LISTEN 'nowhere'");
        assert_has_problem(&problems, "--admin-listen 'also nowhere'");
    }

    #[test]
    fn metrics_are_off_unless_asked_and_on_with_dev_at_the_conventional_port() {
        let dev = DevPaths {
            certs_dir: PathBuf::from("certs-dev"),
        };
        let on_dev = plan(&ServeArgs::default(), Some(&dev)).unwrap();
        assert_eq!(on_dev.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        let (_dir, path) = config_file("metrics_listen = \"127.0.0.1:7004\"\n");
        let from_file = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert_eq!(
            plan(&from_file, Some(&dev)).unwrap().metrics_addr,
            Some("127.0.0.1:7004".parse().unwrap())
        );
        let without_dev = ServeArgs {
            database_url: Some("sqlite://x.db".to_string()),
            ..ServeArgs::default()
        };
        let problems = problems_of(&without_dev);
        assert!(!problems.iter().any(|p| p.contains("metrics")), "{problems:#?}");
        for (given, problem) in [
            (
                "127.0.0.1:50052",
                "--metrics-listen is 127.0.0.1:50052, the address of an API",
            ),
            ("port 9464", "--metrics-listen 'port 9464'"),
        ] {
            let args = ServeArgs {
                metrics_listen: Some(given.to_string()),
                ..ServeArgs::default()
            };
            assert_has_problem(&problems_of(&args), problem);
        }
    }

    #[test]
    fn history_is_kept_thirty_days_unless_set_and_never_under_seven() {
        let dev = DevPaths {
            certs_dir: PathBuf::from("certs-dev"),
        };
        assert_eq!(
            plan(&ServeArgs::default(), Some(&dev)).unwrap().history_retention,
            DEFAULT_HISTORY_RETENTION
        );
        let ninety = ServeArgs {
            history_retention: Some("90d".to_string()),
            ..ServeArgs::default()
        };
        assert_eq!(
            plan(&ninety, Some(&dev)).unwrap().history_retention,
            Duration::from_secs(90 * 24 * 3600)
        );
        let six = ServeArgs {
            history_retention: Some("6days".to_string()),
            ..ServeArgs::default()
        };
        assert_has_problem(&problems_of(&six), "--history-retention must be at least 7 days");
    }

    #[test]
    fn flags_win_over_the_file() {
        let (_dir, path) = config_file("listen = \"127.0.0.1:7001\"\nadmin_listen = \"127.0.0.1:7002\"\n");
        let args = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:7003".to_string()),
            ..ServeArgs::default()
        };
        let plan = plan(
            &args,
            Some(&DevPaths {
                certs_dir: PathBuf::from("certs-dev"),
            }),
        )
        .unwrap();
        assert_eq!(plan.party_addr.port(), 7003);
        assert_eq!(plan.admin_addr.port(), 7002);
    }
}

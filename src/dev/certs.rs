//! A development certificate authority, built with rcgen.
//!
//! `lefi serve --dev` and `lefi dev-certs` use it to write `certs-dev/`; the black-box tests use it
//! to generate fresh certificates for every test run. Nothing here is meant for production: a real
//! deployment brings certificates from the agency's own PKI.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Errors of certificate generation and the files it writes.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write '{path}': {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read '{path}': {source} (run `lefi dev-certs` first)")]
    Read { path: PathBuf, source: std::io::Error },
}

/// A certificate and its private key, both PEM (the key PKCS#8).
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate's serial number (big-endian bytes), for revocation lists.
    pub serial: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &hex::encode(&self.serial))
            .finish_non_exhaustive()
    }
}

/// A certificate authority that can issue server and client certificates.
pub struct DevCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl DevCa {
    /// Creates a new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, DevCertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, Some("lefi development CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem,
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA written earlier (`ca.pem`, `ca.key`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, DevCertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PEM).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a server certificate valid for the given DNS names and IP addresses.
    pub fn issue_server(&self, names: &[&str]) -> Result<Issued, DevCertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(names.first().copied().unwrap_or("localhost"), None);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*n).try_into()?)),
            })
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue_leaf(params, None)
    }

    /// Issues a client certificate for `common_name` (a party or an operator).
    pub fn issue_client(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> Result<Issued, DevCertError> {
        self.issue_client_valid(common_name, organization, None)
    }

    /// Issues a client certificate with an explicit validity window (tests use it for expired
    /// and not-yet-valid certificates).
    pub fn issue_client_valid(
        &self,
        common_name: &str,
        organization: Option<&str>,
        validity: Option<(OffsetDateTime, OffsetDateTime)>,
    ) -> Result<Issued, DevCertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, organization);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue_leaf(params, validity)
    }

    /// A certificate revocation list naming the given serial numbers, valid from now for a week.
    pub fn crl_pem(&self, revoked_serials: &[Vec<u8>]) -> Result<String, DevCertError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    fn issue_leaf(
        &self,
        mut params: CertificateParams,
        validity: Option<(OffsetDateTime, OffsetDateTime)>,
    ) -> Result<Issued, DevCertError> {
        let key = KeyPair::generate()?;
        let now = OffsetDateTime::now_utc();
        let (not_before, not_after) =
            validity.unwrap_or((now - Duration::days(1), now + Duration::days(825)));
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: serial.to_bytes(),
        })
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

fn random_serial() -> SerialNumber {
    // A v7 UUID is 16 bytes with 74 random bits; clear the top bit so the DER integer stays positive.
    let mut bytes = *uuid::Uuid::now_v7().as_bytes();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// The demo insurer registered by `serve --dev` (synthetic organisation).
pub const DEMO_INSURER: (&str, &str) = ("556677-8899", "Demoförsäkringar AB (demo)");
/// The demo municipality registered by `serve --dev` (synthetic organisation).
pub const DEMO_MUNICIPALITY: (&str, &str) = ("222000-0000", "Demo kommun, socialnämnden (demo)");
/// The demo operator's name.
pub const DEMO_OPERATOR: &str = "Demo Operatör";

/// The files of a development certificate directory.
#[derive(Debug, Clone)]
pub struct DevCertPaths {
    pub dir: PathBuf,
}

impl DevCertPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// What [`ensure_dev_dir`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevDirOutcome {
    Created,
    AlreadyPresent,
}

const DEV_FILES: [&str; 10] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "operator.pem",
    "operator.key",
    "insurer.pem",
    "insurer.key",
    "municipality.pem",
    "municipality.key",
];

/// Writes a complete development directory (CA, server, operator, insurer, municipality) unless all
/// files already exist. With `force`, regenerates everything.
pub fn ensure_dev_dir(dir: &Path, force: bool) -> Result<DevDirOutcome, DevCertError> {
    if !force && DEV_FILES.iter().all(|f| dir.join(f).is_file()) {
        return Ok(DevDirOutcome::AlreadyPresent);
    }
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = DevCa::generate("lefi development CA")?;
    let server = ca.issue_server(&["localhost", "127.0.0.1", "::1"])?;
    let operator = ca.issue_client(DEMO_OPERATOR, Some("Försäkringskassan (demo operator)"))?;
    let insurer = ca.issue_client(DEMO_INSURER.1, Some(DEMO_INSURER.0))?;
    let municipality = ca.issue_client(DEMO_MUNICIPALITY.1, Some(DEMO_MUNICIPALITY.0))?;
    write(dir, "ca.pem", ca.cert_pem())?;
    write_key(dir, "ca.key", ca.key_pem())?;
    for (stem, issued) in [
        ("server", &server),
        ("operator", &operator),
        ("insurer", &insurer),
        ("municipality", &municipality),
    ] {
        write(dir, &format!("{stem}.pem"), &issued.cert_pem)?;
        write_key(dir, &format!("{stem}.key"), &issued.key_pem)?;
    }
    Ok(DevDirOutcome::Created)
}

/// Issues a party certificate from the CA in `dir` and writes `STEM.pem` and `STEM.key` there.
pub fn issue_party_files(
    dir: &Path,
    org_number: &str,
    name: &str,
    stem: &str,
) -> Result<(PathBuf, PathBuf), DevCertError> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|source| DevCertError::Read {
            path: dir.join(f),
            source,
        })
    };
    let ca = DevCa::from_pem(&read("ca.pem")?, &read("ca.key")?)?;
    let issued = ca.issue_client(name, Some(org_number))?;
    let cert = write(dir, &format!("{stem}.pem"), &issued.cert_pem)?;
    let key = write_key(dir, &format!("{stem}.key"), &issued.key_pem)?;
    Ok((cert, key))
}

fn write(dir: &Path, file: &str, contents: &str) -> Result<PathBuf, DevCertError> {
    let path = dir.join(file);
    std::fs::write(&path, contents).map_err(|source| DevCertError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn write_key(dir: &Path, file: &str, contents: &str) -> Result<PathBuf, DevCertError> {
    let path = write(dir, file, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
            DevCertError::Write {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(path)
}

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

impl Issued {
    /// The PEM files a client presents with this certificate, trusting `ca`.
    pub fn client_pem(&self, ca: &DevCa) -> crate::client::ClientPem {
        crate::client::ClientPem {
            cert: self.cert_pem.clone().into_bytes(),
            key: self.key_pem.clone().into_bytes(),
            ca: ca.cert_pem().as_bytes().to_vec(),
        }
    }
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
        self.crl_pem_numbered(revoked_serials, 1)
    }

    /// Like [`DevCa::crl_pem`], with CRL number `number` (a PKI numbers each CRL it issues).
    pub fn crl_pem_numbered(&self, revoked_serials: &[Vec<u8>], number: u64) -> Result<String, DevCertError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
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
/// The demo statistics authority registered by `serve --dev`: it orders individual data for
/// statistics (synthetic organisation).
pub const DEMO_STATISTICS_AUTHORITY: (&str, &str) = ("202200-1230", "Demo statistikmyndighet (demo)");
/// The demo statistics unit: two statisticians, since the confidentiality review is never made by
/// the quote's author.
pub const DEMO_STATISTICIANS: [(&str, &str); 2] = [
    ("statistician", "Demo Statistiker"),
    ("reviewer", "Demo Granskare"),
];
/// The demo operator's name.
pub const DEMO_OPERATOR: &str = "Demo Operatör";
/// The demo ingest operator's name.
pub const DEMO_INGEST_OPERATOR: &str = "Demo Inläsning";

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevDirOutcome {
    /// Every file was (re)generated.
    Created,
    /// Some files were missing (or issued by a CA that had to be made); these were written, the
    /// rest kept.
    Completed(Vec<String>),
    /// Every file was there; nothing was written.
    AlreadyPresent,
}

/// Which development CA issues a certificate. As in production, parties and operators have
/// separate CAs, so that a party certificate fails the handshake on the admin listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DevIssuer {
    /// `ca.pem`: the party CA (`--client-ca`); it also signs the server certificate, so clients
    /// trust the server with `--ca ca.pem`.
    Party,
    /// `operator-ca.pem`: the operator CA (`--operator-ca`).
    Operator,
}

/// The two CAs, by file stem, with their names.
const DEV_CAS: [(DevIssuer, &str, &str); 2] = [
    (DevIssuer::Party, "ca", "lefi development CA"),
    (DevIssuer::Operator, "operator-ca", "lefi development operator CA"),
];

/// One certificate of a development directory.
struct DevLeaf {
    /// Written as `STEM.pem` and `STEM.key`.
    stem: &'static str,
    issuer: DevIssuer,
    /// Common name and organisation of a client certificate; `None` for the server certificate.
    subject: Option<(&'static str, &'static str)>,
}

const DEV_LEAVES: [DevLeaf; 8] = [
    DevLeaf {
        stem: "server",
        issuer: DevIssuer::Party,
        subject: None,
    },
    DevLeaf {
        stem: "operator",
        issuer: DevIssuer::Operator,
        subject: Some((DEMO_OPERATOR, "Försäkringskassan (demo operator)")),
    },
    DevLeaf {
        stem: "ingest",
        issuer: DevIssuer::Operator,
        subject: Some((DEMO_INGEST_OPERATOR, "Försäkringskassan (demo ingest)")),
    },
    DevLeaf {
        stem: "insurer",
        issuer: DevIssuer::Party,
        subject: Some((DEMO_INSURER.1, DEMO_INSURER.0)),
    },
    DevLeaf {
        stem: "municipality",
        issuer: DevIssuer::Party,
        subject: Some((DEMO_MUNICIPALITY.1, DEMO_MUNICIPALITY.0)),
    },
    DevLeaf {
        stem: "statistics",
        issuer: DevIssuer::Party,
        subject: Some((DEMO_STATISTICS_AUTHORITY.1, DEMO_STATISTICS_AUTHORITY.0)),
    },
    DevLeaf {
        stem: DEMO_STATISTICIANS[0].0,
        issuer: DevIssuer::Operator,
        subject: Some((
            DEMO_STATISTICIANS[0].1,
            "Försäkringskassan (demo statistics unit)",
        )),
    },
    DevLeaf {
        stem: DEMO_STATISTICIANS[1].0,
        issuer: DevIssuer::Operator,
        subject: Some((
            DEMO_STATISTICIANS[1].1,
            "Försäkringskassan (demo statistics unit)",
        )),
    },
];

/// Every file of a complete development directory.
pub fn dev_files() -> Vec<String> {
    DEV_CAS
        .iter()
        .map(|(_, stem, _)| *stem)
        .chain(DEV_LEAVES.iter().map(|leaf| leaf.stem))
        .flat_map(|stem| [format!("{stem}.pem"), format!("{stem}.key")])
        .collect()
}

/// Makes `dir` a complete development directory: the party CA (`ca`), the operator CA
/// (`operator-ca`), and the server, operator, ingest, statistician, reviewer, insurer,
/// municipality and statistics-authority certificates.
/// Files already there are kept, so certificates issued earlier (`dev-certs issue-party`) keep
/// working; a missing CA is created and everything it issues is issued anew (a directory from
/// before the separate operator CA gets one, with new operator and ingest certificates). With
/// `force`, everything is regenerated.
pub fn ensure_dev_dir(dir: &Path, force: bool) -> Result<DevDirOutcome, DevCertError> {
    let present = |file: &str| !force && dir.join(file).is_file();
    if dev_files().iter().all(|f| present(f)) {
        return Ok(DevDirOutcome::AlreadyPresent);
    }
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    let mut cas = Vec::new();
    for (issuer, stem, common_name) in DEV_CAS {
        let (pem, key) = (format!("{stem}.pem"), format!("{stem}.key"));
        let (ca, new) = if present(&pem) && present(&key) {
            (DevCa::from_pem(&read(dir, &pem)?, &read(dir, &key)?)?, false)
        } else {
            let ca = DevCa::generate(common_name)?;
            write(dir, &pem, ca.cert_pem())?;
            write_key(dir, &key, ca.key_pem())?;
            written.extend([pem, key]);
            (ca, true)
        };
        cas.push((issuer, ca, new));
    }
    for leaf in DEV_LEAVES {
        let Some((_, ca, ca_is_new)) = cas.iter().find(|(i, _, _)| *i == leaf.issuer) else {
            continue;
        };
        let (pem, key) = (format!("{}.pem", leaf.stem), format!("{}.key", leaf.stem));
        if !ca_is_new && present(&pem) && present(&key) {
            continue;
        }
        let issued = match leaf.subject {
            None => ca.issue_server(&["localhost", "127.0.0.1", "::1"])?,
            Some((common_name, organization)) => ca.issue_client(common_name, Some(organization))?,
        };
        write(dir, &pem, &issued.cert_pem)?;
        write_key(dir, &key, &issued.key_pem)?;
        written.extend([pem, key]);
    }
    if written.len() == dev_files().len() {
        Ok(DevDirOutcome::Created)
    } else {
        Ok(DevDirOutcome::Completed(written))
    }
}

fn read(dir: &Path, file: &str) -> Result<String, DevCertError> {
    std::fs::read_to_string(dir.join(file)).map_err(|source| DevCertError::Read {
        path: dir.join(file),
        source,
    })
}

/// Issues a party certificate from the party CA in `dir` (`ca.pem`) and writes `STEM.pem` and `STEM.key` there.
pub fn issue_party_files(
    dir: &Path,
    org_number: &str,
    name: &str,
    stem: &str,
) -> Result<(PathBuf, PathBuf), DevCertError> {
    let ca = DevCa::from_pem(&read(dir, "ca.pem")?, &read(dir, "ca.key")?)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer_of(dir: &Path, stem: &str) -> String {
        let pem = std::fs::read(dir.join(format!("{stem}.pem"))).unwrap();
        let (_, der) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = der.parse_x509().unwrap();
        cert.issuer().to_string()
    }

    #[test]
    fn parties_and_operators_have_separate_cas() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ensure_dev_dir(dir.path(), false).unwrap(), DevDirOutcome::Created);
        let party_ca = issuer_of(dir.path(), "insurer");
        let operator_ca = issuer_of(dir.path(), "operator");
        assert_ne!(party_ca, operator_ca);
        assert_eq!(issuer_of(dir.path(), "ingest"), operator_ca);
        assert_eq!(issuer_of(dir.path(), "server"), party_ca);
        assert_eq!(
            ensure_dev_dir(dir.path(), false).unwrap(),
            DevDirOutcome::AlreadyPresent
        );
    }

    #[test]
    fn a_directory_without_the_operator_ca_gets_one_and_keeps_the_party_files() {
        let dir = tempfile::tempdir().unwrap();
        ensure_dev_dir(dir.path(), false).unwrap();
        let insurer = std::fs::read(dir.path().join("insurer.pem")).unwrap();
        let operator = std::fs::read(dir.path().join("operator.pem")).unwrap();
        std::fs::remove_file(dir.path().join("operator-ca.pem")).unwrap();
        std::fs::remove_file(dir.path().join("operator-ca.key")).unwrap();
        let DevDirOutcome::Completed(written) = ensure_dev_dir(dir.path(), false).unwrap() else {
            panic!("expected some files written");
        };
        for file in ["operator-ca.pem", "operator.pem", "ingest.key"] {
            assert!(written.iter().any(|w| w == file), "{file} not in {written:?}");
        }
        assert_eq!(std::fs::read(dir.path().join("insurer.pem")).unwrap(), insurer);
        assert_ne!(std::fs::read(dir.path().join("operator.pem")).unwrap(), operator);
        assert_ne!(
            issuer_of(dir.path(), "operator"),
            issuer_of(dir.path(), "insurer")
        );
    }
}

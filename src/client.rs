//! Connecting to lefi over mTLS: used by `lefi client`, `lefi admin` and the tests, and a short,
//! complete example for integrators.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Problems connecting.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {what} '{path}': {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid server address '{addr}': {source}")]
    Address {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
}

/// The PEM files a client presents and trusts.
#[derive(Debug, Clone)]
pub struct ClientPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

impl ClientPem {
    /// Reads the three files.
    pub fn read(cert: &Path, key: &Path, ca: &Path) -> Result<Self, ClientError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| ClientError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(Self {
            cert: read("client certificate (--cert)", cert)?,
            key: read("client key (--key)", key)?,
            ca: read("server CA (--ca)", ca)?,
        })
    }
}

/// Opens an mTLS channel to `addr` (e.g. `https://localhost:50051`). `server_name` is the name the
/// server certificate must carry; by default the host of `addr`.
pub async fn connect(addr: &str, pem: &ClientPem, server_name: Option<&str>) -> Result<Channel, ClientError> {
    let endpoint = endpoint(addr, pem, server_name)?;
    endpoint.connect().await.map_err(|source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    })
}

/// The endpoint [`connect`] uses, for callers that want a lazy channel.
pub fn endpoint(addr: &str, pem: &ClientPem, server_name: Option<&str>) -> Result<Endpoint, ClientError> {
    let address_err = |source| ClientError::Address {
        addr: addr.to_string(),
        source,
    };
    let endpoint = Endpoint::from_shared(addr.to_string()).map_err(address_err)?;
    let host = server_name
        .map(str::to_string)
        .or_else(|| {
            endpoint
                .uri()
                .host()
                .map(|h| h.trim_matches(['[', ']']).to_string())
        })
        .unwrap_or_else(|| "localhost".to_string());
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pem.ca))
        .identity(Identity::from_pem(&pem.cert, &pem.key))
        .domain_name(host);
    endpoint
        .tls_config(tls)
        .map_err(address_err)
        .map(|e| e.connect_timeout(Duration::from_secs(10)).tcp_nodelay(true))
}

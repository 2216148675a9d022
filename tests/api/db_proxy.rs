//! A TCP proxy between a server under test and PostgreSQL, for storage outages on demand: cut
//! every connection (what a PostgreSQL restart does to its clients), refuse new ones (the database
//! is down), or accept them and never answer (a network black hole).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::JoinHandle;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward to PostgreSQL.
    Forward,
    /// Close every new connection at once.
    Refuse,
    /// Accept new connections and never forward a byte.
    BlackHole,
}

/// Where PostgreSQL is.
#[derive(Debug, Clone)]
enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

struct Shared {
    mode: Mode,
    connections: Vec<JoinHandle<()>>,
}

/// A running proxy; stops when dropped.
pub struct DbProxy {
    /// The database URL that goes through the proxy.
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    accept: JoinHandle<()>,
}

impl DbProxy {
    /// A proxy in front of the database at `db_url` (`postgres://user@host[:port]/db[?host=/socket/dir]`).
    pub async fn start(db_url: &str) -> DbProxy {
        let (upstream, url_for) = parse(db_url);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared {
            mode: Mode::Forward,
            connections: Vec::new(),
        }));
        let accept = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        DbProxy {
            url: url_for(port),
            shared,
            accept,
        }
    }

    /// From now on, treat new connections so; leaving [`Mode::Forward`] also cuts every open one.
    pub fn set(&self, mode: Mode) {
        let mut shared = self.shared.lock().unwrap();
        shared.mode = mode;
        if mode != Mode::Forward {
            for connection in shared.connections.drain(..) {
                connection.abort();
            }
        }
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for connection in self.shared.lock().unwrap().connections.drain(..) {
            connection.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: Upstream, shared: Arc<Mutex<Shared>>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let mut shared = shared.lock().unwrap();
        shared.connections.retain(|c| !c.is_finished());
        let task = match shared.mode {
            Mode::Refuse => {
                drop(client);
                continue;
            }
            Mode::BlackHole => tokio::spawn(async move {
                let _held = client;
                std::future::pending::<()>().await;
            }),
            Mode::Forward => {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    match upstream {
                        Upstream::Unix(path) => {
                            if let Ok(mut server) = UnixStream::connect(&path).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                        Upstream::Tcp(addr) => {
                            if let Ok(mut server) = TcpStream::connect(&addr).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                    }
                    let _ = client.shutdown().await;
                })
            }
        };
        shared.connections.push(task);
    }
}

/// Where PostgreSQL listens, and the URL that reaches the same database through a proxy port.
fn parse(db_url: &str) -> (Upstream, impl Fn(u16) -> String) {
    let (base, query) = db_url.split_once('?').unwrap_or((db_url, ""));
    let (_scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let mut socket_dir = None;
    let mut port = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("host", v)) if v.starts_with('/') => socket_dir = Some(v.to_string()),
            Some(("port", v)) => port = Some(v.to_string()),
            _ => kept.push(pair.to_string()),
        }
    }
    let (host, authority_port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), Some(p.to_string())),
        None => (hostport.to_string(), None),
    };
    let port = port.or(authority_port).unwrap_or_else(|| "5432".to_string());
    let upstream = match socket_dir {
        Some(dir) => Upstream::Unix(PathBuf::from(dir).join(format!(".s.PGSQL.{port}"))),
        None => Upstream::Tcp(format!("{host}:{port}")),
    };
    let database = database.to_string();
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    (upstream, move |proxy_port| {
        format!("postgres://{userinfo}127.0.0.1:{proxy_port}/{database}{query}")
    })
}

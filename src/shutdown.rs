//! Turning SIGINT and SIGTERM into a cancellation token.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// A token that is cancelled on the first SIGINT (Ctrl-C) or SIGTERM. The handlers are installed
/// before this returns, so a signal that arrives right after start-up is not missed (it would
/// otherwise kill the process with the default action).
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    let signalled = listen();
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("shutdown requested: draining open calls");
        trigger.cancel();
    });
    token
}

/// Installs the handlers now; the future completes at the first signal.
#[cfg(unix)]
fn listen() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut only), Err(e)) | (Err(e), Ok(mut only)) => {
                tracing::warn!(error = %e, "cannot listen for one of SIGTERM and SIGINT; only the other stops the server");
                only.recv().await;
            }
            (Err(e), Err(_)) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM or SIGINT; stop the server by killing it");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(not(unix))]
fn listen() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

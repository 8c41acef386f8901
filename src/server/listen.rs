//! The accept loop: each connection gets the web config in force when it arrives (TLS with
//! the certificates on disk now, as exporter-toolkit does), a deadline for its TLS handshake
//! and request headers, and is served over HTTP/1.1 with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::web_config::WebConfigFile;

/// A slow or silent client gets this long for its TLS handshake and its request headers.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// What a request knows of its connection.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The agent's own address it came in on: on loopback, only loopback host names are
    /// served (DNS rebinding).
    pub local: SocketAddr,
}

pub async fn serve(
    listener: TcpListener,
    app: Router,
    web: Arc<WebConfigFile>,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (tcp, _peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // Out of descriptors, say: back off a moment instead of spinning.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(local) = tcp.local_addr() else {
            continue;
        };
        let config = web.current();
        let app = app.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            match &config.tls {
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve_one(stream, app, Connection { local }, shutdown).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake refused")
                        }
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
                None => serve_one(tcp, app, Connection { local }, shutdown).await,
            }
        });
    }
    connections.close();
    // Requests in flight finish; keep-alive connections are told to close.
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
}

async fn serve_one<S>(stream: S, app: Router, conn: Connection, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(conn);
        request
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

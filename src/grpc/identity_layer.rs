//! The tower layer that resolves the caller's identity once per request, after the TLS handshake,
//! and puts the principal into the request's extensions (see [`crate::identity`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::identity::{Principal, Resolver, is_open_path};

/// Resolves the caller's identity for every request on one listener.
#[derive(Debug, Clone)]
pub struct IdentityLayer {
    resolver: Arc<Resolver>,
}

impl IdentityLayer {
    pub fn new(resolver: Resolver) -> Self {
        Self {
            resolver: Arc::new(resolver),
        }
    }
}

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// The service [`IdentityLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct IdentityService<S> {
    inner: S,
    resolver: Arc<Resolver>,
}

impl<S, B> tower::Service<http::Request<B>> for IdentityService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request; the fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let resolver = self.resolver.clone();
        // Set by the request-id layer outside this one; quoted by clients, in our logs and in the
        // ErrorInfo of every error the call ends with.
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(id) = &request_id {
            tracing::Span::current().record("request_id", id.as_str());
        }
        Box::pin(crate::grpc::status::in_request(request_id, async move {
            if is_open_path(req.uri().path()) {
                return inner.call(req).await;
            }
            let leaf = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.peer_certs())
                .and_then(|chain| chain.first().cloned());
            match resolver.resolve(leaf.as_ref()).await {
                Ok(Principal::Party(party)) => {
                    tracing::Span::current().record("party", party.party_id.as_str());
                    req.extensions_mut().insert(party);
                    inner.call(req).await
                }
                Ok(Principal::Operator(operator)) => {
                    tracing::Span::current().record("operator", operator.name.as_str());
                    req.extensions_mut().insert(operator);
                    inner.call(req).await
                }
                Err(e) => Ok(tonic::Status::from(e).into_http()),
            }
        }))
    }
}

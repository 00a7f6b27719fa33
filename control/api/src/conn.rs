//! One API connection, from accept to close, under [`crate::http_guard`]'s limits: TLS when
//! configured, HTTP/1.1, each request marked in progress until its response has been handed
//! over (503 `busy` when only the health checks' share is left), and its body read within
//! the request's deadline (408) and size limit (413) before any handler sees it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::error::ApiError;
use super::ApiContext;
use crate::http_guard::{Admitted, InFlight, Refusal};

/// Largest request body accepted (a server spec is well under 4 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// When the request's body must have arrived (a request extension).
#[derive(Debug, Clone, Copy)]
struct Deadline(Instant);

/// Serves one accepted connection until it ends or [`Admitted::serve`] cuts it.
pub async fn serve(
    conn: Admitted,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
) {
    let conn = Arc::new(conn);
    let io = conn.track(stream);
    let on_request = conn.clone();
    let svc =
        hyper::service::service_fn(move |req| handle(app.clone(), on_request.clone(), peer, req));
    let mut http = hyper::server::conn::http1::Builder::new();
    // The watchdog in http_guard keeps every deadline; hyper's own would be a second one.
    http.timer(TokioTimer::new()).header_read_timeout(None);
    conn.serve(async move {
        let _ = match tls {
            Some(acceptor) => match acceptor.accept(io).await {
                Ok(s) => http.serve_connection(TokioIo::new(s), svc).await,
                Err(_) => return,
            },
            None => http.serve_connection(TokioIo::new(io), svc).await,
        };
    })
    .await;
}

async fn handle(
    app: Router,
    conn: Arc<Admitted>,
    peer: SocketAddr,
    mut req: hyper::Request<Incoming>,
) -> Result<Response, Infallible> {
    let health = req.uri().path().starts_with("/health/");
    let Some(flight) = conn.begin(health) else {
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the API is answering as many requests as it takes; retry shortly",
        )
        .into_response();
        let h = resp.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(resp);
    };
    req.extensions_mut().insert(ConnectInfo(peer));
    req.extensions_mut().insert(Deadline(flight.deadline()));
    let resp = app.oneshot(req).await?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        Body::new(Answering {
            body,
            _flight: flight,
        }),
    ))
}

/// A response body that keeps its request in progress until it has been handed over.
struct Answering {
    body: Body,
    _flight: InFlight,
}

impl HttpBody for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Middleware: reads the whole body (at most [`MAX_BODY`]) by the request's deadline, then
/// hands the request on with it. A client trickling its body is answered 408 and closed.
pub async fn read_body(State(ctx): State<Arc<ApiContext>>, req: Request, next: Next) -> Response {
    let deadline = req
        .extensions()
        .get::<Deadline>()
        .map(|d| d.0)
        .unwrap_or_else(|| Instant::now() + ctx.request_timeout);
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout_at(deadline, Limited::new(body, MAX_BODY).collect()).await;
    let error = match read {
        Ok(Ok(collected)) => {
            let req = Request::from_parts(parts, Body::from(collected.to_bytes()));
            return next.run(req).await;
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            format!("the request body is over {} KiB", MAX_BODY / 1024),
        ),
        Ok(Err(_)) => ApiError::bad_request("the request body could not be read"),
        Err(_) => {
            ctx.http.refused("api", Refusal::RequestTimeout);
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request did not arrive within {:?} of its first byte",
                    ctx.request_timeout
                ),
            )
        }
    };
    let mut resp = error.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

//! The control API: what dashboards, the hosting platform's admin portal, status bots and
//! the `warden` CLI drive Warden through. JSON under `/v1`, described by an OpenAPI 3
//! document generated from these handlers (`/v1/openapi.json`), so it cannot drift.
//!
//! A request's path: [`serve`] accepts under the connection limits of
//! [`crate::http_guard`] and [`conn`] serves the connection (TLS when configured) →
//! [`auth::layer`] checks the bearer token, its role and its rate limit, and audits writes →
//! [`conn::read_body`] reads the body by its deadline → a handler in [`servers`],
//! [`actions`], [`backups`], [`events`], `nodes`, … → the store, the catalog of API-defined servers and the
//! lifecycle engine. Every error is an [`error::ApiError`] with a JSON body.
//!
//! Also here: [`settings`](ApiSettings) (`[api]`), [`spec`] (the API's server spec and the
//! [`ServerCatalog`] the binary implements), `dto` (the API's shapes of engine types),
//! [`tokens`] and `admin` (`/v1/tokens`, `/v1/audit`), [`admin_socket`] (the local socket
//! that issues the first token), `usage`, `routes`, `health`, `streams` (event-stream
//! limits) and `tls`. The crate reaches the engine through [`warden_lifecycle::Engine`] and
//! API-defined servers through [`ServerCatalog`]; it never reads config files or builds
//! runtimes.

mod actions;
mod admin;
pub mod admin_socket;
pub mod auth;
mod backups;
mod capacity;
mod conn;
mod dto;
pub mod error;
mod events;
mod health;
pub mod http_guard;
mod nodes;
mod routes;
mod servers;
mod settings;
pub mod spec;
mod streams;
mod tls;
pub mod tokens;
mod usage;

pub use settings::ApiSettings;
pub use spec::{ServerCatalog, ServerSpec};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus::IntCounterVec;
use tracing::{info, warn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use warden_proxy::Edge;
use warden_store::StateStore;

use crate::http_guard::{Admission, HttpMetrics, Limits};
use error::ApiError;
use streams::Streams;
use warden_lifecycle::Engine;

/// What the handlers work with.
pub struct ApiContext {
    pub store: Arc<dyn StateStore>,
    pub engine: Arc<Engine>,
    pub edge: Arc<Edge>,
    pub catalog: Arc<dyn ServerCatalog>,
    pub actions: actions::Actions,
    pub limiter: pingora_limits::rate::Rate,
    pub rate_limit: u32,
    /// Ids of the config file's servers (not changeable through the API).
    pub configured: Vec<String>,
    /// The edge's listen addresses, for readiness.
    pub edge_listen: Vec<String>,
    /// `warden_api_requests_total{method,status}`.
    pub requests: IntCounterVec,
    /// Refusals and open connections (`warden_http_*`).
    pub http: HttpMetrics,
    /// Open event streams per token.
    pub streams: Arc<Streams>,
    /// A request's head and body must arrive within this of its first byte.
    pub request_timeout: Duration,
}

impl ApiContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn StateStore>,
        engine: Arc<Engine>,
        edge: Arc<Edge>,
        catalog: Arc<dyn ServerCatalog>,
        section: &ApiSettings,
        configured: Vec<String>,
        edge_listen: Vec<String>,
        requests: IntCounterVec,
        http: HttpMetrics,
    ) -> Self {
        ApiContext {
            store,
            engine,
            edge,
            catalog,
            actions: Default::default(),
            limiter: pingora_limits::rate::Rate::new(Duration::from_secs(1)),
            rate_limit: section.rate_limit,
            configured,
            edge_listen,
            requests,
            streams: Streams::new(
                section.max_streams_per_token,
                section.max_streams,
                http.clone(),
            ),
            http,
            request_timeout: section.request_timeout,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Warden control API", description = "Servers, actions, backups, sessions, usage, events, nodes, routes and tokens of a Warden appliance. Every /v1 route but this document needs `Authorization: Bearer <token>`; see docs/operations.md."),
    paths(
        servers::list, servers::get, servers::create, servers::update, servers::delete,
        actions::start, actions::get, actions::list,
        backups::list, backups::create,
        usage::sessions, usage::usage,
        events::list, events::stream,
        routes::table, routes::resolve,
        nodes::list, nodes::get, nodes::act, nodes::consolidate, nodes::gc,
        capacity::view,
        admin::list, admin::create, admin::revoke, admin::audit,
        health::live, health::ready,
    ),
    // Only used as a path parameter, which utoipa does not collect on its own.
    components(schemas(nodes::NodeAction)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Health checks are public.
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path.starts_with("/health/") {
                if let Some(op) = item.get.as_mut() {
                    op.security = Some(Vec::new());
                }
            }
        }
    }
}

/// The OpenAPI document, as served.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /v1/openapi.json",
    )
}

async fn count(State(ctx): State<Arc<ApiContext>>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let resp = next.run(req).await;
    ctx.requests
        .with_label_values(&[&method, resp.status().as_str()])
        .inc();
    resp
}

pub fn router(ctx: Arc<ApiContext>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/servers", get(servers::list).post(servers::create))
        .route(
            "/v1/servers/{id}",
            get(servers::get)
                .put(servers::update)
                .delete(servers::delete),
        )
        .route("/v1/servers/{id}/actions/{action}", post(actions::start))
        .route(
            "/v1/servers/{id}/backups",
            get(backups::list).post(backups::create),
        )
        .route("/v1/actions", get(actions::list))
        .route("/v1/actions/{action_id}", get(actions::get))
        .route("/v1/sessions", get(usage::sessions))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/events", get(events::list))
        .route("/v1/events/stream", get(events::stream))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{id}", get(nodes::get))
        .route("/v1/nodes/{id}/{action}", post(nodes::act))
        .route("/v1/fleet/consolidate", post(nodes::consolidate))
        .route("/v1/fleet/gc", post(nodes::gc))
        .route("/v1/capacity", get(capacity::view))
        .route("/v1/routes", get(routes::table))
        .route("/v1/routes/resolve", get(routes::resolve))
        .route("/v1/tokens", get(admin::list).post(admin::create))
        .route(
            "/v1/tokens/{token_id}",
            axum::routing::delete(admin::revoke),
        )
        .route("/v1/audit", get(admin::audit))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ctx.clone(), conn::read_body))
        .layer(middleware::from_fn_with_state(ctx.clone(), auth::layer))
        .layer(middleware::from_fn_with_state(ctx.clone(), count))
        .with_state(ctx)
}

/// Serves the API until the process ends. The address is retried until it is free: during
/// a binary upgrade the old process holds it until its sessions have drained.
pub async fn serve(section: ApiSettings, ctx: Arc<ApiContext>) {
    let tls = match (&section.tls_cert, &section.tls_key) {
        (Some(cert), Some(key)) => match tls::acceptor(cert, key) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::error!("control API not started: {e:#}");
                return;
            }
        },
        _ => None,
    };
    let mut warned = false;
    let listener = loop {
        match tokio::net::TcpListener::bind(&section.listen).await {
            Ok(l) => break l,
            Err(e) => {
                if !warned {
                    warn!(listen = %section.listen, error = %e, "control API cannot bind yet; retrying every 2 s");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    info!(listen = %section.listen, tls = tls.is_some(), "control API listening");
    tokio::spawn(ctx.streams.clone().end_revoked(ctx.store.clone()));
    let limits = Limits {
        max_connections: section.max_connections,
        per_source: section.max_connections_per_source,
        idle_timeout: section.idle_timeout,
        request_timeout: section.request_timeout,
    };
    let admission = Admission::new("api", limits, ctx.http.clone());
    let app = router(ctx);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Refused: closing is the cheapest answer, and a client retries.
        let Some(admitted) = admission.admit(peer.ip()) else {
            continue;
        };
        tokio::spawn(conn::serve(
            admitted,
            stream,
            peer,
            app.clone(),
            tls.clone(),
        ));
    }
}

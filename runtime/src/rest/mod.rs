//! The REST control API with Kafka Connect's paths, bodies, status codes and
//! error body (`{"error_code", "message"}`), plus `/metrics` and `/healthz`.

mod connectors;
mod guard;
mod metrics;
mod tls;

pub use tls::{TlsError, TlsFiles};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::herder::{Herder, HerderError};
use crate::worker::WorkerError;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("REST API: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("rest.auth.basic.file {file}: {message}")]
    Credentials { file: String, message: String },
    #[error("REST API on {addr}: a listener other hosts can reach needs credentials (rest.auth.token or rest.auth.basic.file); set rest.auth.none: true to serve it without any")]
    Unprotected { addr: String },
}

/// How the API is served.
#[derive(Clone, Debug, Default)]
pub struct RestOptions {
    /// When set, every request but `/healthz` needs `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Connect's BasicAuth users file (`user: password` lines).
    pub basic_file: Option<std::path::PathBuf>,
    /// The operator's word that a non-loopback listener may run unguarded.
    pub auth_none: bool,
    /// `access.control.allow.origin`: other origins that may change things.
    pub allowed_origins: Vec<String>,
    /// When set, the API speaks HTTPS only.
    pub tls: Option<TlsFiles>,
}

impl RestOptions {
    /// The REST keys of a worker config.
    pub fn from_worker(w: &crate::config::WorkerConfig) -> Self {
        let flag = |k: &str| {
            w.map
                .get(k)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        RestOptions {
            bearer_token: w.rest_token.clone(),
            basic_file: w
                .map
                .get("rest.auth.basic.file")
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(std::path::PathBuf::from),
            auth_none: flag("rest.auth.none"),
            allowed_origins: w
                .map
                .get("access.control.allow.origin")
                .map(|o| {
                    o.split(',')
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            tls: w
                .rest_tls
                .clone()
                .map(|(certificate, key)| TlsFiles { certificate, key }),
        }
    }
}

/// Connector configs are small; a larger body is refused (413) unread.
const BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
struct Api {
    herder: Arc<Herder>,
    started: Instant,
}

/// Connect's error body with its status code.
pub fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        code,
        Json(json!({"error_code": code.as_u16(), "message": message})),
    )
        .into_response()
}

impl IntoResponse for HerderError {
    fn into_response(self) -> Response {
        let code = match &self {
            HerderError::NotFound(_) | HerderError::NotFoundOther(_) => StatusCode::NOT_FOUND,
            HerderError::Exists(_) | HerderError::Conflict(_) => StatusCode::CONFLICT,
            HerderError::BadRequest(_)
            | HerderError::Invalid(_)
            | HerderError::Worker(WorkerError::Config(_) | WorkerError::Invalid(_)) => {
                StatusCode::BAD_REQUEST
            }
            HerderError::Worker(_) | HerderError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(code, self.to_string())
    }
}

async fn root(State(api): State<Api>) -> Response {
    let cluster = match api.herder.kafka() {
        Some(hub) => hub.cluster_id().await,
        None => None,
    };
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("WHARF_GIT_COMMIT").unwrap_or("unknown"),
        "kafka_cluster_id": cluster,
    }))
    .into_response()
}

async fn healthz(State(api): State<Api>) -> Response {
    let tasks = api.herder.status_board().snapshot();
    let failed = tasks
        .iter()
        .filter(|(_, _, s, _)| s.state == crate::worker::State::Failed)
        .count();
    Json(json!({
        "status": "UP",
        "worker_id": api.herder.worker_id(),
        // Answered without the herder's lock: a probe must not wait
        // behind a connector that is stopping.
        "connectors": api.herder.connector_count_now(),
        "tasks": tasks.len(),
        "failed_tasks": failed,
        "uptime_seconds": api.started.elapsed().as_secs(),
    }))
    .into_response()
}

async fn prometheus(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&api.herder, api.started).await,
    )
        .into_response()
}

fn router(api: Api, guard: guard::Guard) -> Router {
    use connectors as c;
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .route("/connectors", get(c::list).post(c::create))
        .route("/connectors/{name}", get(c::info).delete(c::delete))
        .route(
            "/connectors/{name}/config",
            get(c::config).put(c::put_config),
        )
        .route("/connectors/{name}/status", get(c::status))
        .route("/connectors/{name}/tasks", get(c::tasks))
        .route(
            "/connectors/{name}/tasks/{task}/status",
            get(c::task_status),
        )
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(c::restart_task),
        )
        .route("/connectors/{name}/restart", post(c::restart))
        .route("/connectors/{name}/pause", put(c::pause))
        .route("/connectors/{name}/resume", put(c::resume))
        .route("/connectors/{name}/stop", put(c::stop))
        .route(
            "/connectors/{name}/offsets",
            get(c::offsets)
                .patch(c::alter_offsets)
                .delete(c::reset_offsets),
        )
        .route("/connector-plugins", get(c::plugins))
        .route("/connector-plugins/{plugin}/config", get(c::plugin_config))
        .route(
            "/connector-plugins/{plugin}/config/validate",
            put(c::validate),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "HTTP 405 Method Not Allowed",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(guard, guard::check))
        .with_state(api)
}

/// Binds the API and serves it in the background; returns the bound
/// address (port 0 picks a free one) and sets it as the worker id.
pub async fn serve(
    herder: Arc<Herder>,
    addr: &str,
    opts: RestOptions,
) -> Result<SocketAddr, RestError> {
    let bind_err = |source| RestError::Bind {
        addr: addr.to_string(),
        source,
    };
    // Bad certificate files fail before anything listens.
    let acceptor = opts.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    let guard = guard::Guard {
        token: opts.bearer_token.map(Arc::from),
        basic: opts
            .basic_file
            .as_deref()
            .map(guard::load_credentials)
            .transpose()?
            .map(Arc::new),
        loopback: local.ip().is_loopback(),
        allowed_origins: Arc::new(opts.allowed_origins),
    };
    if !guard.loopback && !guard.needs_credentials() && !opts.auth_none {
        return Err(RestError::Unprotected {
            addr: local.to_string(),
        });
    }
    herder.set_worker_id(local.to_string());
    let api = Api {
        herder,
        started: Instant::now(),
    };
    let app = router(api, guard);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        let served = match acceptor {
            Some(acceptor) => {
                let tls = match tls::TlsListener::new(listener, acceptor) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("REST API could not start: {e}");
                        return;
                    }
                };
                axum::serve(tls, app).await
            }
            None => axum::serve(listener, app).await,
        };
        if let Err(e) = served {
            tracing::error!("REST API stopped: {e}");
        }
    });
    tracing::info!(listen = %local, "REST API listening on {scheme}://{local}");
    Ok(local)
}

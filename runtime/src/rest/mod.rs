//! The REST control API with Kafka Connect's paths, bodies, status codes and
//! error body (`{"error_code", "message"}`), plus `/metrics` and `/healthz`.

mod connectors;
mod metrics;
mod tls;

pub use tls::{TlsError, TlsFiles};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
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
}

/// How the API is served.
#[derive(Clone, Debug, Default)]
pub struct RestOptions {
    /// When set, every request but `/healthz` needs `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// When set, the API speaks HTTPS only.
    pub tls: Option<TlsFiles>,
}

#[derive(Clone)]
struct Api {
    herder: Arc<Herder>,
    started: Instant,
    token: Option<Arc<str>>,
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

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let Some(token) = &api.token else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(&**token) {
        next.run(req).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "this worker needs 'Authorization: Bearer <token>' (rest.auth.token)",
        )
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

fn router(api: Api) -> Router {
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
        .layer(middleware::from_fn_with_state(api.clone(), auth))
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
    herder.set_worker_id(local.to_string());
    let api = Api {
        herder,
        started: Instant::now(),
        token: opts.bearer_token.map(Arc::from),
    };
    let app = router(api);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        let served = match acceptor {
            Some(acceptor) => {
                let tls = tls::TlsListener {
                    tcp: listener,
                    acceptor,
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

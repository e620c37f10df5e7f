//! `--http`: a read-only HTTP/1.1 server for monitoring — `/metrics`
//! (Prometheus), `/healthz`, and the control socket's `/v1/vassals` and
//! `/v1/sources` JSON.
//!
//! Every answer is made from what the main loop already published (the
//! table, the sources' statuses, the counters), on a blocking-pool thread,
//! so a scrape of a large fleet never holds the loop up. Each connection
//! carries one request, has [`READ_TIMEOUT`] to send it and [`DEADLINE`]
//! in all, and is closed after the answer.

use super::http::{self, HttpError};
use super::listen::{Connection, Listener};
use super::metrics::{self, Counters, PerVassal};
use super::server::{self, Context};
use prometheus_client::registry::Registry;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may take, request and answer together.
const DEADLINE: Duration = Duration::from_secs(10);

/// The OpenMetrics text format's content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the HTTP server reads from.
pub struct StatusContext {
    control: Context,
    counters: Counters,
    registry: Registry,
}

impl StatusContext {
    /// Reads through the control task's context (table, sources) and the
    /// loop's counters.
    pub fn new(control: Context, counters: Counters, per_vassal: PerVassal) -> Self {
        let registry = metrics::registry(&counters, control.handle.table.clone(), control.sources.clone(), per_vassal);
        Self { control, counters, registry }
    }
}

/// Serves `listener` until the task is dropped.
pub async fn serve_http(listener: Listener, context: StatusContext) {
    tracing::info!(addr = %listener.local_addr(), "http: serving status and metrics");
    let context = Arc::new(context);
    listener.serve(DEADLINE, |stream| connection(stream, context.clone())).await;
}

/// Answers one request.
async fn connection(mut stream: Box<dyn Connection>, context: Arc<StatusContext>) {
    // A client too slow to send its request is dropped without an answer.
    let Ok(request) = tokio::time::timeout(READ_TIMEOUT, http::read_request(&mut stream)).await else { return };
    let answer = match request {
        Ok(request) => {
            let answer = tokio::task::spawn_blocking(move || route(&context, &request.method, &request.target));
            answer.await.unwrap_or_else(|_| Answer::json(500, error("internal error")))
        }
        Err(HttpError::Io(_)) => return,
        Err(e @ HttpError::TooLarge) => Answer::json(413, error(&e.to_string())),
        Err(e) => Answer::json(400, error(&e.to_string())),
    };
    let _ = stream.write_all(&http::response_of(answer.status, answer.content_type, &answer.body)).await;
    let _ = stream.shutdown().await;
}

/// A response: status, content type, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn json(status: u16, body: String) -> Self {
        Self { status, content_type: "application/json", body }
    }
}

fn error(message: &str) -> String {
    json!({ "error": message }).to_string()
}

/// The answer to `method target`.
fn route(context: &StatusContext, method: &str, target: &str) -> Answer {
    let path = target.split('?').next().unwrap_or_default();
    let known = matches!(path, "/metrics" | "/healthz" | "/v1/vassals" | "/v1/sources");
    if method != "GET" {
        return match known {
            true => Answer::json(405, error(&format!("{method} is not allowed on {path}: this endpoint is read-only"))),
            false => Answer::json(404, error(&format!("no such endpoint: {path}"))),
        };
    }
    let table = || context.control.handle.table.borrow().clone();
    match path {
        "/metrics" => Answer { status: 200, content_type: OPENMETRICS, body: metrics::render(&context.registry) },
        "/healthz" if context.counters.healthy() => Answer::json(200, json!({ "status": "ok" }).to_string()),
        "/healthz" => Answer::json(503, json!({ "status": "starting" }).to_string()),
        "/v1/vassals" => Answer::json(200, table().vassals_json().to_owned()),
        "/v1/sources" => Answer::json(200, json!(server::sources(&context.control, &table())).to_string()),
        _ => Answer::json(404, error(&format!("no such endpoint: {path}"))),
    }
}

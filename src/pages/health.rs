use http::{Response, StatusCode};

use super::Ctx;
use crate::web::{self, Body};

/// 200 when the store answers, 503 otherwise. Says nothing else to the outside;
/// `?verbose` adds whether the clock is synchronised (M-4).
pub async fn healthz(ctx: &Ctx) -> Response<Body> {
    let ok = ctx.app.store.run(|s| s.ping()).await.is_ok();
    let verbose = ctx
        .uri
        .query()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "verbose"));
    let (status, body) = if ok && verbose {
        (
            StatusCode::OK,
            serde_json::json!({ "status": "ok", "clock_synchronised": ctx.app.clock_synchronised() }),
        )
    } else if ok {
        (StatusCode::OK, serde_json::json!({ "status": "ok" }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "unavailable" }),
        )
    };
    let mut r = web::json(status, &body);
    web::secure_headers(&mut r);
    r
}

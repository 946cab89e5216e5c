//! Logout (G-7): a page with a button, so the dashboard can simply link to it; the POST
//! ends the session on the server, or every session of the user.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Ctx, LOGOUT_PATH};
use crate::auth::session;
use crate::web::{self, Body};

pub async fn show(ctx: &Ctx) -> Response<Body> {
    let current = ctx.session().await;
    let (user, csrf) = match &current {
        Some((_, s)) if s.is_full() => (s.user().map(str::to_owned), Some(s.csrf.clone())),
        _ => (None, None),
    };
    ctx.page(
        StatusCode::OK,
        "logout.html",
        ctx.t().logout_title,
        minijinja::context! { user => user, csrf => csrf },
    )
}

pub async fn submit(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let current = ctx.session().await;
    let form = match ctx.read_post(req, current.as_ref().map(|(_, s)| s)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((id, s)) = current else {
        unreachable!("read_post refuses a POST without a session")
    };
    let everywhere = form.get("everywhere") == Some("1");
    let user = s.user().map(str::to_owned);
    match (&user, everywhere) {
        (Some(u), true) => {
            ctx.app.end_user_sessions(u).await;
        }
        _ => {
            if let Err(e) = ctx.app.end_session(&id).await {
                return ctx.internal_error("ending a session failed", e);
            }
        }
    }
    ctx.audit(
        if everywhere { "logout.everywhere" } else { "logout" },
        user.as_deref(),
        None,
    )
    .await;
    let mut r = web::see_other(LOGOUT_PATH);
    web::add_cookie(&mut r, &session::clear_session_cookie());
    r
}

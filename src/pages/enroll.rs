//! The "Scan QR code" screen (M-5, M-6, M-8): a secret is shown until a right code for
//! it arrives, and only then associated with the account.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::code::{count_failure, format_error, wrong_code_message};
use super::{Ctx, ENROLL_PATH, login_with, next_location};
use crate::auth::session::{PENDING_TTL_SECS, Session, SessionId, SessionState};
use crate::auth::totp::{self, Code, TotpSecret, Verdict};
use crate::mail::Notice;
use crate::store::{Authenticator, Freshness};
use crate::web::{self, Body};

pub async fn show(ctx: &Ctx) -> Response<Body> {
    match pending(ctx).await {
        Ok((_, s, user)) => screen(ctx, StatusCode::OK, &s, &user, None).await,
        Err(r) => r,
    }
}

/// The session, if it is a pending enrollment of an account that still has the switch on.
async fn pending(ctx: &Ctx) -> Result<(SessionId, Session, String), Response<Body>> {
    match ctx.session().await {
        Some((id, s)) => match &s.state {
            SessionState::PendingEnroll { user } if ctx.cfg.user(user).is_some_and(|u| u.two_factor) => {
                let user = user.clone();
                Ok((id, s, user))
            }
            SessionState::PendingPassword | SessionState::PendingEnroll { .. } => {
                Err(web::see_other(&login_with("expired")))
            }
            _ => Err(web::see_other(&next_location(&s))),
        },
        None => Err(web::see_other(&login_with("expired"))),
    }
}

async fn screen(ctx: &Ctx, status: StatusCode, s: &Session, user: &str, error: Option<String>) -> Response<Body> {
    let now = ctx.app.now();
    let app = ctx.app.clone();
    let uid = user.to_owned();
    let got = ctx
        .app
        .store
        .run(move |st| {
            st.pending_enrollment(&uid, now, now - PENDING_TTL_SECS, || {
                let secret = TotpSecret::generate(app.rng());
                app.sealer.seal("totp", &uid, secret.as_bytes(), app.rng())
            })
        })
        .await;
    let (pending, freshness) = match got {
        Ok(p) => p,
        Err(e) => return ctx.internal_error("preparing an enrollment failed", e),
    };
    let Some(secret) = ctx
        .app
        .sealer
        .open("totp", user, &pending.sealed_secret)
        .and_then(TotpSecret::from_bytes)
    else {
        return ctx.internal_error("opening a pending secret failed", "sealed blob rejected");
    };
    let uri = secret.key_uri(&ctx.cfg.issuer, user);
    let freshness = match freshness {
        Freshness::New => "new",
        Freshness::Reused => "reused",
        Freshness::Replaced => "replaced",
    };
    ctx.page(
        status,
        "enroll.html",
        ctx.t().enroll_title,
        minijinja::context! {
            csrf => &s.csrf, action => ENROLL_PATH, error => error, freshness => freshness,
            qr_svg => qr_svg(&uri), key_groups => secret.grouped(), server_time => now,
        },
    )
}

fn qr_svg(uri: &str) -> String {
    use qrcode::render::svg;
    match qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M) {
        // Inline in HTML: the renderer's XML declaration has no place there.
        Ok(code) => {
            let svg = code
                .render::<svg::Color>()
                .min_dimensions(220, 220)
                .quiet_zone(true)
                .build();
            match svg.strip_prefix("<?xml") {
                Some(rest) => rest
                    .split_once("?>")
                    .map_or(svg.clone(), |(_, body)| body.trim_start().to_owned()),
                None => svg,
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "QR encoding failed");
            String::new()
        }
    }
}

pub async fn submit(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let (id, s, user) = match pending(ctx).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let form_data = match ctx.read_post(req, Some(&s)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let code = match Code::parse(form_data.get("code").unwrap_or("")) {
        Ok(c) => c,
        Err(e) => {
            return screen(
                ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                &s,
                &user,
                Some(format_error(ctx.t(), e)),
            )
            .await;
        }
    };
    let uid = user.clone();
    let pending = match ctx.app.store.run(move |st| st.peek_pending_enrollment(&uid)).await {
        Ok(Some(p)) if p.created > ctx.app.now() - PENDING_TTL_SECS => p,
        Ok(_) => return web::see_other(&login_with("expired")),
        Err(e) => return ctx.internal_error("reading a pending enrollment failed", e),
    };
    let Some(secret) = ctx
        .app
        .sealer
        .open("totp", &user, &pending.sealed_secret)
        .and_then(TotpSecret::from_bytes)
    else {
        return ctx.internal_error("opening a pending secret failed", "sealed blob rejected");
    };
    let now = ctx.app.now();
    match totp::verdict(&secret, &code, now, None) {
        Verdict::Accepted(step) => {
            let authenticator = Authenticator {
                sealed_secret: pending.sealed_secret,
                last_step: Some(step),
                enrolled_at: now,
            };
            let uid = user.clone();
            match ctx
                .app
                .store
                .run(move |st| st.complete_enrollment(&uid, &authenticator))
                .await
            {
                Ok(true) => {}
                // Someone completed an enrollment for this account meanwhile.
                Ok(false) => return web::see_other(&login_with("expired")),
                Err(e) => return ctx.internal_error("storing an authenticator failed", e),
            }
            ctx.audit("enroll.completed", Some(&user), None).await;
            ctx.app.notify(&user, Notice::Enrolled, ctx.lang, ctx.origin());
            ctx.audit("login.success", Some(&user), None).await;
            let next = s.step_up(SessionState::Full { user, auth_time: now }, ctx.app.rng(), now);
            let location = next_location(&next);
            ctx.step_to(Some(&id), next, &location).await
        }
        verdict => {
            ctx.audit("enroll.code_failed", Some(&user), None).await;
            match count_failure(ctx, &id).await {
                Ok(true) => web::see_other(&login_with("too_many")),
                Ok(false) => {
                    screen(
                        ctx,
                        StatusCode::UNAUTHORIZED,
                        &s,
                        &user,
                        Some(wrong_code_message(ctx.t(), verdict)),
                    )
                    .await
                }
                Err(r) => r,
            }
        }
    }
}

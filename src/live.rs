//! Connections that outlive their request — WebSockets and streamed responses — end
//! when their session ends (logout, "log out everywhere", reload, reset, an
//! administrator's action). Every change to sessions bumps an epoch; each live
//! connection re-checks its own session then, and at least every few seconds for
//! expiry, and stops when the session is gone.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;

use crate::app::App;
use crate::auth::session::SessionId;
use crate::web::{Body, BoxError};

/// Expiry is noticed this soon even when nothing else changes.
const RECHECK_EVERY: Duration = Duration::from_secs(5);

pub struct Live {
    epoch: watch::Sender<u64>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            epoch: watch::channel(0).0,
        }
    }
}

impl Live {
    /// Call after any session was ended.
    pub fn sessions_changed(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Changes whenever a session ends; cached sessions from an older epoch are stale.
    pub fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }
}

/// Resolves when the session is no longer live.
pub async fn session_ended(app: Arc<App>, id: SessionId) {
    let mut epoch = app.live.epoch.subscribe();
    loop {
        tokio::select! {
            _ = epoch.changed() => {}
            _ = tokio::time::sleep(RECHECK_EVERY) => {}
        }
        if app.session_by_id(&id).await.is_none_or(|s| !s.is_full()) {
            return;
        }
    }
}

/// A response body that stops (with an error, so the client sees a cut stream, not a
/// complete one) when `stop` resolves.
pub struct Revocable {
    inner: Body,
    stop: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
}

impl Revocable {
    pub fn wrap(inner: Body, stop: impl Future<Output = ()> + Send + Sync + 'static) -> Body {
        use http_body_util::BodyExt;
        Revocable {
            inner,
            stop: Box::pin(stop),
        }
        .boxed()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the session ended")]
pub struct SessionEnded;

impl HttpBody for Revocable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(SessionEnded))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

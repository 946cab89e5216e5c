//! The control socket: a running gateway holds the database (redb allows one process
//! per file), so `kanmon user …` reaches it through `control.sock` in the data
//! directory. Owner-only permissions, peers checked by their kernel credentials, one
//! JSON line in and one out per connection.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::admin::{self, Actor, Command, Output};
use crate::app::App;
use crate::auth::admin::peer_allowed;

pub const SOCKET_FILE: &str = "control.sock";
/// A request is one short JSON line; anything longer is not one of ours.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One answer line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    fn err(e: impl ToString) -> Reply {
        Reply {
            ok: false,
            output: None,
            error: Some(e.to_string()),
        }
    }
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// Binds the socket, mode 0600. A file left by a process that died is ours to
/// replace: we hold the database, so no other gateway can be using it.
pub fn bind(data_dir: &Path) -> io::Result<UnixListener> {
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Removes the socket file when the gateway stops.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub async fn serve(listener: UnixListener, app: Arc<App>) {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let own = unsafe { libc::geteuid() };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting a control connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(IO_TIMEOUT, answer(stream, app, own)).await {
                tracing::warn!(error = %e, "a control connection timed out");
            }
        });
    }
}

async fn answer(stream: UnixStream, app: Arc<App>, own: u32) {
    let peer = stream.peer_cred().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    // The line is read (bounded) even from a peer that will be refused, so its client
    // sees the refusal rather than a broken pipe.
    let mut line = String::new();
    let read = BufReader::new(read.take(MAX_REQUEST_BYTES)).read_line(&mut line).await;
    let reply = match (peer, read) {
        (Ok(uid), _) if !peer_allowed(uid, own) => {
            tracing::warn!(uid, "refused a control connection from another user");
            Reply::err(format!("user {uid} may not control this gateway"))
        }
        (Err(e), _) => Reply::err(format!("cannot tell who is asking: {e}")),
        (Ok(_), Err(e)) => Reply::err(e),
        (Ok(_), Ok(_)) => match serde_json::from_str::<Command>(line.trim()) {
            Ok(command) => match admin::run(&app, &Actor::cli(), command).await {
                Ok(output) => Reply {
                    ok: true,
                    output: Some(output),
                    error: None,
                },
                Err(e) => Reply::err(e),
            },
            Err(e) => Reply::err(format!("not a command: {e}")),
        },
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| r#"{"ok":false}"#.to_owned());
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Sends a command to the gateway listening in `data_dir`. `Ok(None)` when none
/// listens there (no socket file, or nobody accepting).
pub async fn request(data_dir: &Path, command: &Command) -> io::Result<Option<Reply>> {
    let mut stream = match UnixStream::connect(socket_path(data_dir)).await {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut line = serde_json::to_string(command).map_err(io::Error::other)?;
    line.push('\n');
    let run = async {
        stream.write_all(line.as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await?;
        serde_json::from_str::<Reply>(answer.trim()).map_err(io::Error::other)
    };
    tokio::time::timeout(IO_TIMEOUT, run)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the gateway did not answer in time"))?
        .map(Some)
}

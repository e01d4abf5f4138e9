//! The local control socket (`[node] control_socket`): root only. The file is mode
//! 0600 and the agent checks each caller's credentials (`SO_PEERCRED`) as well, so a
//! socket whose mode was loosened still serves root alone. One agent per socket: a
//! second agent finds the first one answering there and refuses to start.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use tokio::net::{UnixListener, UnixStream};

/// Binds `path`. A socket file nobody answers on (left by a crashed agent) is
/// replaced; one an agent answers on is an error, and the running agent keeps it.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    let context = || format!("control socket {}", path.display());
    match UnixStream::connect(path).await {
        Ok(_) => anyhow::bail!(
            "control socket {}: another lvs-agent answers there (one agent per socket: \
             stop it, or set a different node.control_socket)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).with_context(context)?;
        }
        Err(e) => return Err(e).with_context(context),
    }
    let listener = UnixListener::bind(path).with_context(context)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(context)?;
    Ok(listener)
}

/// Why a caller is refused, if it is: only root (uid 0) may call.
pub fn refusal(stream: &UnixStream) -> Option<String> {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == 0 => None,
        Ok(cred) => Some(format!(
            "permission denied: the control socket serves root only (caller uid {})",
            cred.uid()
        )),
        Err(e) => Some(format!(
            "permission denied: caller credentials unknown ({e})"
        )),
    }
}

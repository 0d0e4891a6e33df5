//! The management socket: a Unix stream socket on the control core.
//!
//! The protocol is one line in, one JSON document out, then the server closes the
//! connection: `echo info | socat - UNIX-CONNECT:/run/rampart/rampart.sock` works as well as
//! `rampart ctl`. Commands: `info` (pfctl -s info), `states` (pfctl -s states), `rules`
//! (pfctl -vs rules). The server never blocks the control loop for long: it accepts without
//! blocking and gives each client a short read deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Commands the socket answers (the first word of the line): `info`, `states`, `rules`,
/// `carp`, `carp demote N`, `carp promote`, `pfsync`.
pub const COMMANDS: &[&str] = &["info", "states", "rules", "carp", "pfsync"];

/// How long a client may take to send its command line.
const READ_DEADLINE: Duration = Duration::from_millis(200);

/// The listening side, polled by the control loop.
pub struct CtlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl CtlServer {
    /// Binds `path`, replacing a stale socket left by a previous run (but refusing to take
    /// over one another process still answers on).
    pub fn bind(path: &Path) -> std::io::Result<CtlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running rampart", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(CtlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Answers every client waiting now; `answer` maps a command to its JSON reply.
    /// Returns how many clients were served.
    pub fn poll(&mut self, mut answer: impl FnMut(&str) -> serde_json::Value) -> usize {
        let mut served = 0;
        while let Ok((stream, _)) = self.listener.accept() {
            served += 1;
            // A misbehaving client must not stall the control core: errors end its session.
            let _ = serve(stream, &mut answer);
        }
        served
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(
    stream: UnixStream,
    answer: &mut impl FnMut(&str) -> serde_json::Value,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_DEADLINE))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(256)
        .read_line(&mut line)?;
    let command = line.trim();
    let first = command.split_whitespace().next().unwrap_or("");
    let reply = if COMMANDS.contains(&first) {
        answer(command)
    } else {
        serde_json::json!({ "error": format!("unknown command `{command}`; commands: {}", COMMANDS.join(", ")) })
    };
    let mut out = stream;
    serde_json::to_writer(&mut out, &reply)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The client side: sends `command` and returns the JSON reply.
pub fn request(path: &Path, command: &str) -> std::io::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(command.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    serde_json::from_str(&reply)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_in_one_json_out() {
        let dir = std::env::temp_dir().join(format!("rampart-ctl-{}", std::process::id()));
        let path = dir.join("ctl.sock");
        let mut server = CtlServer::bind(&path).unwrap();
        // A second server must not steal a live socket.
        assert!(CtlServer::bind(&path).is_err());
        let client = std::thread::spawn({
            let path = path.clone();
            move || {
                (
                    request(&path, "info").unwrap(),
                    request(&path, "bogus").unwrap(),
                )
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !client.is_finished() && std::time::Instant::now() < deadline {
            server.poll(|cmd| serde_json::json!({ "command": cmd }));
            std::thread::sleep(Duration::from_millis(1));
        }
        let (info, bogus) = client.join().unwrap();
        assert_eq!(info["command"], "info");
        assert!(bogus["error"]
            .as_str()
            .unwrap()
            .contains("unknown command `bogus`"));
        drop(server);
        assert!(!path.exists(), "the socket is removed on shutdown");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

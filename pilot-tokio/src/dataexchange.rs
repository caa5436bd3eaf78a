//! The data-exchange service on port 1001 (v0.5 frames: `u32 type ‖ u32 length ‖ body`), run by
//! the daemon as an ordinary client of its own IPC socket.
//!
//! FILE frames (`u16 name_len ‖ name ‖ bytes`) are written to `<home>/received/<name>`; several
//! FILE frames with the same name on one connection are one file, so files larger than the v0.5
//! 16 MiB frame limit arrive whole. The file is written as `<name>.part` and renamed when the
//! connection ends. TEXT, BINARY and JSON frames are appended to `<home>/inbox.jsonl`. Every
//! frame is answered with a TEXT frame `ACK <TYPE> <n> bytes`, as in v0.5.
//!
//! # Limitations
//!
//! - A name already present in `received/` is replaced (v0.5 adds a timestamp to the name).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::client::{Client, Conn};

/// The data-exchange port.
pub const PORT: u16 = 1001;
/// Largest frame body accepted (v0.5 limit).
const MAX_BODY: usize = 16 << 20;
const FILE: u32 = 4;

/// Serves port 1001 until the daemon's socket goes away. Waits (bounded retries) for the node
/// to register before binding.
pub async fn serve(socket: PathBuf, home: PathBuf) {
    let Ok(client) = Client::connect(&socket).await else {
        return;
    };
    let mut listener = None;
    for _ in 0..3000 {
        match client.listen(PORT).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let Some(mut listener) = listener else {
        return tracing::warn!("data exchange: could not bind port 1001");
    };
    tracing::info!("data exchange listening on port 1001");
    while let Some((conn, remote)) = listener.accept().await {
        let home = home.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_conn(conn, &home, &remote.to_string()).await {
                tracing::debug!(%remote, error = %e, "data exchange connection failed");
            }
        });
    }
}

fn type_name(kind: u32) -> String {
    match kind {
        1 => "TEXT".into(),
        2 => "BINARY".into(),
        3 => "JSON".into(),
        4 => "FILE".into(),
        n => format!("UNKNOWN({n})"),
    }
}

async fn serve_conn(mut conn: Conn, home: &Path, from: &str) -> std::io::Result<()> {
    let mut file: Option<(tokio::fs::File, PathBuf, PathBuf)> = None;
    loop {
        let mut header = [0u8; 8];
        match conn.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let kind = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > MAX_BODY {
            return Err(std::io::Error::other("frame too large"));
        }
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).await?;
        let n = if kind == FILE {
            save_file(&mut file, home, &body).await?
        } else {
            save_message(home, kind, from, &body).await?
        };
        let ack = format!("ACK {} {n} bytes", type_name(kind));
        let mut reply = 1u32.to_be_bytes().to_vec();
        reply.extend_from_slice(&(ack.len() as u32).to_be_bytes());
        reply.extend_from_slice(ack.as_bytes());
        // The acknowledgement is best effort: a sender that already left loses nothing.
        if conn.write_all(&reply).await.is_ok() {
            let _ = conn.flush().await;
        }
    }
    if let Some((mut f, part, done)) = file {
        f.flush().await?;
        f.sync_all().await?;
        tokio::fs::rename(&part, &done).await?;
        tracing::info!(file = %done.display(), "file received");
    }
    Ok(())
}

async fn save_file(
    file: &mut Option<(tokio::fs::File, PathBuf, PathBuf)>,
    home: &Path,
    body: &[u8],
) -> std::io::Result<usize> {
    let name_len = body
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
    let (name, data) = match body.get(2..2 + name_len) {
        Some(name) if name_len > 0 => (
            String::from_utf8_lossy(name).into_owned(),
            &body[2 + name_len..],
        ),
        _ => (String::new(), body),
    };
    let base = Path::new(&name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base.is_empty() || base.starts_with('.') {
        return Ok(data.len());
    }
    if file
        .as_ref()
        .is_none_or(|(_, _, done)| done.file_name().is_none_or(|n| n.to_string_lossy() != base))
    {
        let dir = home.join("received");
        tokio::fs::create_dir_all(&dir).await?;
        let part = dir.join(format!(".{base}.part"));
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .await?;
        *file = Some((f, part, dir.join(&base)));
    }
    if let Some((f, _, _)) = file.as_mut() {
        f.write_all(data).await?;
    }
    Ok(data.len())
}

async fn save_message(home: &Path, kind: u32, from: &str, body: &[u8]) -> std::io::Result<usize> {
    let line = serde_json::json!({
        "type": type_name(kind),
        "from": from,
        "data": String::from_utf8_lossy(body),
        "bytes": body.len(),
    });
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(home.join("inbox.jsonl"))
        .await?;
    f.write_all(format!("{line}\n").as_bytes()).await?;
    Ok(body.len())
}

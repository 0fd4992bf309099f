//! Serving the API: hyper's connection builder driven directly, for the one option
//! `axum::serve` does not expose. HTTP/1.1 responses name their headers in title case
//! (`Content-Type`, `Retry-After`): header names are case-insensitive, but operators grep
//! `curl -i` output case-sensitively, as the operations guide does. Title case makes
//! `X-Ratelimit-Limit` of the rate-limit headers, so the response head is respelled to the
//! guide's `X-RateLimit-Limit` on its way out (`Respell`). HTTP/2 (prior knowledge)
//! stays lower case, as that protocol requires.
//!
//! Otherwise this is what `axum::serve` does: `ConnectInfo` for the client address, upgrades,
//! and on `shutdown` no new connections, idle ones closed, in-flight requests finished.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, error};

/// Serves `router` on `listener` until `shutdown`, then waits for open connections to finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    // Every connection task holds a receiver; the sender sees them all gone at the end.
    let (done_tx, done_rx) = watch::channel(());
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                router.clone().oneshot(request.map(Body::new))
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().title_case_headers(true);
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(Respell::new(stream)), service);
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                debug!(error = %e, client = %remote, "connection ended with an error");
            }
            drop(done);
        });
    }
    drop(done_rx);
    drop(listener);
    done_tx.closed().await;
}

/// A client that hung up before being accepted is nothing; anything else (out of file
/// descriptors) is logged and waited out instead of spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    error!(error = %e, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Header names as the operations guide spells them, where title case differs.
const SPELLINGS: [&str; 3] = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
];

/// Rewrites, in place, the names of `SPELLINGS` headers in a response head at the start of
/// `buf` (up to the blank line); the body is never touched. Same length, so the framing
/// hyper computed stays right. Returns whether anything changed.
fn respell_head(buf: &mut [u8]) -> bool {
    if !buf.starts_with(b"HTTP/1.") {
        return false;
    }
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let mut changed = false;
    let mut line = 0;
    while line < head_end {
        let next = buf[line..head_end]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(head_end, |i| line + i + 2);
        for spelling in SPELLINGS {
            let name = &mut buf[line..next];
            if name.len() > spelling.len()
                && name[spelling.len()] == b':'
                && name[..spelling.len()].eq_ignore_ascii_case(spelling.as_bytes())
                && &name[..spelling.len()] != spelling.as_bytes()
            {
                name[..spelling.len()].copy_from_slice(spelling.as_bytes());
                changed = true;
            }
        }
        line = next;
    }
    changed
}

/// The connection's socket, with `respell_head` applied to each response head hyper
/// writes. A head starts a write (hyper writes it from the start of its buffer); in the rare
/// case a head is split by a short write, its remainder goes out in plain title case.
struct Respell {
    stream: TcpStream,
    scratch: Vec<u8>,
}

impl Respell {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            scratch: Vec::new(),
        }
    }

    /// Copies `buf` into `scratch` and respells it there; false when nothing changed (then
    /// `buf` goes out as it is).
    fn respelled(scratch: &mut Vec<u8>, buf: &[u8]) -> bool {
        if !buf.starts_with(b"HTTP/1.") {
            return false;
        }
        scratch.clear();
        scratch.extend_from_slice(buf);
        respell_head(scratch)
    }
}

impl AsyncRead for Respell {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Respell {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if Self::respelled(&mut this.scratch, buf) {
            return Pin::new(&mut this.stream).poll_write(cx, &this.scratch);
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match bufs.split_first() {
            Some((head, rest)) if Self::respelled(&mut this.scratch, head) => {
                let mut slices = Vec::with_capacity(bufs.len());
                slices.push(io::IoSlice::new(&this.scratch));
                slices.extend(rest.iter().map(|b| io::IoSlice::new(b)));
                Pin::new(&mut this.stream).poll_write_vectored(cx, &slices)
            }
            _ => Pin::new(&mut this.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_gets_the_guides_spelling_and_the_body_is_left_alone() {
        let mut response =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Ratelimit-Limit: 100\r\n\
            X-Ratelimit-Remaining: 99\r\nX-Ratelimit-Resetting: 1\r\n\r\n\
            HTTP/1.1 200 OK\r\nX-Ratelimit-Reset: 60\r\n\r\n"
                .to_vec();
        assert!(respell_head(&mut response));
        let text = String::from_utf8(response).unwrap();
        assert!(text.contains("\r\nX-RateLimit-Limit: 100\r\nX-RateLimit-Remaining: 99\r\n"));
        assert!(
            text.contains("X-Ratelimit-Resetting: 1"),
            "only whole names"
        );
        assert!(
            text.ends_with("\r\n\r\nHTTP/1.1 200 OK\r\nX-Ratelimit-Reset: 60\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn a_body_chunk_is_not_a_head() {
        let mut chunk = b"{\"a\":1}\r\nX-Ratelimit-Limit: 1\r\n\r\n".to_vec();
        assert!(!respell_head(&mut chunk));
    }
}

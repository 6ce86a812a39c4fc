//! Serving TCP connections (HTTP/1.1) with the limits that keep clients from holding connections
//! open (SPEC §8), and the graceful shutdown.
//!
//! Each connection has a timer of its own rather than hyper's `header_read_timeout`, because
//! hyper starts that timer again as soon as an answer is sent: an idle keep-alive connection would
//! be closed after `HTTP_HEADER_TIMEOUT`, never after `HTTP_IDLE_TIMEOUT`. The rules are those of
//! nginx's `client_header_timeout` and `keepalive_timeout` (and Go's `ReadHeaderTimeout` and
//! `IdleTimeout`):
//!
//! - a new connection has `HTTP_HEADER_TIMEOUT` from its accept to send its first request's
//!   headers, whether it sends some bytes or none;
//! - while a request is handled, the connection has no timer (`REQUEST_TIMEOUT` bounds the
//!   handler, reading the body included);
//! - once the answer is ready, the connection may wait `HTTP_IDLE_TIMEOUT` for the next request;
//!   the first byte of that request ends the wait and gives its headers `HTTP_HEADER_TIMEOUT`.
//!
//! A connection whose time is up is dropped: nothing of it is in flight.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::Service;

/// `HTTP_HEADER_TIMEOUT`, `HTTP_IDLE_TIMEOUT` and `MAX_CONNECTIONS` (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `service` (the public service, or the management router) on `listener` until `shutdown`
/// completes; then stops accepting and gives the requests in flight up to `shutdown_timeout` to
/// finish.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    shutdown_timeout: Duration,
) where
    S: Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // A permit is taken before accepting, so connections beyond MAX_CONNECTIONS wait in the
    // kernel's listen backlog, as with nginx's `worker_connections` and Go's LimitListener: a
    // burst is answered late rather than refused, and a client that gives up just leaves.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // Off: each connection's own timer does its work (see the module documentation).
    builder.header_read_timeout(None);
    let mut shutdown = pin!(shutdown);
    loop {
        let next = async {
            let permit = Arc::clone(&permits).acquire_owned().await.ok()?;
            Some((permit, accept(&listener).await))
        };
        let accepted = tokio::select! {
            () = &mut shutdown => None,
            accepted = next => accepted,
        };
        let Some((permit, (stream, peer))) = accepted else {
            break;
        };
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            stream,
            activity: Arc::clone(&activity),
        });
        let requests = {
            // One service per connection, called in place: HTTP/1.1 calls it for one request
            // at a time, and the answer's future owns what it needs. Cloning the whole layered
            // service for each request (as `axum::serve` does) costs an allocation per request.
            let (service, activity) = (RefCell::new(service.clone()), Arc::clone(&activity));
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let in_flight = activity.request_began();
                let mut request = request.map(Body::new);
                // The client address the handlers read (`ClientAddress`).
                request.extensions_mut().insert(ConnectInfo(peer));
                // Both services are always ready: axum's `Router` is, and every layer around it
                // passes its readiness on.
                let answer = service.borrow_mut().call(request);
                async move {
                    let answer = answer.await;
                    drop(in_flight);
                    answer
                }
            })
        };
        let connection = graceful.watch(builder.serve_connection(io, requests));
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                () = activity.time_up(limits) => {
                    tracing::debug!("closed a connection that sent no request in time");
                }
            }
            drop(permit);
        });
    }
    match listener.local_addr() {
        Ok(address) => tracing::info!(%address, "shutting down: finishing requests in flight"),
        Err(_) => tracing::info!("shutting down: finishing requests in flight"),
    }
    drop(listener);
    if tokio::time::timeout(shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout reached: dropping requests still in flight");
    }
}

/// The next connection. Errors are the listener's, not a client's: a connection reset before it
/// was accepted is skipped, and anything else (out of file descriptors, most often) is retried
/// after a pause rather than in a busy loop.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(error) => {
                tracing::error!(%error, "cannot accept connections; trying again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What a connection is doing, for its timer: written by its reads (`Watched`) and its requests
/// (`InFlight`), read when the timer wakes.
struct Activity(Mutex<Phase>);

struct Phase {
    in_flight: usize,
    /// An answer has been made: waits from now on are idle waits.
    answered: bool,
    /// The accept, then the last answer.
    waiting_since: Instant,
    /// The first byte received since `waiting_since` (HTTP/1.1: the next request has begun).
    first_byte: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity(Mutex::new(Phase {
            in_flight: 0,
            answered: false,
            waiting_since: Instant::now(),
            first_byte: None,
        }))
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn received(&self) {
        let mut phase = self.phase();
        if phase.in_flight == 0 && phase.first_byte.is_none() {
            phase.first_byte = Some(Instant::now());
        }
    }

    fn request_began(self: &Arc<Self>) -> InFlight {
        self.phase().in_flight += 1;
        InFlight(Arc::clone(self))
    }

    /// When the connection is closed if nothing changes; `None` while a request is handled.
    fn deadline(&self, limits: ConnectionLimits) -> Option<Instant> {
        let phase = self.phase();
        if phase.in_flight > 0 {
            return None;
        }
        match phase.first_byte {
            _ if !phase.answered => phase.waiting_since.checked_add(limits.header_timeout),
            Some(first_byte) => first_byte.checked_add(limits.header_timeout),
            None => phase.waiting_since.checked_add(limits.idle_timeout),
        }
    }

    /// Completes when the connection's time is up.
    async fn time_up(&self, limits: ConnectionLimits) {
        // A new wait can begin while the timer sleeps; waking at least this often notices it
        // before its deadline, without waking the timer for every request.
        let recheck = limits.header_timeout.min(limits.idle_timeout);
        loop {
            let now = Instant::now();
            let sleep = match self.deadline(limits) {
                Some(deadline) if deadline <= now => return,
                Some(deadline) => deadline.duration_since(now).min(recheck),
                None => recheck,
            };
            tokio::time::sleep(sleep).await;
        }
    }
}

/// A request being handled; dropped when its answer is ready (or the request is abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        phase.in_flight = phase.in_flight.saturating_sub(1);
        if phase.in_flight == 0 {
            phase.answered = true;
            phase.waiting_since = Instant::now();
            phase.first_byte = None;
        }
    }
}

/// The TCP stream, telling the connection's `Activity` when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(context, buf);
        if buf.filled().len() > before {
            this.activity.received();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, bufs)
    }

    /// Kept, so that hyper writes an answer's head and body in one system call.
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

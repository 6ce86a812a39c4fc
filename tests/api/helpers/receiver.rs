//! A receiver of events on loopback: records every request it gets, and answers each with the
//! next status of its script (then its default, 202 unless set), after an optional delay.

use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::*;

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    /// What it was answered.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    script: Mutex<Vec<u16>>,
    /// The answer once the script is used up; 0 means 202.
    default_status: Mutex<u16>,
    delay: Mutex<Duration>,
    arrived: Notify,
}

pub struct Receiver {
    pub address: SocketAddr,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl Receiver {
    /// A receiver on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        Receiver::serve(listener, Arc::new(Inner::default()))
    }

    /// A receiver on `address`, which another receiver held before (it was down meanwhile).
    pub async fn start_on(address: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(address).await.expect("the same port");
        Receiver::serve(listener, Arc::new(Inner::default()))
    }

    fn serve(listener: TcpListener, inner: Arc<Inner>) -> Receiver {
        let address = listener.local_addr().expect("an address");
        let router = axum::Router::new()
            .fallback(record)
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver {
            address,
            inner,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The statuses of the next answers, in order; 202 once they are used up.
    pub fn answer_with(&self, statuses: &[u16]) {
        *self.inner.script.lock().unwrap() = statuses.to_vec();
    }

    /// Answer `status` once the script is used up.
    pub fn answer_by_default(&self, status: u16) {
        *self.inner.default_status.lock().unwrap() = status;
    }

    /// Wait this long before each answer.
    pub fn delay_answers(&self, delay: Duration) {
        *self.inner.delay.lock().unwrap() = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds of what was received, for at most `within`; answers it.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.inner.arrived.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let received = self.received();
                assert!(done(&received), "not received in {within:?}: {received:#?}");
                return received;
            }
        }
    }

    /// Stops listening: connections are refused from now on.
    pub fn stop(self) -> SocketAddr {
        self.server.abort();
        self.address
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(State(inner): State<Arc<Inner>>, request: Request) -> AxumStatus {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let status = {
        let mut script = inner.script.lock().unwrap();
        if script.is_empty() {
            match *inner.default_status.lock().unwrap() {
                0 => 202,
                status => status,
            }
        } else {
            script.remove(0)
        }
    };
    inner.received.lock().unwrap().push(Received {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
    });
    inner.arrived.notify_waiters();
    let delay = *inner.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    AxumStatus::from_u16(status).unwrap_or(AxumStatus::ACCEPTED)
}

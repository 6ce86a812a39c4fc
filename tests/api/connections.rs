//! SPEC §8, connections: clients that cannot hold connections open. Raw TCP on loopback, since
//! the socket's own timing is what is tested; the timeouts are 1 to 2 s and every wait is bounded.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// How long `stream` stays open (reads end in EOF or a reset), waiting at most `limit`; `None`
/// if it is still open then. Fails if the server sends anything.
async fn open_for(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
        Ok(Ok(n)) => panic!("the server sent {:?}", String::from_utf8_lossy(&buf[..n])),
    }
}

/// Reads one response (head and `Content-Length` body) within 5 s; answers its status line.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            let n = stream.read(&mut buf).await.expect("a response");
            assert!(n > 0, "the server closed before answering: {received:?}");
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received).into_owned();
            let Some(head_end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length = text[..head_end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if received.len() >= head_end + 4 + length {
                return text.lines().next().unwrap_or_default().to_owned();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_all)
        .await
        .expect("a response within 5 s")
}

#[tokio::test]
async fn a_request_whose_headers_never_finish_is_disconnected_after_the_header_timeout() {
    let app = TestApp::spawn_with(&[("HTTP_HEADER_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"POST /api/v1/auth/signin HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let open = open_for(&mut stream, Duration::from_secs(4))
        .await
        .expect("disconnected within the 1 s timeout and 3 s of slack");
    assert!(
        open >= Duration::from_millis(800),
        "closed too early: {open:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout_not_the_idle_one() {
    let app =
        TestApp::spawn_with(&[("HTTP_HEADER_TIMEOUT", "1s"), ("HTTP_IDLE_TIMEOUT", "30s")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let open = open_for(&mut stream, Duration::from_secs(4))
        .await
        .expect("closed within the 1 s header timeout and 3 s of slack");
    assert!(
        open >= Duration::from_millis(800),
        "closed too early: {open:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lasts_the_idle_timeout_even_when_longer_than_the_header_one()
{
    let app =
        TestApp::spawn_with(&[("HTTP_HEADER_TIMEOUT", "1s"), ("HTTP_IDLE_TIMEOUT", "2s")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");

    // Idle past the header timeout, within the idle one: still open, and still answers.
    assert_eq!(
        open_for(&mut stream, Duration::from_millis(1500)).await,
        None,
        "an idle connection was closed before HTTP_IDLE_TIMEOUT"
    );
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");

    let open = open_for(&mut stream, Duration::from_secs(5))
        .await
        .expect("closed within the 2 s idle timeout and 3 s of slack");
    assert!(
        open >= Duration::from_millis(1600),
        "closed too early: {open:?}"
    );
}

#[tokio::test]
async fn a_later_request_has_the_header_timeout_from_its_first_byte() {
    let app =
        TestApp::spawn_with(&[("HTTP_HEADER_TIMEOUT", "1s"), ("HTTP_IDLE_TIMEOUT", "30s")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");

    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let open = open_for(&mut stream, Duration::from_secs(4))
        .await
        .expect("disconnected within the 1 s header timeout, not the 30 s idle one");
    assert!(
        open >= Duration::from_millis(800),
        "closed too early: {open:?}"
    );
}

#[tokio::test]
async fn a_request_whose_headers_arrive_slowly_but_in_time_is_answered() {
    let app = TestApp::spawn_with(&[("HTTP_HEADER_TIMEOUT", "2s")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    // Four pieces 300 ms apart: 0.9 s in all, under the 2 s timeout.
    let pieces: [&[u8]; 4] = [
        b"GET /healthz HTTP/1.1\r\n",
        b"Host: x\r\n",
        b"Accept: */*\r\n",
        b"\r\n",
    ];
    for (index, piece) in pieces.into_iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stream.write_all(piece).await.unwrap();
    }
    assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn beyond_max_connections_a_connection_waits_until_one_closes() {
    let app =
        TestApp::spawn_with(&[("MAX_CONNECTIONS", "3"), ("HTTP_HEADER_TIMEOUT", "30s")]).await;
    // Three connections that hold their place, sending nothing.
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // The fourth connects (the kernel's backlog takes it) but is not served.
    let mut fourth = TcpStream::connect(app.addr).await.unwrap();
    fourth.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), fourth.read(&mut buf))
            .await
            .is_err(),
        "a fourth connection was served while three were open"
    );

    drop(holders.remove(0));
    assert_eq!(read_response(&mut fourth).await, "HTTP/1.1 200 OK");
    // The other two are still open: one place was freed, not all.
    for holder in &mut holders {
        assert_eq!(open_for(holder, Duration::from_millis(100)).await, None);
    }
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once() {
    let app =
        TestApp::spawn_with(&[("HTTP_IDLE_TIMEOUT", "60s"), ("SHUTDOWN_TIMEOUT", "30s")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");

    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an idle connection held the shutdown for {:?}",
        started.elapsed()
    );
    assert!(
        open_for(&mut stream, Duration::from_secs(1))
            .await
            .is_some(),
        "the idle connection is closed"
    );
}

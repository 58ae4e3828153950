//! Past `max_connections`, a plain-HTTP client gets an answer it can act on (503,
//! problem+json, `Retry-After`) instead of a connection closed without a word.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::routing::get;
use axum::Router;
use examplebank::net::{serve, ServeOptions};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the answer is complete (a response to a keep-alive request ends with "ok").
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.ends_with(b"ok") {
            break;
        }
    }
    String::from_utf8(answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_answered_503_with_retry_after() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { "ok" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        router,
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1,
            tls: None,
        },
        async {
            let _ = stopped.await;
        },
    ));

    // The one allowed connection, kept open.
    let mut first = TcpStream::connect(addr).await.unwrap();
    let answer = exchange(&mut first, "GET / HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // One more: answered, not dropped, even with a request body the server never reads.
    let mut second = TcpStream::connect(addr).await.unwrap();
    let answer = exchange(
        &mut second,
        "POST /identity/v1/authorize HTTP/1.1\r\nhost: test\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 11\r\n\r\nusername=a&",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{answer}");
    assert!(head.contains("\r\nretry-after: 1"), "{answer}");
    assert!(
        head.contains("\r\ncontent-type: application/problem+json"),
        "{answer}"
    );
    assert!(head.contains("\r\nconnection: close"), "{answer}");
    let problem: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["status"], 503);
    assert_eq!(problem["type"], "urn:examplebank:problem:overloaded");

    // Once the first connection ends, new connections are served again.
    drop(first);
    let mut served = false;
    for _ in 0..100 {
        let mut next = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut next, "GET / HTTP/1.1\r\nhost: test\r\n\r\n").await;
        if answer.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served,
        "the freed place was never given to a new connection"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap();
}

//! `waittimes probe`: one HTTP GET that succeeds only on a 2xx answer.
//!
//! The container image has no curl or wget (less to patch, less to exploit), so its
//! `HEALTHCHECK` runs the service binary itself against its own `/health/live`. A probe must
//! never hang the orchestrator: the whole request, connect included, is bounded by one timeout.

use std::time::Duration;

/// The default target: the liveness route on the default listen port.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/health/live";

/// The default bound on the whole request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How much of a non-2xx body the error message quotes.
const MAX_BODY_CHARS: usize = 200;

/// Why a probe failed. Every variant names the URL, so the healthcheck log says what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid probe URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// `reason` is the innermost cause (e.g. "Connection refused"): reqwest's own message only
    /// says that sending failed.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
}

/// GETs `url`; `Ok` with the status when it is 2xx, an error naming what went wrong otherwise.
pub async fn probe(url: &str, timeout: Duration) -> Result<reqwest::StatusCode, ProbeError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| ProbeError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if parsed.scheme() != "http" {
        // The client is built without TLS: the probe targets the service's own plain listener.
        return Err(ProbeError::InvalidUrl {
            url: url.to_owned(),
            reason: "only http:// is supported".to_owned(),
        });
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A probe answers for this one process: never follow a redirect elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ProbeError::Client)?;
    let classify = |source: reqwest::Error| {
        if source.is_timeout() {
            ProbeError::Timeout {
                url: url.to_owned(),
                timeout,
            }
        } else {
            ProbeError::Unreachable {
                url: url.to_owned(),
                reason: root_cause(&source),
            }
        }
    };
    let response = client.get(parsed).send().await.map_err(classify)?;
    let status = response.status();
    if status.is_success() {
        return Ok(status);
    }
    // The body of a failed probe (e.g. readiness reasons) is the most useful part of the log;
    // an unreadable one is reported as such rather than hiding the status.
    let body = match response.text().await {
        Ok(text) => text.chars().take(MAX_BODY_CHARS).collect(),
        Err(e) => format!("(body unreadable: {e})"),
    };
    Err(ProbeError::Status {
        url: url.to_owned(),
        status,
        body,
    })
}

/// The innermost error of a source chain, as text.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection server that reads the request head and answers `response` verbatim;
    /// returns its URL.
    async fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept the probe");
            let mut buf = vec![0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.expect("read the request");
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8_lossy(&head);
            assert!(
                request.starts_with("GET /health/live HTTP/1.1\r\n"),
                "unexpected request: {request}"
            );
            socket
                .write_all(response.as_bytes())
                .await
                .expect("write the answer");
        });
        format!("http://{addr}/health/live")
    }

    #[tokio::test]
    async fn ok_on_2xx() {
        let url =
            serve_once("HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}").await;
        let status = probe(&url, Duration::from_secs(5))
            .await
            .expect("2xx is ok");
        assert_eq!(status, reqwest::StatusCode::OK);
    }

    #[tokio::test]
    async fn error_on_503_quotes_the_body() {
        let url = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 21\r\n\r\n{\"error\":\"not ready\"}",
        )
        .await;
        let err = probe(&url, Duration::from_secs(5))
            .await
            .expect_err("503 must fail");
        match &err {
            ProbeError::Status { status, body, .. } => {
                assert_eq!(*status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(body, "{\"error\":\"not ready\"}");
            }
            other => panic!("expected a status error, got {other:?}"),
        }
        assert!(err.to_string().contains("503"), "{err}");
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let url = serve_once(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let err = probe(&url, Duration::from_secs(5))
            .await
            .expect_err("3xx must fail");
        assert!(
            matches!(err, ProbeError::Status { status, .. } if status == reqwest::StatusCode::FOUND),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn error_when_nothing_listens() {
        // Bind, note the port, and close it again: nothing listens there any more.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("local address").port()
        };
        let url = format!("http://127.0.0.1:{port}/health/live");
        let err = probe(&url, Duration::from_secs(5))
            .await
            .expect_err("a closed port must fail");
        match &err {
            ProbeError::Unreachable { reason, .. } => {
                assert!(reason.contains("refused"), "root cause expected: {reason}")
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_when_the_server_never_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        // Accept and hold the connection without answering, until the test ends.
        let holder = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.expect("accept");
            std::future::pending::<()>().await;
        });
        let url = format!("http://{addr}/health/live");
        let err = probe(&url, Duration::from_millis(200))
            .await
            .expect_err("silence must fail");
        holder.abort();
        assert!(matches!(err, ProbeError::Timeout { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn rejects_bad_urls_before_connecting() {
        for url in ["not a url", "https://127.0.0.1:8080/health/live"] {
            let err = probe(url, DEFAULT_TIMEOUT).await.expect_err("invalid URL");
            assert!(
                matches!(err, ProbeError::InvalidUrl { .. }),
                "{url}: {err:?}"
            );
        }
    }
}

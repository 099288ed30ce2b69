//! Response bodies read under a cap.
//!
//! A downstream is trusted to answer, not to answer small: `Response::bytes()` buffers
//! whatever arrives (a 20 MB reply took the process from 25 to 535 MB and was then stored in
//! the conversation). Here a `Content-Length` above the cap is refused before a byte is
//! read, and a body without one (chunked) is read chunk by chunk with a running total, so at
//! most the cap plus one chunk is ever held.

use bytes::{Bytes, BytesMut};

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the cap (declared or as read). Nothing of it is kept.
    #[error("response body larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("reading the response body: {0}")]
    Transport(String),
}

/// Reads `response`'s body if it is at most `limit` bytes.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|declared| declared > limit as u64)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;

    /// A loopback server answering `/declared` with a `Content-Length` body of `n` bytes and
    /// `/chunked` with the same bytes streamed in 1 KiB chunks (no `Content-Length`).
    async fn server(n: usize) -> String {
        let app = Router::new()
            .route("/declared", get(move || async move { vec![b'x'; n] }))
            .route(
                "/chunked",
                get(move || async move {
                    let chunks = (0..n.div_ceil(1024)).map(move |i| {
                        let len = (n - i * 1024).min(1024);
                        Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; len]))
                    });
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn read(url: &str, limit: usize) -> Result<Bytes, BodyError> {
        let response = reqwest::get(url).await.unwrap();
        read_capped(response, limit).await
    }

    #[tokio::test]
    async fn a_body_at_the_cap_is_read_whole() {
        let base = server(4096).await;
        for path in ["declared", "chunked"] {
            let body = read(&format!("{base}/{path}"), 4096).await.unwrap();
            assert_eq!(body.len(), 4096, "{path}");
        }
    }

    #[tokio::test]
    async fn one_byte_over_the_cap_is_refused_declared_or_streamed() {
        let base = server(4097).await;
        for path in ["declared", "chunked"] {
            let err = read(&format!("{base}/{path}"), 4096).await.unwrap_err();
            assert!(
                matches!(err, BodyError::TooLarge { limit: 4096 }),
                "{path}: {err}"
            );
        }
    }
}

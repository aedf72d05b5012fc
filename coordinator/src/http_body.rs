//! Request bodies read under named limits, so that no client can pin the endpoint's memory or
//! its workers: a body larger than its route allows is refused with a JSON 413 as soon as it
//! says so (or grows past it), one that does not arrive within `body_read_timeout_ms` gets a
//! JSON 408, and at most `max_concurrent_bodies` bodies holding at most `max_body_bytes_in_flight`
//! bytes in all are read at once (503 past that, to retry). Headers have their own deadline
//! (`header_read_timeout_ms`, enforced by actix-web).

use crate::http::ApiError;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The limits on reading request bodies, shared by every worker.
pub struct BodyLimits {
    max_body_bytes: usize,
    bodies: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes_in_flight: usize,
    read_timeout: Duration,
}

impl BodyLimits {
    pub fn new(
        max_body_bytes: usize,
        max_concurrent_bodies: usize,
        max_body_bytes_in_flight: usize,
        body_read_timeout_ms: u64,
    ) -> Self {
        let max_bytes_in_flight = max_body_bytes_in_flight.min(Semaphore::MAX_PERMITS);
        BodyLimits {
            max_body_bytes,
            bodies: Arc::new(Semaphore::new(max_concurrent_bodies)),
            bytes: Arc::new(Semaphore::new(max_bytes_in_flight)),
            max_bytes_in_flight,
            read_timeout: Duration::from_millis(body_read_timeout_ms),
        }
    }

    /// The largest body a write route takes, in bytes (`max_body_bytes`).
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Reads the body of `req` from `payload`, at most `limit_bytes`, under these limits.
    pub async fn read(
        &self,
        req: &HttpRequest,
        mut payload: web::Payload,
        limit_bytes: usize,
    ) -> Result<web::Bytes, ApiError> {
        let too_large =
            || ApiError::new("body_too_large", format!("this route takes bodies of at most {limit_bytes} bytes"));
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit_bytes) {
            return Err(too_large());
        }
        let busy = || ApiError::new("busy", "too many request bodies are being read; retry shortly");
        let _body = self.bodies.clone().try_acquire_owned().map_err(|_| busy())?;
        // Bytes are taken from the shared budget as they arrive, and given back when this
        // request is done with them.
        let mut held = Vec::new();
        let mut body = web::BytesMut::new();
        let read = async {
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::new("bad_body", e.to_string()))?;
                if body.len() + chunk.len() > limit_bytes {
                    return Err(too_large());
                }
                let permits = u32::try_from(chunk.len()).map_err(|_| too_large())?;
                if chunk.len() > self.max_bytes_in_flight {
                    return Err(busy());
                }
                held.push(self.bytes.clone().try_acquire_many_owned(permits).map_err(|_| busy())?);
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout(self.read_timeout, read).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ApiError::new(
                    "body_timeout",
                    format!("the body did not arrive within {} ms", self.read_timeout.as_millis()),
                ))
            }
        }
        Ok(body.freeze())
    }
}

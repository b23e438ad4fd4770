//! The one bounded wait: poll until a condition holds or the deadline passes, then say what was
//! waited for and the last state seen.

use crate::error::{Error, Result};
use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `probe` every `interval` until it returns `Ok(Ok(value))` or `timeout` passes. `Ok(Err(state))`
/// is "not yet" with the state to report; `Err(e)` (the API server still starting, say) is
/// remembered as the last state too, since a wait outlives transient errors.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, interval: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last_seen = match probe().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => state,
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout { what: what.to_string(), seconds: timeout.as_secs(), last_seen });
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let got = poll("three calls", Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            let n = calls;
            async move { Ok(if n >= 3 { Ok(n) } else { Err(format!("call {n}")) }) }
        })
        .await;
        assert_eq!(got.ok(), Some(3));
    }

    #[tokio::test]
    async fn times_out_naming_what_and_the_last_state() {
        let got: Result<()> = poll("a thing", Duration::from_millis(20), Duration::from_millis(5), || async { Ok(Err("still not".to_string())) }).await;
        assert_eq!(got.err().map(|e| e.to_string()).as_deref(), Some("timed out after 0s waiting for a thing; last seen: still not"));
    }
}

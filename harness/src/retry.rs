//! Retries with backoff for transient API errors: connection failures, 5xx, 429 and 409 conflicts.
//! A 4xx validation answer is a verdict and is never retried. Every retry is remembered so the
//! report can mark a case that passed only after one as flaky instead of hiding it.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

const BACKOFF: [Duration; 4] =
    [Duration::from_millis(200), Duration::from_millis(400), Duration::from_millis(800), Duration::from_millis(1600)];

/// Whether an error is worth another try.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        // AlreadyExists is a 409 too, but retrying a create cannot change it.
        kube::Error::Api(status) => {
            status.code >= 500 || status.code == 429 || (status.code == 409 && status.reason != "AlreadyExists")
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The transient errors one case ran into (and recovered from, or not).
#[derive(Debug, Default)]
pub struct Retries {
    seen: Mutex<Vec<String>>,
}

impl Retries {
    /// Runs `call`, retrying transient errors with backoff.
    pub async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut delays = BACKOFF.iter();
        loop {
            match call().await {
                Err(e) if is_transient(&e) => match delays.next() {
                    Some(delay) => {
                        if let Ok(mut seen) = self.seen.lock() {
                            seen.push(format!("{what}: {e} (retried)"));
                        }
                        tokio::time::sleep(*delay).await;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    pub fn taken(&self) -> Vec<String> {
        self.seen.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use rstest::rstest;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status { code, reason: reason.into(), ..Default::default() }))
    }

    #[rstest]
    #[case(api(500, "InternalError"), true)]
    #[case(api(503, "ServiceUnavailable"), true)]
    #[case(api(429, "TooManyRequests"), true)]
    #[case(api(409, "Conflict"), true)]
    #[case(api(409, "AlreadyExists"), false)]
    #[case(api(422, "Invalid"), false)]
    #[case(api(404, "NotFound"), false)]
    #[case(api(400, "BadRequest"), false)]
    fn classifies_errors(#[case] error: kube::Error, #[case] transient: bool) {
        assert_eq!(is_transient(&error), transient);
    }

    #[tokio::test]
    async fn retries_transient_errors_and_remembers_them() {
        let retries = Retries::default();
        let calls = AtomicU32::new(0);
        let result = retries
            .call("create", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 { Err(api(503, "ServiceUnavailable")) } else { Ok(7) }
            })
            .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(retries.taken().len(), 2);
    }

    #[tokio::test]
    async fn never_retries_a_validation_answer() {
        let retries = Retries::default();
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retries
            .call("create", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(api(422, "Invalid"))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(retries.taken().is_empty());
    }
}

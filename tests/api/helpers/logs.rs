//! What the service logs while a test's future runs.

use super::*;

/// The log lines written on this thread while the guard of `capture_logs` lives, as text.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures what is logged at `level` and above on this thread (a current-thread test runtime,
/// which drives in-process requests on it) until the guard is dropped.
pub fn capture_logs(level: tracing::Level) -> (tracing::subscriber::DefaultGuard, CapturedLog) {
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(log.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), log)
}

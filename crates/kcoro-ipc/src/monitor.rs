//! Makes a kcoro program attachable by `kcoro chanmon`.

use crate::{IpcError, Server};

/// Serves this process's named channels (read-only: counters only) and the current
/// runtime's scheduler counters at `addr` (`unix:PATH` or `tcp:HOST:PORT`), for
/// `kcoro chanmon ADDR`. Call it from inside the runtime to monitor (then the server
/// runs on it); keep the returned [`Server`] alive for as long as the process should
/// be attachable.
///
/// ```no_run
/// kcoro::run(|| {
///     let _monitor = kcoro_ipc::monitor::serve("unix:/tmp/app.sock").expect("monitor");
///     // ... the program, with channels built with `.name(..)` ...
/// });
/// ```
pub fn serve(addr: &str) -> Result<Server, IpcError> {
    Server::bind(addr)?.name("kcoro monitor").monitor(kcoro::Handle::try_current()).start()
}

/// As [`serve`], and GET_METRICS answers with what `metrics` returns (the program's own
/// counters, which `kcoro chanmon` shows in its metrics view, `m`).
///
/// ```no_run
/// use kcoro::monitor::Metric;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// kcoro::run(|| {
///     let jobs = Arc::new(AtomicU64::new(0));
///     let seen = Arc::clone(&jobs);
///     let _monitor = kcoro_ipc::monitor::serve_with_metrics("unix:/tmp/app.sock", move || {
///         vec![Metric::counter("app_jobs_total", "Jobs done.", seen.load(Ordering::Relaxed) as f64)]
///     })
///     .expect("monitor");
///     // ... the program, counting in `jobs` ...
/// });
/// ```
pub fn serve_with_metrics(
    addr: &str,
    metrics: impl Fn() -> Vec<kcoro::monitor::Metric> + Send + Sync + 'static,
) -> Result<Server, IpcError> {
    Server::bind(addr)?.name("kcoro monitor").monitor(kcoro::Handle::try_current()).metrics(metrics).start()
}

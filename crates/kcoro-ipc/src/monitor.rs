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

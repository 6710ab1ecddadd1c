//! What a connection may be told about the server: channel counters (LIST, GET_STATS)
//! and, on a monitor, the runtime's scheduler, coroutines and metrics.

use super::ConnState;
use crate::coros::CoroutineReport;
use crate::proto::Cmd;
use crate::server::served::Served;
use crate::stats::{ChannelStats, SchedStats};

impl ConnState {
    pub(super) fn list(&self, req: u64, one: Option<u64>) {
        let cmd = if one.is_some() { Cmd::GET_STATS } else { Cmd::LIST };
        let stats: Vec<ChannelStats> = {
            let reg = self.server.registry();
            match one {
                // Counters of a channel this connection opened, or of a named one (LIST
                // shows those to anyone); another connection's unnamed channel does not
                // exist for it.
                Some(id) => match reg.by_id(id).filter(|_| self.holds(id) || reg.name_of(id).is_some()) {
                    Some(c) => vec![stats_of(id, reg.name_of(id), &*c)],
                    None => {
                        drop(reg);
                        return self.refuse(cmd, req, -libc::ENOENT, "no such channel");
                    }
                },
                None => {
                    let mut all: Vec<ChannelStats> =
                        reg.named().into_iter().map(|(id, name, c)| stats_of(id, Some(name), &*c)).collect();
                    drop(reg);
                    if self.server.monitor.is_some() {
                        all.extend(unserved_named(&all));
                    }
                    all.truncate(crate::proto::MAX_LISTED_CHANNELS);
                    all
                }
            }
        };
        self.reply(cmd, req, 0, |r| {
            for s in &stats {
                s.encode(r);
            }
        });
    }

    /// GET_SCHED: the monitored runtime's counters.
    pub(super) fn sched(&self, req: u64) {
        let Some(runtime) = &self.server.monitor else {
            return self.refuse(Cmd::GET_SCHED, req, -libc::ENOTSUP, "this server is not a monitor");
        };
        let Some(stats) = runtime.clone().or_else(kcoro::Handle::try_current).map(|h| h.stats()) else {
            return self.refuse(Cmd::GET_SCHED, req, -libc::ENOTSUP, "no runtime to report");
        };
        let s = SchedStats::now(stats);
        self.reply(Cmd::GET_SCHED, req, 0, |r| s.encode(r));
    }

    /// GET_COROS: the monitored runtime's coroutines.
    pub(super) fn coros(&self, req: u64) {
        let Some(runtime) = &self.server.monitor else {
            return self.refuse(Cmd::GET_COROS, req, -libc::ENOTSUP, "this server is not a monitor");
        };
        let Some(handle) = runtime.clone().or_else(kcoro::Handle::try_current) else {
            return self.refuse(Cmd::GET_COROS, req, -libc::ENOTSUP, "no runtime to report");
        };
        let report = CoroutineReport::of(&handle);
        self.reply(Cmd::GET_COROS, req, 0, |r| report.encode(r));
    }

    /// GET_METRICS: the program's own metric samples.
    pub(super) fn metrics(&self, req: u64) {
        let Some(source) = &self.server.metrics else {
            return self.refuse(Cmd::GET_METRICS, req, -libc::ENOTSUP, "this server has no metrics");
        };
        // The program's code: a panic in it fails this request, not the connection.
        let source = std::sync::Arc::clone(source);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source())) {
            Ok(metrics) => self.reply(Cmd::GET_METRICS, req, 0, |r| crate::metrics::encode(&metrics, r)),
            Err(_) => self.refuse(Cmd::GET_METRICS, req, -libc::EIO, "the metrics source panicked"),
        }
    }
}

/// The process's named channels (kcoro's registry) that `served` does not already list;
/// their `chan_id` is the channel's process-wide id.
fn unserved_named(served: &[ChannelStats]) -> Vec<ChannelStats> {
    kcoro::chan::registry::list()
        .into_iter()
        .filter(|s| !served.iter().any(|c| c.local_id == s.id))
        .map(|s| ChannelStats::from_snapshot(s.id, &s))
        .collect()
}

fn stats_of(id: u64, name: Option<String>, chan: &dyn Served) -> ChannelStats {
    let mut s = ChannelStats::from_snapshot(id, &chan.snapshot());
    if s.name.is_none() {
        s.name = name;
    }
    s
}

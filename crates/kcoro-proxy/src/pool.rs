//! Backend pools: which backends are up, how many connections each has, and picking one.
//!
//! A [`Backend`] outlives reloads that keep its address in its pool, so its health and
//! its open-connection count carry over (least-connections stays right across a reload).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::config::{Balance, PoolConfig};

/// One backend address and what happened there.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    up: AtomicBool,
    /// Connections forwarded to it and still open.
    pub(crate) active: AtomicUsize,
    /// Connections forwarded to it, ever.
    pub(crate) connections: AtomicU64,
    /// Connects that failed (refused, timed out, other).
    pub(crate) connect_errors: AtomicU64,
    /// Health checks that failed.
    pub(crate) checks_failed: AtomicU64,
    /// Times it was taken out by its health check.
    pub(crate) downs: AtomicU64,
    /// Which health checker owns it: a reload starts new checkers and the old ones see
    /// that they are no longer wanted.
    pub(crate) checker: AtomicU64,
}

impl Backend {
    fn new(addr: SocketAddr) -> Self {
        Backend {
            addr,
            up: AtomicBool::new(true),
            active: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            checker: AtomicU64::new(0),
        }
    }

    /// Whether it takes new connections.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Takes it out or puts it back (the health checker's verdict).
    pub(crate) fn set_up(&self, up: bool) {
        if self.up.swap(up, Relaxed) && !up {
            self.downs.fetch_add(1, Relaxed);
        }
    }
}

/// A pool as one configuration has it.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) config: PoolConfig,
    pub(crate) backends: Vec<Arc<Backend>>,
    /// Where round-robin (and least-connections' tie-break) starts next.
    cursor: AtomicUsize,
    /// Connections waiting for a backend connect now.
    pub(crate) pending: AtomicUsize,
    /// Connections closed because no backend was up or every connect failed.
    pub(crate) no_backend: AtomicU64,
}

impl Pool {
    /// The pool `config` describes, keeping the `Backend`s of `old` whose address stays.
    pub(crate) fn new(config: PoolConfig, old: Option<&Pool>) -> Pool {
        let backends = config
            .backends
            .iter()
            .map(|&addr| {
                old.and_then(|o| o.backends.iter().find(|b| b.addr == addr))
                    .map_or_else(|| Arc::new(Backend::new(addr)), Arc::clone)
            })
            .collect();
        let (no_backend, cursor) =
            old.map_or((0, 0), |o| (o.no_backend.load(Relaxed), o.cursor.load(Relaxed)));
        Pool {
            config,
            backends,
            cursor: AtomicUsize::new(cursor),
            pending: AtomicUsize::new(0),
            no_backend: AtomicU64::new(no_backend),
        }
    }

    /// The backend a new connection should try, skipping those `tried` says were tried;
    /// after a failed connect to `after`, the search goes on from there (the turn of the
    /// next connection is not taken). `None`: no up backend is left.
    pub(crate) fn pick(&self, tried: &[bool], after: Option<usize>) -> Option<usize> {
        let n = self.backends.len();
        let start = match after {
            Some(i) => (i + 1) % n,
            None => self.cursor.fetch_add(1, Relaxed) % n,
        };
        let candidates = (0..n).map(|i| (start + i) % n).filter(|&i| !tried[i] && self.backends[i].is_up());
        match self.config.balance {
            Balance::RoundRobin => candidates.into_iter().next(),
            // In cursor order, so equal counts are taken in turn.
            Balance::LeastConnections => candidates.min_by_key(|&i| self.backends[i].active.load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pool(balance: Balance, n: u16) -> Pool {
        let backends = (1..=n).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect();
        Pool::new(
            PoolConfig {
                name: "p".into(),
                balance,
                backends,
                connect_timeout: Duration::from_secs(1),
                health: None,
            },
            None,
        )
    }

    #[test]
    fn round_robin_takes_each_up_backend_in_turn() {
        let p = pool(Balance::RoundRobin, 3);
        let none = [false; 3];
        let picks: Vec<_> = (0..6).map(|_| p.pick(&none, None).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        p.backends[1].set_up(false);
        let picks: Vec<_> = (0..4).map(|_| p.pick(&none, None).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2), "{picks:?}");
        assert_eq!(p.backends[1].downs.load(Relaxed), 1);
    }

    #[test]
    fn a_failed_connect_moves_on_and_then_there_is_none() {
        let p = pool(Balance::RoundRobin, 2);
        let first = p.pick(&[false, false], None).unwrap();
        let mut tried = [false, false];
        tried[first] = true;
        let second = p.pick(&tried, Some(first)).unwrap();
        assert_ne!(first, second);
        assert_eq!(p.pick(&[false, false], None), Some(second), "the retry took no turn");
        assert_eq!(p.pick(&[true, true], None), None);
        p.backends[0].set_up(false);
        p.backends[1].set_up(false);
        assert_eq!(p.pick(&[false, false], None), None);
    }

    #[test]
    fn least_connections_picks_the_emptiest_and_shares_ties() {
        let p = pool(Balance::LeastConnections, 3);
        p.backends[0].active.store(5, Relaxed);
        p.backends[1].active.store(2, Relaxed);
        p.backends[2].active.store(2, Relaxed);
        let none = [false; 3];
        let picks: Vec<_> = (0..4).map(|_| p.pick(&none, None).unwrap()).collect();
        assert!(picks.iter().all(|&i| i != 0), "{picks:?}");
        assert!(picks.contains(&1) && picks.contains(&2), "ties taken in turn: {picks:?}");
        p.backends[1].set_up(false);
        p.backends[2].set_up(false);
        assert_eq!(p.pick(&none, None), Some(0), "a busy up backend beats a down one");
    }

    #[test]
    fn a_reload_keeps_the_backends_that_stay() {
        let old = pool(Balance::RoundRobin, 2);
        old.backends[1].active.store(7, Relaxed);
        old.backends[1].set_up(false);
        let mut config = old.config.clone();
        config.backends = vec![SocketAddr::from(([127, 0, 0, 1], 2)), SocketAddr::from(([127, 0, 0, 1], 9))];
        let new = Pool::new(config, Some(&old));
        assert!(Arc::ptr_eq(&new.backends[0], &old.backends[1]));
        assert_eq!(new.backends[0].active.load(Relaxed), 7);
        assert!(!new.backends[0].is_up());
        assert!(new.backends[1].is_up());
        assert_eq!(new.backends[1].active.load(Relaxed), 0);
    }
}

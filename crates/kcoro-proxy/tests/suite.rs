//! kcoro-proxy against real sockets: backends are plain std servers on threads, clients
//! plain std sockets; the proxy runs on a kcoro runtime of its own.

#[path = "suite/common.rs"]
mod common;

#[path = "suite/adversary.rs"]
mod adversary;
#[path = "suite/balance.rs"]
mod balance;
#[path = "suite/faults.rs"]
mod faults;
#[path = "suite/health.rs"]
mod health;
#[path = "suite/lifecycle.rs"]
mod lifecycle;
#[path = "suite/proxy_protocol.rs"]
mod proxy_protocol;
#[path = "suite/transfer.rs"]
mod transfer;

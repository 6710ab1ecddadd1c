//! kcoro-nats: kcoro channels across hosts, bridged onto NATS (core subjects and
//! JetStream).
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Job { id: u64 }
//!
//! # fn main() -> Result<(), kcoro_nats::NatsError> {
//! let nats = kcoro_nats::connect("nats://127.0.0.1:4222")?;
//! let (tx, rx) = nats.work_queue::<Job>("jobs", 10_000)?; // MPMC, bounded, at-least-once
//! tx.send(Job { id: 1 }).map_err(|e| e.into_error())?;    // parks while the stream is full
//! let d = rx.recv()?;                                     // redelivered unless acked in time
//! assert_eq!(d.id, 1);
//! d.ack()?;
//! # Ok(()) }
//! ```
//!
//! Every operation works from a kcoro coroutine (it parks; the worker runs other
//! coroutines), from a plain thread (it blocks) and, through the local channels inside,
//! from async code. The NATS client (`async-nats`) lives on a current-thread tokio runtime
//! on a thread the bridge owns; callers hand it requests through kcoro channels. See
//! `docs/NATS.md` for how each kcoro channel kind maps onto NATS and what cannot map.

/// The examples of `docs/NATS.md` compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/NATS.md")]
struct NatsDocDoctests;

mod codec;
mod conflated;
mod error;
mod exec;
mod intern;
mod recv;
mod rendezvous;
pub mod server;
mod setup;
mod stats;
mod subject;
mod work_queue;

/// What the fuzz target (`fuzz/`, `scripts/fuzz.sh`) and its corpus replay reach: the
/// value decoder every payload from the broker goes through. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use serde::{Deserialize, Serialize};

    /// A value of several field kinds, as a user's element might be.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Job {
        pub id: u64,
        pub name: String,
        pub payload: Vec<u8>,
        pub retry: Option<u32>,
        pub tags: Vec<(String, i64)>,
    }

    /// Decodes `data` as each of several element types. A payload from the broker is a
    /// value or an error, never a panic; and a value the decoder accepts encodes and
    /// decodes back to itself. (Not to the same bytes: postcard accepts an overlong varint,
    /// as the fuzzer found, which is the same value, not a foreign one.) Returns whether
    /// any type accepted it.
    pub fn decode_any(data: &[u8]) -> bool {
        fn one<T>(data: &[u8]) -> bool
        where
            T: Serialize + serde::de::DeserializeOwned + std::fmt::Debug + PartialEq + 'static,
        {
            let Ok(v) = crate::codec::decode::<T>(&bytes::Bytes::copy_from_slice(data)) else { return false };
            let again =
                crate::codec::encode(&v).unwrap_or_else(|e| panic!("{v:?} decoded but does not encode: {e}"));
            let back = crate::codec::decode::<T>(&again)
                .unwrap_or_else(|e| panic!("{v:?} does not decode from its encoding: {e}"));
            assert_eq!(back, v, "a decoded value changed through its own encoding");
            true
        }
        let bytes = bytes::Bytes::copy_from_slice(data);
        let fast = crate::codec::decode::<bytes::Bytes>(&bytes).ok();
        assert_eq!(
            fast,
            crate::codec::decode_by_codec::<bytes::Bytes>(data).ok(),
            "the Bytes shortcut and the codec disagree"
        );
        let hits = [
            one::<bytes::Bytes>(data),
            one::<u64>(data),
            one::<String>(data),
            one::<Vec<u8>>(data),
            one::<(u64, String)>(data),
            one::<Job>(data),
        ];
        hits.contains(&true)
    }

    /// Valid payloads of each type, to seed the corpus.
    pub fn seeds() -> Vec<Vec<u8>> {
        let job = Job {
            id: 7,
            name: "resize".into(),
            payload: vec![1, 2, 3],
            retry: Some(2),
            tags: vec![("eu".into(), -1)],
        };
        [
            crate::codec::encode(&42u64),
            crate::codec::encode(&"hello".to_string()),
            crate::codec::encode(&vec![0u8; 40]),
            crate::codec::encode(&bytes::Bytes::from_static(&[7; 200])),
            crate::codec::encode(&(9u64, "x".to_string())),
            crate::codec::encode(&job),
        ]
        .into_iter()
        .filter_map(Result::ok)
        .map(|b| b.to_vec())
        .collect()
    }
}

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub use codec::END_HEADER;

pub use conflated::Latest;
pub use error::{NatsError, SendError};
pub use rendezvous::{DEFAULT_REPLY_TIMEOUT, RendezvousReceiver, RendezvousSender};

pub use stats::BridgeStats;
pub use subject::{Publisher, Subscriber};

pub use work_queue::state::STATE_STREAM;
pub use work_queue::{
    Capacity, Delivery, GONE_AFTER, IDLE_CHECK, WorkQueueOptions, WorkReceiver, WorkSender,
};

use exec::{Exec, Wait};

/// How to connect: credentials, TLS, a client name, timeouts.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The connection's name, shown by the server's monitoring.
    pub name: Option<String>,
    /// A `.creds` file (JWT + NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// Require TLS.
    pub require_tls: bool,
    /// Extra root certificates (PEM) to trust.
    pub root_certificates: Vec<PathBuf>,
    /// A client certificate and its key (PEM), for mutual TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
    /// How long a JetStream request or a publish acknowledgement may take before the
    /// attempt counts as timed out (a send then retries, see [`WorkSender::send`]).
    pub ack_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            name: None,
            credentials_file: None,
            require_tls: false,
            root_certificates: Vec::new(),
            client_certificate: None,
            connect_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// Connects to the server at `url` (or a comma-separated list of a cluster's URLs) with
/// default options.
pub fn connect(url: &str) -> Result<Nats, NatsError> {
    connect_with(url, ConnectOptions::default())
}

/// Connects with options.
pub fn connect_with(url: &str, opts: ConnectOptions) -> Result<Nats, NatsError> {
    let exec = Exec::start()?;
    let url_owned = url.to_string();
    let fail = |cause: String| NatsError::Connect { url: url.to_string(), cause };
    let conn_opts = opts.clone();
    let connected = exec.call(Wait::FOREVER, async move {
        let mut o = async_nats::ConnectOptions::new()
            .connection_timeout(conn_opts.connect_timeout)
            .require_tls(conn_opts.require_tls)
            // Reconnect forever: pending operations resume or time out as documented.
            .max_reconnects(None);
        if let Some(name) = &conn_opts.name {
            o = o.name(name);
        }
        if let Some(path) = &conn_opts.credentials_file {
            o = o.credentials_file(path).await.map_err(|e| format!("credentials {}: {e}", path.display()))?;
        }
        for cert in &conn_opts.root_certificates {
            o = o.add_root_certificates(cert.clone());
        }
        if let Some((cert, key)) = &conn_opts.client_certificate {
            o = o.add_client_certificate(cert.clone(), key.clone());
        }
        let servers: Vec<&str> = url_owned.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let addrs: Result<Vec<async_nats::ServerAddr>, String> =
            servers.iter().map(|s| s.parse::<async_nats::ServerAddr>().map_err(|e| e.to_string())).collect();
        let client = o.connect(addrs?).await.map_err(|e| e.to_string())?;
        let js =
            async_nats::jetstream::ContextBuilder::new().timeout(conn_opts.ack_timeout).build(client.clone());
        Ok::<_, String>((client, js))
    })?;
    let (client, js) = connected.map_err(fail)?;
    let max_payload_at_connect = AtomicUsize::new(client.server_info().max_payload);
    Ok(Nats {
        shared: Arc::new(Shared {
            exec,
            max_payload_at_connect,
            client,
            js,
            host: nuid_prefix(),
            msg_seq: AtomicU64::new(0),
            id_key: std::hash::RandomState::new(),
            ack_timeout: opts.ack_timeout,
        }),
    })
}

/// A random prefix for this connection's message ids (so ids from two hosts never meet).
fn nuid_prefix() -> String {
    nuid::next().to_string()
}

/// What every endpoint of one connection shares.
pub(crate) struct Shared {
    pub(crate) exec: Exec,
    pub(crate) client: async_nats::Client,
    /// The server's `max_payload` when this connection was made: a payload within it is
    /// sent without asking the client, whose `server_info()` copies the whole INFO (its
    /// strings and URL list) per call, a cost per publish that showed in profiles.
    max_payload_at_connect: AtomicUsize,
    pub(crate) js: async_nats::jetstream::Context,
    /// Prefix of the `Nats-Msg-Id` of every JetStream publish from this connection.
    pub(crate) host: String,
    /// Sequence of those ids: one per connection, so two ends never reuse an id (the
    /// server would drop the second message as a duplicate).
    pub(crate) msg_seq: AtomicU64,
    /// The key of each id's tag (random per connection).
    id_key: std::hash::RandomState,
    /// [`ConnectOptions::ack_timeout`]: also how long a work-queue ack waits for the server.
    pub(crate) ack_timeout: Duration,
}

/// How long dropping a connection waits for what its tasks still hold to reach the server.
pub(crate) const DRAIN_AT_DROP: Duration = Duration::from_secs(2);

impl Drop for Shared {
    /// The ends' tasks may still hold acks (and values) handed over just before the last
    /// handle went, and the client may hold bytes it has not written: lost with the
    /// executor, those acks would bring their messages back after `ack_wait`. So the
    /// executor's other tasks get their turns first, then the client flushes; bounded, so
    /// a server that is down cannot hold the drop.
    fn drop(&mut self) {
        if self.exec.is_current_thread() {
            return;
        }
        let client = self.client.clone();
        let _ = self.exec.call(Wait::timeout(DRAIN_AT_DROP), async move {
            for _ in 0..DRAIN_TURNS {
                tokio::task::yield_now().await;
            }
            let _ = client.flush().await;
        });
    }
}

/// Turns the executor's other tasks get at drop. Each turn an ack task hands the client
/// what it holds until tokio's cooperative budget (128 operations) ends the turn; a
/// backlog longer than these turns allow goes the old way (redelivered after `ack_wait`).
const DRAIN_TURNS: usize = 8;

impl Shared {
    /// A `Nats-Msg-Id` no other publish uses, and nobody can predict: a keyed tag of the
    /// sequence number follows it. Anyone subscribed to a queue's subject sees the ids
    /// stored; with `prefix.sequence` alone, a peer could publish under the next ones, and
    /// the server would drop the real messages as duplicates while their sends say `Ok`.
    pub(crate) fn next_msg_id(&self) -> String {
        use std::hash::BuildHasher;
        let seq = self.msg_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}.{:016x}", self.host, seq, self.id_key.hash_one(seq))
    }

    /// The server's `max_payload`, checked before a value is handed to the client.
    pub(crate) fn check_payload(&self, size: usize) -> Result<(), NatsError> {
        if size <= self.max_payload_at_connect.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Larger, or connected since to a server with another limit: ask.
        let max = self.client.server_info().max_payload;
        self.max_payload_at_connect.store(max, Ordering::Relaxed);
        if max > 0 && size > max { Err(NatsError::PayloadTooLarge { size, max }) } else { Ok(()) }
    }
}

/// A connection to NATS: makes bridged channels. Cheap to clone; the executor thread and
/// the connection live while any clone or channel end made from it lives.
#[derive(Clone)]
pub struct Nats {
    shared: Arc<Shared>,
}

impl Nats {
    /// The server's `max_payload` in bytes (the largest encoded value a channel can carry).
    pub fn max_payload(&self) -> usize {
        self.shared.client.server_info().max_payload
    }

    /// Waits until everything published so far has reached the server.
    pub fn flush(&self) -> Result<(), NatsError> {
        let client = self.shared.client.clone();
        self.shared
            .exec
            .call(Wait::FOREVER, async move { client.flush().await })?
            .map_err(|e| NatsError::nats("flush", e))
    }

    /// The underlying client, for what the bridge does not cover. Its futures must run on
    /// a tokio runtime.
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }
}

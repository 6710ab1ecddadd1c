//! Rendezvous across hosts: request/reply, where a send completes when a receiver has
//! taken the value.
//!
//! Receivers join one queue group on `kcoro.rv.<name>` (each request goes to one of
//! them); a receiver's task hands the value to a named local rendezvous kcoro channel and
//! replies only once a local `recv` took it. A sender's request therefore returns when a
//! receiver has the value, as a local rendezvous send does.
//!
//! # What the answers mean
//! - *No responders*: no receiver is subscribed. `send` waits (retrying with backoff)
//!   for one to appear; `try_send` fails with `WouldBlock` at once.
//! - *Reply*: a receiver took the value.
//! - *Timeout*: no reply in time. It cannot tell whether a receiver took the value: the
//!   request may still sit in a receiver's queue, or its reply may be lost. Nothing more
//!   is sent for it afterwards: the requests are polled on the caller and stop with its
//!   wait.
//! - *End marker reply*: the receivers are closed (`Closed`).
//! - *Retry reply*: the receiving host dropped its receivers; the sender asks again.
//!
//! # Protocol
//! 1. *Close*: [`RendezvousSender::close`] publishes the end marker on
//!    `kcoro.rv.<name>.end`, which every receiver subscribes to (outside the queue
//!    group); each receiver closes its local channel and answers later requests with the
//!    end marker.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_nats::RequestErrorKind;
use async_nats::client::Request;
use bytes::Bytes;
use futures_util::StreamExt;
use kcoro::chan::{self, ChanError, Snapshot};
use kcoro::sync::CancelToken;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{check_name, decode, encode, end_headers, end_payload, is_end};
use crate::exec::Wait;
use crate::recv::recv_family;
use crate::stats::{BridgeStats, Counters, bump};
use crate::{Nats, NatsError, SendError, Shared};

/// How long one request waits for a reply when the caller gave no deadline.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait between two requests that found no responders.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// The header of a reply that says "this receiver is gone, ask another".
const RETRY_HEADER: &str = "Kcoro-Retry";

fn retry_headers() -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(RETRY_HEADER, "1");
    h
}

fn subject(name: &str) -> String {
    format!("kcoro.rv.{name}")
}

fn end_subject(name: &str) -> String {
    format!("kcoro.rv.{name}.end")
}

impl Nats {
    /// Both ends of the rendezvous channel `name`.
    pub fn rendezvous<T>(&self, name: &str) -> Result<(RendezvousSender<T>, RendezvousReceiver<T>), NatsError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok((self.rendezvous_sender(name)?, self.rendezvous_receiver(name)?))
    }

    /// A sending end of the rendezvous channel `name`.
    pub fn rendezvous_sender<T: Serialize>(&self, name: &str) -> Result<RendezvousSender<T>, NatsError> {
        check_name("rendezvous name", name)?;
        Ok(RendezvousSender {
            shared: Arc::clone(&self.shared),
            name: name.to_string(),
            counters: Arc::new(Counters::default()),
            closed: Arc::new(AtomicBool::new(false)),
            _values: PhantomData,
        })
    }

    /// A receiving end of the rendezvous channel `name` (subscribed when this returns).
    pub fn rendezvous_receiver<T>(&self, name: &str) -> Result<RendezvousReceiver<T>, NatsError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        check_name("rendezvous name", name)?;
        let client = self.shared.client.clone();
        let (subj, end) = (subject(name), end_subject(name));
        let subs = self
            .shared
            .exec
            .call(Wait::FOREVER, async move {
                let requests = client.queue_subscribe(subj, "kcoro-rv".to_string()).await?;
                let ends = client.subscribe(end).await?;
                crate::setup::settled(&client).await?;
                Ok::<_, async_nats::Error>((requests, ends))
            })?
            .map_err(|e| NatsError::nats("subscribe", e))?;
        let (local_tx, local) =
            chan::Builder::<T>::new(chan::Kind::Rendezvous).name(format!("nats:rv:{name}")).build();
        let counters = Arc::new(Counters::default());
        let (c, client) = (Arc::clone(&counters), self.shared.client.clone());
        self.shared.exec.spawn(async move {
            let (requests, ends) = subs;
            // Both subscriptions in one stream: requests, and the end marker (tagged).
            let mut both =
                futures_util::stream::select(requests.map(|m| (false, m)), ends.map(|m| (true, m)));
            let mut open = true;
            while let Some((is_end_subject, msg)) = both.next().await {
                if is_end(msg.headers.as_ref(), &msg.payload) {
                    if open {
                        bump(&c.end_markers);
                        local_tx.close();
                        open = false;
                    }
                    continue;
                }
                if is_end_subject {
                    // Not a marker (a foreign publish on the end subject): ends nothing.
                    bump(&c.decode_errors);
                    continue;
                }
                let Some(reply) = msg.reply.clone() else { continue };
                bump(&c.delivered);
                let taken = match decode::<T>(&msg.payload) {
                    Ok(v) if open => local_tx.send_async(v).await.is_ok(),
                    Ok(_) => false,
                    Err(_) => {
                        bump(&c.decode_errors);
                        continue;
                    }
                };
                let answered = if taken {
                    client.publish(reply, Bytes::new()).await
                } else if open {
                    // Every receiver on this host was dropped: the sender tries another.
                    let _ = client.publish_with_headers(reply, retry_headers(), Bytes::new()).await;
                    break;
                } else {
                    client.publish_with_headers(reply, end_headers(), end_payload()).await
                };
                bump(if answered.is_ok() { &c.published } else { &c.errors });
            }
        })?;
        Ok(RendezvousReceiver { local, counters, _shared: Arc::clone(&self.shared) })
    }
}

/// The sending end of a rendezvous channel. Cloneable.
pub struct RendezvousSender<T> {
    shared: Arc<Shared>,
    name: String,
    counters: Arc<Counters>,
    closed: Arc<AtomicBool>,
    _values: PhantomData<fn(T)>,
}

impl<T> Clone for RendezvousSender<T> {
    fn clone(&self) -> Self {
        RendezvousSender {
            shared: Arc::clone(&self.shared),
            name: self.name.clone(),
            counters: Arc::clone(&self.counters),
            closed: Arc::clone(&self.closed),
            _values: PhantomData,
        }
    }
}

impl<T: Serialize + 'static> RendezvousSender<T> {
    fn send_inner(&self, value: T, once: bool, wait: Wait<'_>) -> Result<(), SendError<T>> {
        if self.closed.load(Relaxed) {
            return Err(SendError::new(NatsError::Chan(ChanError::Closed), value));
        }
        let payload = match encode(&value).and_then(|p| self.shared.check_payload(p.len()).map(|()| p)) {
            Ok(p) => p,
            Err(e) => return Err(SendError::new(e, value)),
        };
        let (client, subj, c) = (&self.shared.client, subject(&self.name), &self.counters);
        let reply_timeout = wait
            .deadline
            .map_or(DEFAULT_REPLY_TIMEOUT, |d| d.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        // Polled on the caller, so the retries live exactly as long as its wait: once it
        // timed out or was cancelled, no request goes out on its behalf. (A retry loop left
        // running could hand the value to a receiver that came later, after the caller was
        // told `Timeout`.)
        let requests = async {
            let mut backoff = Duration::from_millis(1);
            loop {
                let req = Request::new().payload(payload.clone()).timeout(Some(reply_timeout));
                return match client.send_request(subj.clone(), req).await {
                    Ok(msg) if is_end(msg.headers.as_ref(), &msg.payload) => {
                        Err(NatsError::Chan(ChanError::Closed))
                    }
                    Ok(msg) if msg.headers.as_ref().is_some_and(|h| h.get(RETRY_HEADER).is_some()) => {
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                    Ok(_) => Ok(()),
                    Err(e) => match e.kind() {
                        RequestErrorKind::NoResponders if once => Err(NatsError::Chan(ChanError::WouldBlock)),
                        RequestErrorKind::NoResponders => {
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                        RequestErrorKind::TimedOut => Err(NatsError::Chan(ChanError::Timeout)),
                        RequestErrorKind::Other => Err(NatsError::nats("request", e)),
                    },
                };
            }
        };
        let outcome = self.shared.exec.here(wait, requests).and_then(|r| r);
        bump(if outcome.is_ok() { &c.published } else { &c.errors });
        outcome.map_err(|e| SendError::new(e, value))
    }

    /// Sends and waits until a receiver took the value; while no receiver is subscribed
    /// anywhere, waits for one. Gives up with `Timeout` after [`DEFAULT_REPLY_TIMEOUT`]
    /// without a reply (see the module docs for what a timeout can tell).
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, false, Wait::FOREVER)
    }

    /// Sends only if a receiver is subscribed (no responders: `WouldBlock`); then waits
    /// for it to take the value as [`send`](Self::send) does.
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, true, Wait::FOREVER)
    }

    /// Sends, waiting at most `timeout` in all.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_inner(value, false, Wait::timeout(timeout))
    }

    /// Sends with a deadline and a token (cancellation wins).
    pub fn send_with(
        &self,
        value: T,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<(), SendError<T>> {
        self.send_inner(value, false, Wait::new(deadline, token))
    }
}

impl<T> RendezvousSender<T> {
    /// Closes the channel: every receiver closes (a value it holds is still taken), later
    /// sends from anywhere get `Closed`. Returns `false` if this end already closed it.
    pub fn close(&self) -> Result<bool, NatsError> {
        if self.closed.swap(true, Relaxed) {
            return Ok(false);
        }
        let (client, end) = (self.shared.client.clone(), end_subject(&self.name));
        self.shared
            .exec
            .call(Wait::FOREVER, async move {
                client.publish_with_headers(end, end_headers(), end_payload()).await?;
                client.flush().await?;
                Ok::<_, async_nats::Error>(())
            })?
            .map_err(|e| NatsError::nats("close", e))?;
        bump(&self.counters.end_markers);
        Ok(true)
    }

    /// The bridge's counters: hand-offs done, errors.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }
}

/// A receiving end of a rendezvous channel on this host. Cloneable.
pub struct RendezvousReceiver<T> {
    local: chan::Receiver<T>,
    counters: Arc<Counters>,
    _shared: Arc<Shared>,
}

impl<T> Clone for RendezvousReceiver<T> {
    fn clone(&self) -> Self {
        RendezvousReceiver {
            local: self.local.clone(),
            counters: Arc::clone(&self.counters),
            _shared: Arc::clone(&self._shared),
        }
    }
}

recv_family!(RendezvousReceiver<T> => T);

impl<T> RendezvousReceiver<T> {
    /// True after the end marker.
    pub fn is_closed(&self) -> bool {
        self.local.is_closed()
    }

    /// The local channel's counters, as kcoro's registry lists them under
    /// `nats:rv:<name>`.
    pub fn snapshot(&self) -> Snapshot {
        self.local.snapshot()
    }

    /// The bridge's counters: requests delivered, replies sent, end markers.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }
}

//! Conflated across hosts: the last value only, in a stream that keeps one message per
//! subject.
//!
//! The stream `name` (subject `kcoro.last.<name>`, `max_msgs_per_subject` = 1, file
//! storage) holds the latest value; a send is a JetStream publish (the server keeps the
//! last one; nothing waits for a reader). Each [`Latest`] end reads the subject from its
//! last message on with an ordered consumer and feeds a named local conflated kcoro
//! channel, so `recv` gets the newest value not yet taken on this host and waits when
//! there is none, as a local conflated channel does. [`Latest::get`] asks the server for
//! the value now. (A key-value bucket is the same shape; the async-nats 0.46 bucket
//! creation does not parse a 2.9 server's answer, the plain stream works on both.)
//!
//! # Protocol
//! 1. *Open*: declare the stream (idempotent), start the ordered consumer at the last
//!    message of the subject.
//! 2. *Send*: publish and wait for the server's ack.
//! 3. *Close*: publish the end marker: it replaces the value, every reader closes its
//!    local channel (its users drain the value it holds, then get `Closed`), and `get`
//!    answers `None`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use futures_util::StreamExt;
use kcoro::chan::{self, ChanError, Snapshot};
use kcoro::sync::CancelToken;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{check_name, decode, encode, end_headers, end_payload, is_end};
use crate::exec::Wait;
use crate::recv::{forward, recv_family};
use crate::stats::{BridgeStats, Counters, bump};
use crate::{Nats, NatsError, SendError, Shared};

fn last_subject(name: &str) -> String {
    format!("kcoro.last.{name}")
}

impl Nats {
    /// The conflated channel `name`: the last value sent by any host.
    pub fn conflated<T>(&self, name: &str) -> Result<Latest<T>, NatsError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        check_name("stream name", name)?;
        let js = self.shared.js.clone();
        let subject = last_subject(name);
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![subject.clone()],
            max_messages_per_subject: 1,
            storage: StorageType::File,
            ..Default::default()
        };
        let filter = subject.clone();
        let (stream, mut messages) = self
            .shared
            .exec
            .call(Wait::FOREVER, async move {
                let stream = crate::setup::stream(&js, config).await.map_err(|e| e.to_string())?;
                let ordered = pull::OrderedConfig {
                    filter_subject: filter,
                    deliver_policy: DeliverPolicy::LastPerSubject,
                    ..Default::default()
                };
                let consumer = stream.create_consumer(ordered).await.map_err(|e| e.to_string())?;
                let messages = consumer.messages().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((stream, messages))
            })?
            .map_err(|e| NatsError::nats("open conflated stream", e))?;
        let (local_tx, local) =
            chan::Builder::<T>::new(chan::Kind::Conflated).name(format!("nats:last:{name}")).build();
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        self.shared.exec.spawn(async move {
            // Conflated: a send never waits, it replaces what this host has not taken.
            while let Some(msg) = messages.next().await {
                let Ok(msg) = msg else { continue };
                if !forward(&msg, &local_tx, &c).await {
                    break;
                }
            }
            local_tx.close();
        })?;
        Ok(Latest {
            stream,
            subject,
            local,
            counters,
            closed: Arc::new(AtomicBool::new(false)),
            shared: Arc::clone(&self.shared),
        })
    }
}

/// One host's end of a conflated channel: send, get the value now, or receive the newest
/// value not yet taken here. Cloneable; clones share the local slot.
pub struct Latest<T> {
    stream: stream::Stream,
    subject: String,
    local: chan::Receiver<T>,
    counters: Arc<Counters>,
    closed: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl<T> Clone for Latest<T> {
    fn clone(&self) -> Self {
        Latest {
            stream: self.stream.clone(),
            subject: self.subject.clone(),
            local: self.local.clone(),
            counters: Arc::clone(&self.counters),
            closed: Arc::clone(&self.closed),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Latest<T> {
    fn send_inner(&self, value: T, wait: Wait<'_>) -> Result<(), SendError<T>> {
        if self.closed.load(Relaxed) {
            return Err(SendError::new(NatsError::Chan(ChanError::Closed), value));
        }
        let payload = match encode(&value).and_then(|p| self.shared.check_payload(p.len()).map(|()| p)) {
            Ok(p) => p,
            Err(e) => return Err(SendError::new(e, value)),
        };
        let publish = self.publish(PublishMessage::build().payload(payload), wait);
        match publish {
            Ok(Ok(())) => {
                bump(&self.counters.published);
                Ok(())
            }
            Ok(Err(e)) => {
                bump(&self.counters.errors);
                Err(SendError::new(e, value))
            }
            Err(e) => Err(SendError::new(e, value)),
        }
    }

    /// Replaces the value (on every host); waits for the server's ack only.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::FOREVER)
    }

    /// As [`send`](Self::send): a conflated send never waits for room.
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::FOREVER)
    }

    /// Sends, waiting at most `timeout` for the server's answer (a `Timeout` cannot tell
    /// whether the put was stored).
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::timeout(timeout))
    }

    /// Sends with a deadline and a token (cancellation wins).
    pub fn send_with(
        &self,
        value: T,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::new(deadline, token))
    }

    /// The value now, from the server (`None` if none was ever sent, or after close).
    pub fn get(&self) -> Result<Option<T>, NatsError> {
        let (stream, subject) = (self.stream.clone(), self.subject.clone());
        let got = self.shared.exec.call(Wait::FOREVER, async move {
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(NatsError::nats("get", e)),
            }
        })??;
        match got {
            Some(m) if !is_end(Some(&m.headers), &m.payload) => decode(&m.payload).map(Some),
            _ => Ok(None),
        }
    }
}

impl<T> Latest<T> {
    /// Publishes to the subject and waits (as `wait` allows) for the server's ack.
    fn publish(&self, msg: PublishMessage, wait: Wait<'_>) -> Result<Result<(), NatsError>, NatsError> {
        let (js, subject) = (self.shared.js.clone(), self.subject.clone());
        self.shared.exec.call(wait, async move {
            let ack = js.send_publish(subject, msg).await.map_err(|e| NatsError::nats("publish", e))?;
            ack.await.map(|_| ()).map_err(|e| NatsError::nats("publish", e))
        })
    }
}

// The receive family: the newest value not yet taken on this host.
recv_family!(Latest<T> => T);

impl<T> Latest<T> {
    /// Closes the channel on every host: the end marker replaces the value. Returns
    /// `false` if this end already closed it.
    pub fn close(&self) -> Result<bool, NatsError> {
        if self.closed.swap(true, Relaxed) {
            return Ok(false);
        }
        self.publish(PublishMessage::build().payload(end_payload()).headers(end_headers()), Wait::FOREVER)??;
        bump(&self.counters.end_markers);
        Ok(true)
    }

    /// True once the end marker was seen here (or this end closed it).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed) || self.local.is_closed()
    }

    /// The local slot's counters, as kcoro's registry lists them under `nats:last:<name>`.
    pub fn snapshot(&self) -> Snapshot {
        self.local.snapshot()
    }

    /// The bridge's counters: published, delivered, end markers.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }
}

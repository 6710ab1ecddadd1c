//! A work queue's state beside its messages: which senders are open, and its close.
//!
//! The records live in one stream shared by every queue, [`STATE_STREAM`], one message
//! per subject (a newer record replaces the older), file storage:
//! - `kcoro.wqstate.<queue>.open.<sender>`: a sending end that is open. Made when the end
//!   is made; removed when it closes or its last handle drops.
//! - `kcoro.wqstate.<queue>.close`: `closed` (a sender closed; the queue ends once no
//!   sender is open and every message is acked) or `drained` (it ended). The record's
//!   stream sequence tells one close from the next, so a queue can be reopened: an end
//!   marks the close it has seen and only a later one concerns it.
//!
//! The queue's own subject carries values only: a message there can never close the
//! queue, and NATS permissions can give the state subjects to the queue's own producers.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use futures_util::TryStreamExt;

/// The stream holding every work queue's state records.
pub const STATE_STREAM: &str = "KCORO_WQ_STATE";

const OPEN: &[u8] = b"open";
const CLOSED: &[u8] = b"closed";
const DRAINED: &[u8] = b"drained";

/// The latest close record of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// No close was ever recorded.
    Never,
    /// A sender closed at this sequence; the queue drains.
    Closed(u64),
    /// The queue ended (drained) at this sequence.
    Drained(u64),
}

impl Close {
    /// The sequence below which closes are history to an end opened now: a drained
    /// close is, a close still draining is not (the new end helps drain it).
    pub(crate) fn baseline(self) -> u64 {
        match self {
            Close::Never => 0,
            Close::Closed(s) => s - 1,
            Close::Drained(s) => s,
        }
    }
}

/// One queue's records.
#[derive(Clone)]
pub(crate) struct QueueState {
    js: jetstream::Context,
    stream: stream::Stream,
    queue: String,
}

/// How long a state record is retried while its stream, just made, does not answer yet.
const STATE_SETTLE: Duration = Duration::from_secs(5);

impl QueueState {
    /// The state of `queue`, declaring the shared state stream if it does not exist.
    pub(crate) async fn open(
        js: &jetstream::Context,
        queue: &str,
        replicas: usize,
    ) -> Result<QueueState, async_nats::Error> {
        let config = stream::Config {
            name: STATE_STREAM.to_string(),
            subjects: vec!["kcoro.wqstate.>".to_string()],
            max_messages_per_subject: 1,
            storage: StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        let stream = crate::setup::stream(js, config).await?;
        Ok(QueueState { js: js.clone(), stream, queue: queue.to_string() })
    }

    fn open_subject(&self, sender: &str) -> String {
        format!("kcoro.wqstate.{}.open.{sender}", self.queue)
    }

    fn close_subject(&self) -> String {
        format!("kcoro.wqstate.{}.close", self.queue)
    }

    /// Publishes `record` on `subject`; its sequence. A state stream another host has just
    /// made may answer "no stream found" for a moment (seen with several hosts opening a
    /// queue at once on a loaded machine): that is retried for up to [`STATE_SETTLE`].
    async fn put(&self, subject: String, record: &'static [u8]) -> Result<u64, async_nats::Error> {
        let give_up = tokio::time::Instant::now() + STATE_SETTLE;
        let mut pause = Duration::from_millis(5);
        loop {
            let attempt = async { self.js.publish(subject.clone(), Bytes::from_static(record)).await?.await };
            match attempt.await {
                Ok(ack) => return Ok(ack.sequence),
                Err(e)
                    if e.kind() == PublishErrorKind::StreamNotFound
                        && tokio::time::Instant::now() < give_up =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Records a sending end as open.
    pub(crate) async fn register(&self, sender: &str) -> Result<(), async_nats::Error> {
        self.put(self.open_subject(sender), OPEN).await.map(drop)
    }

    /// Removes a sending end's record.
    pub(crate) async fn unregister(&self, sender: &str) -> Result<(), async_nats::Error> {
        self.stream.purge().filter(self.open_subject(sender)).await?;
        Ok(())
    }

    /// Closes on behalf of `sender`: its record goes first, so whoever reads the close
    /// no longer counts it open.
    pub(crate) async fn close(&self, sender: &str) -> Result<(), async_nats::Error> {
        self.unregister(sender).await?;
        self.put(self.close_subject(), CLOSED).await.map(drop)
    }

    /// Closes for every sender: their records go (a sender that died never removes its
    /// own), then the close.
    pub(crate) async fn close_all(&self) -> Result<(), async_nats::Error> {
        self.stream.purge().filter(format!("kcoro.wqstate.{}.open.>", self.queue)).await?;
        self.put(self.close_subject(), CLOSED).await.map(drop)
    }

    /// The latest close record.
    pub(crate) async fn last_close(&self) -> Result<Close, async_nats::Error> {
        match self.stream.get_last_raw_message_by_subject(&self.close_subject()).await {
            Ok(m) if m.payload.as_ref() == DRAINED => Ok(Close::Drained(m.sequence)),
            Ok(m) if m.payload.as_ref() == CLOSED => Ok(Close::Closed(m.sequence)),
            // Written by someone else: not a close this bridge made.
            Ok(_) => Ok(Close::Never),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Close::Never),
            Err(e) => Err(e.into()),
        }
    }

    /// How many sending ends are open.
    pub(crate) async fn open_senders(&self) -> Result<usize, async_nats::Error> {
        let filter = format!("kcoro.wqstate.{}.open.>", self.queue);
        let mut info = self.stream.clone().info_with_subjects(filter).await?;
        let mut n = 0;
        while info.try_next().await?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// Records that the close at `closed` drained. `false` if the record is no longer
    /// that close (another end recorded the drain, or a sender closed again since).
    pub(crate) async fn mark_drained(&self, closed: u64) -> Result<bool, async_nats::Error> {
        let msg = PublishMessage::build()
            .payload(Bytes::from_static(DRAINED))
            .expected_last_subject_sequence(closed);
        let attempt = async { self.js.send_publish(self.close_subject(), msg).await?.await };
        match attempt.await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
            Err(e) => {
                let server = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<jetstream::Error>());
                if server.is_some_and(|s| s.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE) {
                    Ok(false)
                } else {
                    Err(e.into())
                }
            }
        }
    }
}

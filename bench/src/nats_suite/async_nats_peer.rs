//! The `async-nats` rows: the client used directly from tokio tasks.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{LAST_MESSAGE_TIMEOUT, SENDERS, Shape};

/// `ids`: each work-queue publish carries a `Nats-Msg-Id` (unique per run).
pub fn run(url: &str, shape: Shape, size: usize, n: u64, ids: bool) -> Result<Duration, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let payload = Bytes::from(vec![0xa5u8; size]);
    rt.block_on(async move {
        let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        match shape {
            Shape::WorkQueue => work_queue(client, payload, n, ids).await,
            Shape::Core => core(client, payload, n).await,
        }
    })
}

async fn work_queue(
    client: async_nats::Client,
    payload: Bytes,
    n: u64,
    ids: bool,
) -> Result<Duration, String> {
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "bench".to_string(),
            subjects: vec!["bench.wq".to_string()],
            retention: RetentionPolicy::WorkQueue,
            discard: DiscardPolicy::New,
            max_messages: 10_000,
            storage: StorageType::Memory,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .get_or_create_consumer(
            "workers",
            pull::Config {
                durable_name: Some("workers".to_string()),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let senders: Vec<_> = (0..SENDERS as u64)
        .map(|s| {
            let (js, payload) = (js.clone(), payload.clone());
            tokio::spawn(async move {
                let mut i = s;
                while i < n {
                    // A full stream refuses: retry after a pause, as the bridge does (with
                    // the same id, so a retry of a stored message is a duplicate).
                    let publish = PublishMessage::build().payload(payload.clone());
                    let publish = if ids { publish.message_id(format!("bench.{i}")) } else { publish };
                    let stored = async { js.send_publish("bench.wq", publish).await?.await }.await;
                    match stored {
                        Ok(_) => i += SENDERS as u64,
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
            })
        })
        .collect();
    let mut messages =
        consumer.stream().max_messages_per_batch(256).messages().await.map_err(|e| e.to_string())?;
    let mut got = 0;
    while got < n {
        let next = tokio::time::timeout(LAST_MESSAGE_TIMEOUT, messages.next()).await;
        let msg = match next {
            Ok(Some(Ok(m))) => m,
            other => return Err(format!("consume: {other:?}")),
        };
        msg.ack().await.map_err(|e| e.to_string())?;
        got += 1;
    }
    let elapsed = start.elapsed();
    for s in senders {
        s.await.map_err(|e| e.to_string())?;
    }
    Ok(elapsed)
}

async fn core(client: async_nats::Client, payload: Bytes, n: u64) -> Result<Duration, String> {
    let mut sub = client.subscribe("bench.core").await.map_err(|e| e.to_string())?;
    client.flush().await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for _ in 0..n {
            client.publish("bench.core", payload.clone()).await.map_err(|e| e.to_string())?;
        }
        client.flush().await.map_err(|e| e.to_string())
    });
    for _ in 0..n {
        match tokio::time::timeout(LAST_MESSAGE_TIMEOUT, sub.next()).await {
            Ok(Some(_)) => {}
            other => return Err(format!("receive: {}", if other.is_err() { "timeout" } else { "ended" })),
        }
    }
    let elapsed = start.elapsed();
    publisher.await.map_err(|e| e.to_string())??;
    Ok(elapsed)
}

//! What an end sets up on the server before it is handed out: its stream, declared while
//! other hosts may be declaring it too, and its subscriptions, in place on the server.

use async_nats::jetstream::{self, stream};
use async_nats::{Client, RequestErrorKind};
use bytes::Bytes;

/// The stream named in `config`, created if it does not exist yet. Several hosts opening
/// the same end at once all find it missing and all create it; the server answers every
/// create but the first with an error ("subjects overlap with an existing stream"), so a
/// failed create looks again before it reports: a stream by that name made by the winner
/// is the one we wanted. Like `get_or_create_stream`, an existing stream is taken as it is.
pub(crate) async fn stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    let name = config.name.clone();
    match js.get_or_create_stream(config).await {
        Ok(s) => Ok(s),
        Err(lost) => js.get_stream(&name).await.map_err(|_| lost),
    }
}

/// Returns once the server has processed everything this client sent before the call (its
/// subscriptions above all). `Client::flush` only writes the client's buffer to the socket;
/// a message another connection publishes right after could still reach the server first
/// and miss the subscription. A request nobody answers comes back as "no responders" only
/// after the server has read what came before it on this connection.
pub(crate) async fn settled(client: &Client) -> Result<(), async_nats::Error> {
    match client.request(client.new_inbox(), Bytes::new()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Err(e) => Err(e.into()),
    }
}

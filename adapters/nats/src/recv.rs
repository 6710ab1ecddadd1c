//! Receiving ends: the receive family every bridged end offers, over the local kcoro
//! channel it reads from (its `local` field), the same shape as kcoro's own receivers with
//! channel reasons as [`NatsError::Chan`](crate::NatsError::Chan) (one macro, so the four
//! ends cannot drift apart); and the step that moves one message from NATS into that
//! channel, shared by the ends fed by a plain subscription.

use kcoro::chan;
use serde::de::DeserializeOwned;

use crate::codec::{decode, is_end};
use crate::stats::{Counters, bump};

/// Hands one NATS message to `local`: counts it, decodes it and sends it on (an
/// undecodable one is counted and skipped). Returns `false` when the feeding loop should
/// stop: the end marker came, or nobody receives any more.
pub(crate) async fn forward<T: DeserializeOwned + 'static>(
    msg: &async_nats::Message,
    local: &chan::Sender<T>,
    counters: &Counters,
) -> bool {
    bump(&counters.delivered);
    if is_end(msg.headers.as_ref(), &msg.payload) {
        bump(&counters.end_markers);
        return false;
    }
    match decode::<T>(&msg.payload) {
        Ok(v) => local.send_async(v).await.is_ok(),
        Err(_) => {
            bump(&counters.decode_errors);
            true
        }
    }
}

/// Implements `recv`, `try_recv`, `recv_timeout`, `recv_deadline`, `recv_cancellable`,
/// `recv_with` and `recv_async` for `$ty<$t>`, whose `local: chan::Receiver<$item>` holds
/// what the bridge delivered on this host.
macro_rules! recv_family {
    ($ty:ident<$t:ident> => $item:ty) => {
        impl<$t> $ty<$t> {
            /// Receives, waiting for one; `Closed` after the end marker, once drained.
            pub fn recv(&self) -> Result<$item, $crate::NatsError> {
                self.local.recv().map_err($crate::NatsError::Chan)
            }

            /// Receives one already delivered here; else `WouldBlock`.
            pub fn try_recv(&self) -> Result<$item, $crate::NatsError> {
                self.local.try_recv().map_err($crate::NatsError::Chan)
            }

            /// Receives, waiting at most `timeout`.
            pub fn recv_timeout(&self, timeout: std::time::Duration) -> Result<$item, $crate::NatsError> {
                self.local.recv_timeout(timeout).map_err($crate::NatsError::Chan)
            }

            /// Receives, waiting until `deadline` at most.
            pub fn recv_deadline(&self, deadline: std::time::Instant) -> Result<$item, $crate::NatsError> {
                self.local.recv_deadline(deadline).map_err($crate::NatsError::Chan)
            }

            /// Receives, giving up with `Canceled` when `token` fires.
            pub fn recv_cancellable(
                &self,
                token: &kcoro::sync::CancelToken,
            ) -> Result<$item, $crate::NatsError> {
                self.local.recv_cancellable(token).map_err($crate::NatsError::Chan)
            }

            /// Receives with a deadline and a token (cancellation wins).
            pub fn recv_with(
                &self,
                deadline: Option<std::time::Instant>,
                token: Option<&kcoro::sync::CancelToken>,
            ) -> Result<$item, $crate::NatsError> {
                self.local.recv_with(deadline, token).map_err($crate::NatsError::Chan)
            }

            /// A future receiving one, for async code on any executor.
            pub fn recv_async(&self) -> kcoro::chan::RecvFuture<'_, $item> {
                self.local.recv_async()
            }
        }
    };
}

pub(crate) use recv_family;

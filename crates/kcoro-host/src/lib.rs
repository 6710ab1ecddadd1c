//! Loads plugins that speak the kcoro / nylon-ring ABI (see `kcoro-abi`) and calls them.
//!
//! Every [`Layout`] the plugins of kcoro and nylon-ring use is loaded: kcoro's own
//! (`kcoro-v1`), nylon-ring 0.1 and 0.2 (ABI 2), and nylon-ring's two earlier layouts.
//! What the library declares is detected, and a plain version-1 plugin by the one layout
//! its vtable fits; one that fits several is loaded with [`LoadOptions::layout`]. No slot
//! is called before it is known to point into the plugin's own code, whatever layout was
//! named. `docs/PLUGINS.md` has the table.
//!
//! ```no_run
//! use kcoro_host::{Host, HighLevelRequest};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), kcoro_host::HostError> {
//! let host = Host::new();
//! let echo = host.load("target/plugins/libecho_c.so")?;
//!
//! // Blocking form: parks the calling coroutine (or thread).
//! let reply = echo.call_raw("echo", b"hi").wait()?;
//! assert_eq!(&*reply.data, b"hi");
//!
//! // Resolve an entry once; calls through it dispatch by id.
//! let entry = echo.entry("echo")?;
//! let req = HighLevelRequest::new("GET", "/hello").header("x-id", "7").body("payload");
//! let reply = echo.call(&entry, &req).timeout(Duration::from_secs(1)).wait()?;
//!
//! // Streams yield every frame, the terminal one last.
//! for frame in echo.call_stream_raw("stream", b"3")?.collect()? {
//!     println!("{:?} {:?}", frame.status, frame.data);
//! }
//! host.unload("echo-c", Duration::from_secs(5))?;
//! # Ok(()) }
//! ```
//!
//! Every call is also a future: `echo.call_raw("echo", b"hi").await` works on any
//! executor, tokio included.

mod call;
mod callbacks;
mod ctx;
mod detect;
mod error;
mod fence;
mod gate;
mod host;
mod image;
mod layout;
mod library;
mod load;
mod metrics;
mod payload;
mod plugin;
mod request;
mod stream;
mod table;
mod thread_slot;
mod timer;

pub use call::{Call, Reply};
pub use error::{BadSlot, HostError};
pub use gate::LateReplies;
pub use host::Host;
pub use kcoro_abi::NrStatus;
pub use layout::{Capabilities, Layout};
pub use metrics::Metrics;
pub use payload::{Frame, Payload};
pub use plugin::{Entry, EntryRef, LoadOptions, PLUGIN_STACK, Plugin};
pub use request::{Extensions, HighLevelRequest};
pub use stream::StreamCall;

/// `docs/PLUGINS.md` compiles as a doctest.
#[doc = include_str!("../../../docs/PLUGINS.md")]
#[cfg(doctest)]
pub struct PluginsGuide;

//! Coroutine-aware sockets over the runtime's single reactor.

mod registration;

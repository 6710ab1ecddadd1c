//! The caller's view of a request, and its conversion to the ABI's borrowed `NrRequest`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;

use kcoro_abi::{NrHeader, NrRequest, NrStr};

use crate::HostError;

/// A request as callers build it. Only method, path, query, headers and body cross the
/// ABI; [`Extensions`] stay on the host side.
#[derive(Debug, Default)]
pub struct HighLevelRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub extensions: Extensions,
}

impl HighLevelRequest {
    /// A request with this method and path and nothing else.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        HighLevelRequest { method: method.into(), path: path.into(), ..Default::default() }
    }

    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// Typed values attached to a request that never cross the ABI: one value per type.
#[derive(Default)]
pub struct Extensions {
    map: Option<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Extensions {
    /// Stores `value`, returning the previous value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) -> Option<T> {
        let old = self.map.get_or_insert_with(Default::default).insert(TypeId::of::<T>(), Box::new(value))?;
        old.downcast().ok().map(|b| *b)
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.map.as_ref()?.get(&TypeId::of::<T>())?.downcast_ref()
    }

    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.map.as_mut()?.get_mut(&TypeId::of::<T>())?.downcast_mut()
    }

    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        let old = self.map.as_mut()?.remove(&TypeId::of::<T>())?;
        old.downcast().ok().map(|b| *b)
    }

    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Extensions({} values)", self.len())
    }
}

pub(crate) fn nr_str(s: &str, what: &'static str) -> Result<NrStr, HostError> {
    NrStr::try_new(s).ok_or(HostError::TooLarge { what, len: s.len(), max: u32::MAX.into() })
}

/// Headers up to this many are laid out on the stack; more take one allocation.
const INLINE_HEADERS: usize = 8;

/// The borrowed ABI form of a [`HighLevelRequest`], built on the caller's stack for the
/// length of the plugin call.
pub(crate) struct RawRequest {
    req: NrRequest,
    inline: [NrHeader; INLINE_HEADERS],
    heap: Vec<NrHeader>,
}

const EMPTY_HEADER: NrHeader = NrHeader { key: NrStr::EMPTY, value: NrStr::EMPTY };

impl RawRequest {
    pub(crate) fn new(r: &HighLevelRequest) -> Result<RawRequest, HostError> {
        let mut raw = RawRequest {
            req: NrRequest {
                path: nr_str(&r.path, "the path")?,
                method: nr_str(&r.method, "the method")?,
                query: nr_str(&r.query, "the query")?,
                ..NrRequest::EMPTY
            },
            inline: [EMPTY_HEADER; INLINE_HEADERS],
            heap: Vec::new(),
        };
        raw.req.headers_len = u32::try_from(r.headers.len()).map_err(|_| HostError::TooLarge {
            what: "the header list",
            len: r.headers.len(),
            max: u32::MAX.into(),
        })?;
        let headers: &mut [NrHeader] = if r.headers.len() <= INLINE_HEADERS {
            &mut raw.inline[..r.headers.len()]
        } else {
            raw.heap = vec![EMPTY_HEADER; r.headers.len()];
            &mut raw.heap
        };
        for (slot, (k, v)) in headers.iter_mut().zip(&r.headers) {
            *slot = NrHeader { key: nr_str(k, "a header name")?, value: nr_str(v, "a header value")? };
        }
        Ok(raw)
    }

    /// The request to pass to `handle`; valid while `self` is neither moved nor dropped.
    pub(crate) fn as_ptr(&mut self) -> *const NrRequest {
        let n = self.req.headers_len as usize;
        self.req.headers = match n {
            0 => std::ptr::null(),
            n if n <= INLINE_HEADERS => self.inline.as_ptr(),
            _ => self.heap.as_ptr(),
        };
        &self.req
    }
}

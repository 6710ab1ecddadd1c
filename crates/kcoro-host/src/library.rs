//! `dlopen` / `dlsym` / `dlclose`: the host's handle on a library. What the loader says
//! about the library's mapped segments is [`crate::image`].

use std::ffi::{CStr, CString, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::image::Image;

/// An open shared library; closed on drop unless [`Library::keep_mapped`] was called.
pub(crate) struct Library {
    handle: *mut c_void,
    close_on_drop: bool,
}

// SAFETY: a `dlopen` handle may be used and closed from any thread.
unsafe impl Send for Library {}
// SAFETY: `dlsym` on a shared handle is thread-safe.
unsafe impl Sync for Library {}

fn last_error() -> String {
    // SAFETY: `dlerror` returns null or a NUL-terminated string owned by libc, read at once.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        return "unknown dynamic loader error".into();
    }
    // SAFETY: non-null `dlerror` results are NUL-terminated.
    unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
}

impl Library {
    pub(crate) fn open(path: &Path) -> Result<Library, String> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| "path contains a NUL byte")?;
        // SAFETY: `c_path` is NUL-terminated; RTLD_LOCAL keeps the plugin's symbols private.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(last_error());
        }
        Ok(Library { handle, close_on_drop: true })
    }

    /// The address of `symbol`, or null.
    pub(crate) fn symbol(&self, symbol: &CStr) -> *mut c_void {
        // SAFETY: `handle` is open; `symbol` is NUL-terminated.
        unsafe { libc::dlsym(self.handle, symbol.as_ptr()) }
    }

    /// Identifies the library: `dlopen` returns the same handle for every open of it.
    pub(crate) fn handle_key(&self) -> usize {
        self.handle as usize
    }

    /// The library's mapped image, to check the pointers it hands out against; it
    /// borrows the library, which stays open while it is used.
    pub(crate) fn image(&self) -> Result<Image<'_>, String> {
        // SAFETY: `handle` is open, and stays so while `self` is borrowed.
        unsafe { Image::of_handle(self.handle) }
    }

    /// Never `dlclose`: for runtimes that cannot be unloaded (Go's).
    pub(crate) fn keep_mapped(&mut self) {
        self.close_on_drop = false;
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        if self.close_on_drop {
            // SAFETY: `handle` came from `dlopen` and is closed once.
            unsafe { libc::dlclose(self.handle) };
        }
    }
}

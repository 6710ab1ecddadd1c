//! Where a plugin's pointers lead: the mapped segments of the library's own image, taken
//! once from the dynamic loader, so that the host calls no function pointer and reads no
//! table of a plugin before it knows the pointer lies inside that plugin.
//!
//! A vtable read with the wrong layout hands the host words that are not functions: a
//! length (`0x911`), a string, the next table. Calling one jumps into nowhere, and the
//! process dies of it. The loader knows exactly which address ranges a library maps and
//! which of them hold code (its `PT_LOAD` program headers), so a slot is checked against
//! those before anything calls it.
//!
//! # Protocol
//! 1. `dlinfo(handle, RTLD_DI_LINKMAP)` gives the library's `link_map`: its load bias
//!    `l_addr` and its name `l_name`.
//! 2. `dl_iterate_phdr` finds the object with that bias and that name and copies its
//!    `PT_LOAD` segments (start, end, flags). They do not move while the library is
//!    mapped, and an [`Image`] borrows the open [`crate::library::Library`] it describes.
//! 3. The checks are arithmetic on that copy: [`Image::is_code`] (inside a segment with
//!    `PF_X`), [`Image::read_words`] (a table read only as far as one `PF_R` segment goes).
//!
//! On every target kcoro builds for, a function pointer is the address of its code (no
//! function descriptors), so "inside an executable segment of the image" is the test. A
//! pointer into another library's code is refused too: a slot is the plugin's own function.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::path::Path;

#[cfg(target_pointer_width = "64")]
type Phdr = libc::Elf64_Phdr;
#[cfg(target_pointer_width = "32")]
type Phdr = libc::Elf32_Phdr;

/// The bytes of one machine word: a vtable slot.
const WORD: usize = std::mem::size_of::<usize>();

/// One `PT_LOAD` segment, relocated: `[start, end)` in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    start: usize,
    end: usize,
    /// `PF_X`: code.
    exec: bool,
    /// `PF_R`: tables may be read here.
    read: bool,
}

impl Segment {
    fn contains(&self, addr: usize) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

/// A loaded object's mapped segments, valid while the object that `'lib` borrows stays
/// open.
#[derive(Debug)]
pub(crate) struct Image<'lib> {
    /// The file name, for messages ("libfoo.so"; "the main program" for it).
    name: String,
    segments: Vec<Segment>,
    _open: PhantomData<&'lib ()>,
}

/// The public head of `struct link_map` (`<link.h>`): the two fields read here.
#[repr(C)]
struct LinkMapHead {
    l_addr: usize,
    l_name: *const c_char,
}

/// What `dl_iterate_phdr`'s callback looks for and what it found.
struct Search {
    bias: usize,
    name: *const c_char,
    found: Option<Vec<Segment>>,
}

/// `dl_iterate_phdr`'s callback: copies the segments of the object `data` describes and
/// stops, or goes on to the next object.
///
/// # Safety
/// `data` must be the `Search` that [`Image::of_handle`] passes; `info` is the loader's.
unsafe extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut c_void) -> c_int {
    // SAFETY: `of_handle` passes its own `Search`, alive and unaliased for the whole walk.
    let search = unsafe { &mut *data.cast::<Search>() };
    // SAFETY: the loader's record of one object, valid during this callback.
    let info = unsafe { &*info };
    if info.dlpi_addr as usize != search.bias || !same_name(info.dlpi_name, search.name) {
        return 0;
    }
    let phdrs = if info.dlpi_phdr.is_null() {
        &[][..]
    } else {
        // SAFETY: the loader's program headers of this object, `dlpi_phnum` of them.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr.cast::<Phdr>(), usize::from(info.dlpi_phnum)) }
    };
    let segments = phdrs
        .iter()
        .filter(|ph| ph.p_type == libc::PT_LOAD && ph.p_memsz > 0)
        .map(|ph| {
            let start = search.bias.wrapping_add(ph.p_vaddr as usize);
            Segment {
                start,
                end: start.saturating_add(ph.p_memsz as usize),
                exec: ph.p_flags & libc::PF_X != 0,
                read: ph.p_flags & libc::PF_R != 0,
            }
        })
        .collect();
    search.found = Some(segments);
    1
}

/// Whether two loader names are the same (the loader passes `l_name` itself as
/// `dlpi_name`; an equal string is the same object too).
fn same_name(a: *const c_char, b: *const c_char) -> bool {
    if a == b {
        return true;
    }
    if a.is_null() || b.is_null() {
        return false;
    }
    // SAFETY: both are the loader's NUL-terminated names of loaded objects.
    unsafe { CStr::from_ptr(a) == CStr::from_ptr(b) }
}

impl Image<'_> {
    /// The image of the object `handle` opened.
    ///
    /// # Safety
    /// `handle` must be a `dlopen` handle that stays open while the returned `Image` (of
    /// any lifetime the caller picks) is used.
    pub(crate) unsafe fn of_handle<'lib>(handle: *mut c_void) -> Result<Image<'lib>, String> {
        let mut lm: *const LinkMapHead = std::ptr::null();
        // SAFETY: `handle` is open (the caller's contract); RTLD_DI_LINKMAP writes one
        // `struct link_map *` into `lm`.
        let rc = unsafe {
            libc::dlinfo(handle, libc::RTLD_DI_LINKMAP, (&mut lm as *mut *const LinkMapHead).cast())
        };
        if rc != 0 || lm.is_null() {
            return Err("the dynamic loader has no link map for it".into());
        }
        // SAFETY: a loaded object's `link_map` lives while it is loaded; its head is the
        // public part of `<link.h>`.
        let (bias, name) = unsafe { ((*lm).l_addr, (*lm).l_name) };
        let mut search = Search { bias, name, found: None };
        // SAFETY: `collect` has the callback's signature and reaches `search` only through
        // `data`, which outlives the walk.
        unsafe { libc::dl_iterate_phdr(Some(collect), (&mut search as *mut Search).cast()) };
        let segments = search.found.ok_or("the dynamic loader does not list its segments")?;
        Ok(Image { name: display_name(name), segments, _open: PhantomData })
    }

    /// The object's file name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether `addr` lies in the object's code: what a function slot must point to.
    pub(crate) fn is_code(&self, addr: usize) -> bool {
        self.segments.iter().any(|s| s.exec && s.contains(addr))
    }

    /// Up to `max` words from `addr`, as far as one readable segment of the object goes;
    /// empty when `addr` is not in one (a table on the heap: its end cannot be known).
    pub(crate) fn read_words(&self, addr: usize, max: usize) -> Vec<usize> {
        let Some(seg) = self.segments.iter().find(|s| s.read && s.contains(addr)) else {
            return Vec::new();
        };
        let n = max.min((seg.end - addr) / WORD);
        (0..n)
            .map(|i| {
                // SAFETY: `addr + i * WORD .. + WORD` lies inside `seg`, a readable
                // segment of the object, mapped while the `Image` lives (its borrow of
                // the open library); unaligned, as a broken plugin's table may be.
                unsafe { (addr as *const usize).add(i).read_unaligned() }
            })
            .collect()
    }

    /// Where `addr` lies, for an error message: in the object's data, in another object,
    /// or nowhere mapped by the loader.
    pub(crate) fn whereabouts(&self, addr: usize) -> String {
        if self.segments.iter().any(|s| s.contains(addr)) {
            return format!("it lies in {}'s data", self.name);
        }
        match owner(addr) {
            Some(other) => format!("it lies in {other}"),
            None => "no loaded object holds it".into(),
        }
    }
}

/// The file name of a loader name; the main program's is empty.
fn display_name(name: *const c_char) -> String {
    if name.is_null() {
        return "the main program".into();
    }
    // SAFETY: the loader's NUL-terminated name of a loaded object.
    let full = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    match Path::new(&full).file_name() {
        Some(f) => f.to_string_lossy().into_owned(),
        None if full.is_empty() => "the main program".into(),
        None => full,
    }
}

/// The file name of the loaded object holding `addr`, if any.
fn owner(addr: usize) -> Option<String> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: `dladdr` only looks `addr` up in the loader's tables, never reads it, and
    // fills `info` (its names are the loader's, valid while the object is loaded).
    let found = unsafe { libc::dladdr(addr as *const c_void, &mut info) };
    (found != 0 && !info.dli_fname.is_null()).then(|| display_name(info.dli_fname))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function of the test binary itself.
    #[inline(never)]
    extern "C" fn own_function() -> u32 {
        7
    }

    static OWN_TABLE: [usize; 3] = [1, 2, 3];

    fn open(name: Option<&CStr>) -> *mut c_void {
        let name = name.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: the main program (null) or a library already loaded (RTLD_NOLOAD): the
        // handle keeps it loaded for the rest of the test process.
        let h = unsafe {
            libc::dlopen(name, libc::RTLD_NOW | if name.is_null() { 0 } else { libc::RTLD_NOLOAD })
        };
        assert!(!h.is_null(), "dlopen");
        h
    }

    #[test]
    fn a_function_is_code_only_of_its_own_image() {
        let main_h = open(None);
        let libc_h = open(Some(c"libc.so.6"));
        // SAFETY: both handles stay open for the process.
        let (main, libc_image) = unsafe { (Image::of_handle(main_h), Image::of_handle(libc_h)) };
        let (main, libc_image) = (main.expect("main image"), libc_image.expect("libc image"));
        assert_eq!(libc_image.name(), "libc.so.6");

        let ours = own_function as extern "C" fn() -> u32 as usize;
        // SAFETY: `libc_h` is open; the name is NUL-terminated.
        let theirs = unsafe { libc::dlsym(libc_h, c"getpid".as_ptr()) } as usize;
        assert_ne!(theirs, 0);
        assert!(main.is_code(ours) && !libc_image.is_code(ours));
        assert!(libc_image.is_code(theirs) && !main.is_code(theirs));
        assert_eq!(main.whereabouts(theirs), "it lies in libc.so.6");
    }

    #[test]
    fn data_heap_and_small_numbers_are_not_code() {
        // SAFETY: the main program's handle stays open for the process.
        let main = unsafe { Image::of_handle(open(None)) }.expect("main image");
        let heap = Box::new(own_function as extern "C" fn() -> u32);
        let data = OWN_TABLE.as_ptr() as usize;
        for (addr, what) in
            [(0x911, "0x911"), (0, "null"), (&*heap as *const _ as usize, "heap"), (data, "data")]
        {
            assert!(!main.is_code(addr), "{what} taken for code");
        }
        assert_eq!(main.whereabouts(0x911), "no loaded object holds it");
        assert!(main.whereabouts(data).ends_with("'s data"), "{}", main.whereabouts(data));
    }

    #[test]
    fn tables_are_read_only_inside_the_image() {
        // SAFETY: the main program's handle stays open for the process.
        let main = unsafe { Image::of_handle(open(None)) }.expect("main image");
        assert_eq!(main.read_words(OWN_TABLE.as_ptr() as usize, 3), [1, 2, 3]);
        assert_eq!(main.read_words(OWN_TABLE.as_ptr() as usize, 2), [1, 2]);
        let heap = Box::new([9usize; 4]);
        assert!(main.read_words(heap.as_ptr() as usize, 4).is_empty());
        assert!(main.read_words(0x911, 1).is_empty());
        // The last word of a segment is read; the one after it is not.
        let seg = *main.segments.iter().find(|s| s.read && !s.exec).expect("a data segment");
        let last = (seg.end - WORD) & !(WORD - 1);
        assert_eq!(main.read_words(last, 5).len(), (seg.end - last) / WORD);
    }
}

//! Which version-1 layout a plain plugin's vtable fits: the plugin says `abi_version = 1`
//! with a 56-byte info, which four layouts share ([`Layout::PLAIN_V1`]), and declares no
//! vtable size. What it does show is its vtable's words, and where they point.
//!
//! # A layout fits when
//! 1. *Its table is there*: each of its slots lies inside the library's mapped data (a
//!    6-slot table read from a 3-slot plugin must not run off the end of the image).
//! 2. *Each slot is null or code of the library* ([`crate::image::Image::is_code`]): a
//!    length or a string pointer read as a function is the wrong layout, or no layout.
//! 3. *It ends where the layout says*: the word after its last slot is not code of the
//!    library too. A vtable is a run of the plugin's functions; when the run goes on, the
//!    table is longer than this layout. (A null after the last slot proves nothing: the
//!    longer layouts' trailing slots may be null.)
//! 4. *It has its arguments*: a layout whose functions take no `plugin_ctx` (nylon-0.1)
//!    does not fit an info that sets one.
//!
//! Exactly one fitting layout is loaded; several are refused, naming them (kcoro-v1 and
//! nylon-0.1 share their five slots, so a plugin with a null `plugin_ctx` that fits one
//! fits both); none is refused with each layout's reason. Rules 2 and 3 rest on what the
//! loader says, so a wrong guess needs a table followed by another function of the same
//! library: the check of [`crate::load`] still keeps every call inside the plugin's code.
//!
//! # Invariants
//! - `judge` reads only the words it is given: the caller reads them, bounded by the
//!   library's mapped image ([`crate::image::Image::read_words`]).
//! - A layout reported as fitting has every slot null or code (rule 2), so loading it
//!   passes the load-time slot check.

use crate::layout::Layout;

/// Words read from a plain vtable: the longest plain layout (6 slots) and the word after.
pub(crate) const PROBE_WORDS: usize = 7;

/// What detection sees of a plain version-1 plugin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen<'a> {
    /// The vtable's leading words, as far as the library's mapped data goes (at most
    /// [`PROBE_WORDS`]).
    pub(crate) words: &'a [usize],
    /// Whether the info's `plugin_ctx` is non-null.
    pub(crate) plugin_ctx: bool,
}

/// Detection's answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Exactly this layout fits.
    One(Layout),
    /// These fit, in [`Layout::PLAIN_V1`] order: the caller must choose.
    Several(Vec<Layout>),
    /// None fits; each layout with the first reason it does not.
    None(Vec<(Layout, String)>),
}

/// Why `layout` does not fit what was seen, or `None` if it fits.
pub(crate) fn misfit(layout: Layout, seen: &Seen<'_>, is_code: &dyn Fn(usize) -> bool) -> Option<String> {
    let slots = layout.slots();
    if seen.words.len() < slots.len() {
        return Some(format!("its {}-slot table would run past the library's mapped data", slots.len()));
    }
    for (i, (&w, name)) in seen.words.iter().zip(slots).enumerate() {
        if w != 0 && !is_code(w) {
            return Some(format!("slot {i} (`{name}`) = {w:#x} is not code of the library"));
        }
    }
    if let Some(&next) = seen.words.get(slots.len())
        && next != 0
        && is_code(next)
    {
        return Some(format!(
            "the word after its {} slots is a function too: the table is longer",
            slots.len()
        ));
    }
    if seen.plugin_ctx && !layout.passes_plugin_ctx() {
        return Some("the info sets plugin_ctx, which this layout's functions do not take".into());
    }
    None
}

/// The plain version-1 layouts that fit what was seen.
pub(crate) fn judge(seen: &Seen<'_>, is_code: &dyn Fn(usize) -> bool) -> Verdict {
    let mut fits = Vec::new();
    let mut misfits = Vec::new();
    for layout in Layout::PLAIN_V1 {
        match misfit(layout, seen, is_code) {
            None => fits.push(layout),
            Some(why) => misfits.push((layout, why)),
        }
    }
    match fits.len() {
        0 => Verdict::None(misfits),
        1 => Verdict::One(fits[0]),
        _ => Verdict::Several(fits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code is 0x1000..0x2000; anything else is data.
    fn is_code(w: usize) -> bool {
        (0x1000..0x2000).contains(&w)
    }

    fn judge_words(words: &[usize], plugin_ctx: bool) -> Verdict {
        judge(&Seen { words, plugin_ctx }, &is_code)
    }

    /// `n` distinct functions.
    fn fns(n: usize) -> Vec<usize> {
        (0..n).map(|i| 0x1000 + 0x40 * i).collect()
    }

    const DATA: usize = 0x38_0000_0001; // an info's first word, as it often follows

    #[test]
    fn a_3_slot_table_followed_by_data_is_3_slot() {
        // nylon-ring's 3-slot example plugins: a length (0x911) after the table.
        let mut w = fns(3);
        w.extend([0x911, 0x7c12, 0, 0]);
        assert_eq!(judge_words(&w, true), Verdict::One(Layout::Nylon3Slot));
        assert_eq!(judge_words(&w, false), Verdict::One(Layout::Nylon3Slot));
    }

    #[test]
    fn a_6_slot_table_is_6_slot() {
        let mut w = fns(6);
        w.push(DATA);
        assert_eq!(judge_words(&w, true), Verdict::One(Layout::Nylon6Slot));
    }

    #[test]
    fn five_slots_with_plugin_ctx_are_kcoro_v1() {
        let mut w = fns(5);
        w.extend([DATA, 0]);
        assert_eq!(judge_words(&w, true), Verdict::One(Layout::KcoroV1));
    }

    #[test]
    fn five_slots_without_plugin_ctx_fit_kcoro_v1_and_nylon_0_1() {
        // nylon-ring 0.1's define_plugin!: five functions, then a string pointer.
        let mut w = fns(5);
        w.extend([0x7c12, 0x45]);
        assert_eq!(judge_words(&w, false), Verdict::Several(vec![Layout::KcoroV1, Layout::Nylon01]));
    }

    #[test]
    fn null_stream_slots_fit_every_layout_they_could_end() {
        // The seed's and nylon-ring 0.1's C examples: init, handle, shutdown, two nulls.
        let mut w = fns(3);
        w.extend([0, 0, DATA, 0]);
        let want = vec![Layout::KcoroV1, Layout::Nylon01, Layout::Nylon3Slot];
        assert_eq!(judge_words(&w, false), Verdict::Several(want));
        // With a plugin_ctx, nylon-0.1 drops out; the other two remain.
        assert_eq!(judge_words(&w, true), Verdict::Several(vec![Layout::KcoroV1, Layout::Nylon3Slot]));
    }

    #[test]
    fn a_table_cut_by_the_image_end_fits_only_what_is_there() {
        // Three readable words: only the 3-slot layout's table is inside the image.
        assert_eq!(judge_words(&fns(3), true), Verdict::One(Layout::Nylon3Slot));
    }

    #[test]
    fn nothing_fits_data() {
        let Verdict::None(why) = judge_words(&[DATA, 0x911, 3, 4, 5, 6, 7], false) else {
            panic!("data taken for a vtable");
        };
        assert_eq!(why.len(), Layout::PLAIN_V1.len());
        assert!(why.iter().all(|(_, w)| w.contains("slot 0 (`init`)")), "{why:?}");
        // A longer run of functions than any plain layout has fits none of them either.
        assert!(matches!(judge_words(&fns(7), false), Verdict::None(_)));
    }

    #[test]
    fn misfits_name_the_slot() {
        let mut w = fns(3);
        w.extend([0x911, 0, 0, 0]);
        let seen = Seen { words: &w, plugin_ctx: true };
        let why = misfit(Layout::Nylon6Slot, &seen, &is_code).expect("6-slot misfits");
        assert_eq!(why, "slot 3 (`shutdown`) = 0x911 is not code of the library");
        let why = misfit(Layout::Nylon01, &Seen { words: &fns(5), plugin_ctx: true }, &is_code);
        assert!(why.is_some_and(|w| w.contains("plugin_ctx")));
    }
}

//! `select!` and `select_unbiased!`: a fixed clause list, expanded to stack-allocated
//! clauses run by the same protocol as [`Select`](super::Select) (no allocation besides
//! the waiter when it has to park).
//!
//! The macro munches clauses one at a time into a state
//! `{ biased [clauses] [default] [timeout] [unused names] }`, each clause normalised to
//! `(name index (constructor) pattern body)`; names come from a fixed supply, which caps a
//! `select!` at 32 channel clauses (use `Select` for more).

/// Waits on several channel operations and runs the branch of the one that completes.
///
/// ```
/// use std::time::Duration;
/// use kcoro::chan;
///
/// let (tx1, rx1) = chan::buffered::<u32>(1);
/// let (tx2, rx2) = chan::buffered::<&str>(1);
/// tx1.send(7).unwrap();
/// let got = kcoro::select! {
///     recv(rx1) -> m => m.unwrap() * 2,
///     send(tx2, "hello") -> r => { r.unwrap(); 0 }
///     timeout(Duration::from_millis(10)) => 99,
/// };
/// assert_eq!(got, 14); // biased: the first ready clause wins
/// # drop((tx2, rx2));
/// ```
///
/// Clauses: `recv(rx) -> result => body`, `send(tx, value) -> result => body` (`result`
/// is the operation's `Result`, a closed channel makes its clause ready with `Closed`),
/// and at most one of `default => body` (nothing ready: don't wait) or
/// `timeout(duration) => body`. Bodies are blocks or expressions separated by commas.
/// Earlier clauses win ties; see [`select_unbiased!`](crate::select_unbiased) for a random start.
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select!(@parse { true [] [] [] [
            (__kc0 0) (__kc1 1) (__kc2 2) (__kc3 3) (__kc4 4) (__kc5 5) (__kc6 6) (__kc7 7)
            (__kc8 8) (__kc9 9) (__kc10 10) (__kc11 11) (__kc12 12) (__kc13 13) (__kc14 14)
            (__kc15 15) (__kc16 16) (__kc17 17) (__kc18 18) (__kc19 19) (__kc20 20)
            (__kc21 21) (__kc22 22) (__kc23 23) (__kc24 24) (__kc25 25) (__kc26 26)
            (__kc27 27) (__kc28 28) (__kc29 29) (__kc30 30) (__kc31 31)
        ] } $($tokens)*)
    };
}

/// [`select!`] starting each pass at a random clause, so no ready clause is favoured.
#[macro_export]
macro_rules! select_unbiased {
    ($($tokens:tt)*) => {
        $crate::__select!(@parse { false [] [] [] [
            (__kc0 0) (__kc1 1) (__kc2 2) (__kc3 3) (__kc4 4) (__kc5 5) (__kc6 6) (__kc7 7)
            (__kc8 8) (__kc9 9) (__kc10 10) (__kc11 11) (__kc12 12) (__kc13 13) (__kc14 14)
            (__kc15 15) (__kc16 16) (__kc17 17) (__kc18 18) (__kc19 19) (__kc20 20)
            (__kc21 21) (__kc22 22) (__kc23 23) (__kc24 24) (__kc25 25) (__kc26 26)
            (__kc27 27) (__kc28 28) (__kc29 29) (__kc30 30) (__kc31 31)
        ] } $($tokens)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select {
    // ---- clause heads ----
    (@parse $st:tt recv($rx:expr) -> $pat:pat => $($rest:tt)*) => {
        $crate::__select!(@body $st (chan ($crate::chan::__private::RecvClause::new(&$rx)) $pat) $($rest)*)
    };
    (@parse $st:tt send($tx:expr, $v:expr) -> $pat:pat => $($rest:tt)*) => {
        $crate::__select!(@body $st (chan ($crate::chan::__private::SendClause::new(&$tx, $v)) $pat) $($rest)*)
    };
    (@parse $st:tt default => $($rest:tt)*) => {
        $crate::__select!(@body $st (default) $($rest)*)
    };
    (@parse $st:tt timeout($d:expr) => $($rest:tt)*) => {
        $crate::__select!(@body $st (timeout $d) $($rest)*)
    };
    // ---- bodies ----
    (@body $st:tt $head:tt $body:block, $($rest:tt)*) => {
        $crate::__select!(@add $st $head $body; $($rest)*)
    };
    (@body $st:tt $head:tt $body:block $($rest:tt)*) => {
        $crate::__select!(@add $st $head $body; $($rest)*)
    };
    (@body $st:tt $head:tt $body:expr, $($rest:tt)*) => {
        $crate::__select!(@add $st $head $body; $($rest)*)
    };
    (@body $st:tt $head:tt $body:expr) => {
        $crate::__select!(@add $st $head $body;)
    };
    // ---- accumulate ----
    (@add { $b:tt [$($c:tt)*] $d:tt $t:tt [($name:ident $idx:tt) $($n:tt)*] }
        (chan $ctor:tt $pat:pat) $body:tt; $($rest:tt)*) => {
        $crate::__select!(@parse { $b [$($c)* ($name $idx $ctor $pat $body)] $d $t [$($n)*] } $($rest)*)
    };
    (@add { $b:tt $c:tt [] $t:tt $n:tt } (default) $body:tt; $($rest:tt)*) => {
        $crate::__select!(@parse { $b $c [$body] $t $n } $($rest)*)
    };
    (@add { $b:tt $c:tt $d:tt [] $n:tt } (timeout $dur:expr) $body:tt; $($rest:tt)*) => {
        $crate::__select!(@parse { $b $c $d [$dur, $body] $n } $($rest)*)
    };
    (@add { $b:tt $c:tt [$($d:tt)+] $t:tt $n:tt } (default) $($rest:tt)*) => {
        ::core::compile_error!("select!: more than one `default` clause")
    };
    (@add { $b:tt $c:tt $d:tt [$($t:tt)+] $n:tt } (timeout $($x:tt)*) $($rest:tt)*) => {
        ::core::compile_error!("select!: more than one `timeout` clause")
    };
    (@add { $b:tt $c:tt $d:tt $t:tt [] } $($rest:tt)*) => {
        ::core::compile_error!("select!: more than 32 channel clauses (use kcoro::chan::Select)")
    };
    // ---- expand ----
    (@parse { $b:tt [] [] [] $n:tt }) => {
        ::core::compile_error!("select!: no clauses")
    };
    (@parse { $b:tt [$(($name:ident $idx:tt ($ctor:expr) $pat:tt $body:tt))*] $d:tt $t:tt $n:tt }) => {{
        $( let mut $name = $ctor; )*
        let __kcoro_selected = {
            let (__kcoro_deadline, __kcoro_try) = $crate::__select!(@mode $d $t);
            let __kcoro_clauses: &mut [&mut dyn $crate::chan::__private::Clause] = &mut [$(&mut $name),*];
            $crate::chan::__private::run_macro(__kcoro_clauses, __kcoro_deadline, __kcoro_try, $b)
        };
        match __kcoro_selected {
            $( ::core::result::Result::Ok($idx) => {
                #[allow(unused_variables)]
                let $pat = $name.into_result();
                $body
            } )*
            ::core::result::Result::Ok(_) => ::core::unreachable!("select!: unknown clause index"),
            ::core::result::Result::Err(_) => $crate::__select!(@gave_up $d $t),
        }
    }};
    (@mode [] []) => { (::core::option::Option::None, false) };
    (@mode [$body:tt] []) => { (::core::option::Option::None, true) };
    (@mode [] [$dur:expr, $body:tt]) => { ($crate::now().checked_add($dur), false) };
    (@mode [$($d:tt)+] [$($t:tt)+]) => {
        ::core::compile_error!("select!: `default` and `timeout` exclude each other")
    };
    (@gave_up [] []) => { ::core::unreachable!("select!: a select without default or timeout gave up") };
    (@gave_up [$body:tt] []) => { $body };
    (@gave_up [] [$dur:expr, $body:tt]) => { $body };
    (@gave_up $d:tt $t:tt) => { ::core::unreachable!() };
}

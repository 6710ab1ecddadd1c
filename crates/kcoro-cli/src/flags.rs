//! Flag scanning shared by `kcoro` and `kcheck`: `--flag value` and `--flag=value`, by
//! hand (the grammar is small and clap is not in the offline registry cache).

/// A cursor over `--flag value` / `--flag=value` arguments.
pub(crate) struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
    /// The `=value` part of the current flag, if it had one.
    inline: Option<String>,
}

impl<'a> Flags<'a> {
    pub(crate) fn new(args: &'a [String]) -> Self {
        Flags { args: args.iter(), inline: None }
    }

    pub(crate) fn next_flag(&mut self) -> Result<Option<String>, String> {
        if let Some(v) = self.inline.take() {
            return Err(format!("unexpected value {v:?}"));
        }
        let Some(arg) = self.args.next() else { return Ok(None) };
        if !arg.starts_with('-') {
            return Err(format!("unexpected argument {arg:?}"));
        }
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                self.inline = Some(value.to_string());
                Ok(Some(flag.to_string()))
            }
            _ => Ok(Some(arg.clone())),
        }
    }

    /// A flag that takes no value: `--help=1` is an error.
    pub(crate) fn switch(&mut self, flag: &str) -> Result<(), String> {
        match self.inline.take() {
            Some(v) => Err(format!("{flag} takes no value (got {v:?})")),
            None => Ok(()),
        }
    }

    pub(crate) fn value(&mut self, flag: &str) -> Result<String, String> {
        match self.inline.take() {
            Some(v) => Ok(v),
            None => self.args.next().cloned().ok_or_else(|| format!("{flag} needs a value")),
        }
    }

    pub(crate) fn number(&mut self, flag: &str, min: u64, max: u64) -> Result<u64, String> {
        let v = self.value(flag)?;
        let n: u64 = v.parse().map_err(|_| format!("{flag}: {v:?} is not a whole number"))?;
        if n < min || n > max {
            return Err(format!("{flag}: must be between {min} and {max}"));
        }
        Ok(n)
    }
}

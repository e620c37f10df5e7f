//! Options every uWSGI-style vassal gets on its command line
//! (`--vassals-inherit`, `--vassals-include`, `--vassals-set` and the
//! `-before` forms), placed where the uWSGI Emperor puts them:
//!
//! `BINARY [--inherit T]… [--include I]… [--set K=V]… FLAG TARGET [--inherit T]… [--include I]…`
//!
//! where the first inherits and includes are the `-before` lists: uWSGI
//! reads its options in order, so what comes before the vassal's own config
//! is a default it may override, and what comes after overrides it.

/// The injected options, in the order they were given per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injection {
    /// `--vassals-inherit-before FILE`: `--inherit FILE` before the config.
    pub inherit_before: Vec<String>,
    /// `--vassals-include-before FILE`: `--include FILE` before the config.
    pub include_before: Vec<String>,
    /// `--vassals-set KEY=VALUE`: `--set KEY=VALUE` before the config.
    pub set: Vec<String>,
    /// `--vassals-inherit FILE`: `--inherit FILE` after the config.
    pub inherit: Vec<String>,
    /// `--vassals-include FILE`: `--include FILE` after the config.
    pub include: Vec<String>,
}

impl Injection {
    /// The arguments of a uWSGI-style vassal whose own are `own` (its
    /// config flag and target), with the injected options around them.
    pub(super) fn around(&self, own: Vec<String>) -> Vec<String> {
        let pairs = |flag: &'static str, values: &[String]| {
            values.iter().flat_map(move |v| [flag.to_owned(), v.clone()]).collect::<Vec<_>>()
        };
        let mut args = pairs("--inherit", &self.inherit_before);
        args.extend(pairs("--include", &self.include_before));
        args.extend(pairs("--set", &self.set));
        args.extend(own);
        args.extend(pairs("--inherit", &self.inherit));
        args.extend(pairs("--include", &self.include));
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_go_where_upstream_puts_them() {
        let injection = Injection {
            inherit_before: strings(&["ib1", "ib2"]),
            include_before: strings(&["cb"]),
            set: strings(&["a=1", "b=2"]),
            inherit: strings(&["i1", "i2"]),
            include: strings(&["c1"]),
        };
        let args = injection.around(strings(&["--ini", "app.ini"]));
        let expected = "--inherit ib1 --inherit ib2 --include cb --set a=1 --set b=2 --ini app.ini \
                        --inherit i1 --inherit i2 --include c1";
        assert_eq!(args.join(" "), expected);
        assert_eq!(Injection::default().around(strings(&["--ini", "x.ini"])), ["--ini", "x.ini"]);
    }
}

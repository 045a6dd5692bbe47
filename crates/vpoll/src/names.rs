//! Names of fieldless enums: one table per enum gives its list of variants, each
//! variant's name, parsing, display and the valid names that error texts list.

/// Gives a fieldless enum, from one table of `Variant => "name"` in order of preference:
/// `ALL` (every variant, in that order), `NAMES` (their names), `name()`, `Display` (the
/// name) and `FromStr` (any case, surrounding white space ignored; an unknown name is
/// `Error::$unknown` holding the text as given).
macro_rules! named_enum {
    (
        $ty:ident, $noun:literal, $env:literal, $unknown:ident;
        $($variant:ident => $name:literal,)+
    ) => {
        impl $ty {
            #[doc = concat!("Every ", $noun, ", in order of preference.")]
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];

            #[doc = concat!("The names of [`", stringify!($ty), "::ALL`], in the same order.")]
            pub(crate) const NAMES: [&'static str; [$($name),+].len()] = [$($name),+];

            #[doc = concat!("The lower-case name used by `", $env, "` and `greenfd probe`.")]
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.name().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| $crate::Error::$unknown(s.to_owned()))
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use named_enum;

/// `names` as a text lists alternatives: `a, b or c`.
pub(crate) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::one_of;

    #[test]
    fn alternatives_read_as_a_list() {
        assert_eq!(one_of(&[]), "");
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&["a", "b"]), "a or b");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
    }
}

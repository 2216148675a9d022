//! Enums whose values have stable names: the storage and wire form of the domain's states, kinds
//! and reasons. [`named_enum!`] declares one with `ALL`, `as_str`, `parse` and `Display`, so each
//! name is written once, beside its value.

/// Declares an enum of unit variants, each with its stable name:
///
/// ```ignore
/// named_enum! {
///     /// Doc of the enum.
///     pub enum Colour {
///         /// Doc of the variant.
///         Red = "RED",
///     }
/// }
/// ```
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The stable name (storage and wire form).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            /// The value with this stable name.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    named_enum! {
        /// A test enum.
        enum Colour {
            Red = "RED",
            /// Green.
            Green = "GREEN",
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green]);
        for c in Colour::ALL {
            assert_eq!(Colour::parse(c.as_str()), Some(c));
        }
        assert_eq!(Colour::parse("red"), None);
        assert_eq!(Colour::Green.to_string(), "GREEN");
    }
}

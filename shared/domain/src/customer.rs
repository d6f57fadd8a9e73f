//! Customer attributes that steer the dunning: language, risk segment, kind, channel.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {:?} (expected one of: {})",
                        stringify!($name).to_lowercase(),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(Language { Fr => "fr", En => "en" });
text_enum!(Risk { Low => "low", Medium => "medium", High => "high" });
text_enum!(CustomerKind { Business => "business", Consumer => "consumer" });
text_enum!(Channel { Email => "email" });

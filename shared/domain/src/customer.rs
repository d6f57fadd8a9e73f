//! Customer attributes that steer the dunning: language, risk segment, kind, channel.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
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
/// [`Risk`] as a map key with a stable order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RiskKey(u8);

impl From<Risk> for RiskKey {
    fn from(r: Risk) -> Self {
        RiskKey(match r {
            Risk::Low => 0,
            Risk::Medium => 1,
            Risk::High => 2,
        })
    }
}

text_enum!(CustomerKind { Business => "business", Consumer => "consumer" });
text_enum!(Channel {
    Email => "email",
    Sms => "sms",
    Letter => "letter",
    RegisteredLetter => "registered_letter",
    Call => "call",
});

impl Channel {
    /// The sender kind that delivers this channel, which names its queue
    /// (`<ns>.sender.<kind>`) and routing key (`reminder.rendered.<kind>`): registered
    /// letters go through the letter sender, flagged as registered. A call is made by a
    /// person, not a sender: its kind `call` has no queue (the renderer opens a task).
    pub fn sender_kind(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Letter | Channel::RegisteredLetter => "letter",
            Channel::Call => "call",
        }
    }

    /// A task for the accounts team (a phone call), not a message relance delivers.
    pub fn is_task(self) -> bool {
        self == Channel::Call
    }

    /// Every sender kind, once each (calls have none).
    pub const SENDER_KINDS: [&'static str; 3] = ["email", "sms", "letter"];

    /// Letters and registered letters: printed and posted.
    pub fn is_postal(self) -> bool {
        matches!(self, Channel::Letter | Channel::RegisteredLetter)
    }
}

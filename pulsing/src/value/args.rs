//! The arguments of a by-name call: [`Value`]s by position and by keyword.

use serde::{Deserialize, Serialize};

use super::Value;

/// The arguments of a by-name call: positional ones first, then keyword ones.
///
/// ```
/// use pulsing::{Args, Value};
///
/// let args = Args::new().arg(2).kwarg("by", "three");
/// assert_eq!(args.positional, [Value::Int(2)]);
/// assert_eq!(args.keyword, [("by".to_string(), Value::from("three"))]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Args {
    /// Arguments matched to parameters in order.
    pub positional: Vec<Value>,
    /// Arguments matched to parameters by name.
    pub keyword: Vec<(String, Value)>,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Args::default()
    }

    /// Adds a positional argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Self {
        self.positional.push(value.into());
        self
    }

    /// Adds a keyword argument.
    pub fn kwarg(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.keyword.push((name.into(), value.into()));
        self
    }
}

impl From<Vec<Value>> for Args {
    fn from(positional: Vec<Value>) -> Self {
        Args {
            positional,
            keyword: Vec::new(),
        }
    }
}

//! Config errors: each names where in the file it is (key path or line) and why.

use std::fmt;

/// Where in a config file an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole (unreadable, or empty of any table).
    File,
    /// A TOML syntax error: 1-based line and column.
    Line { line: usize, column: usize },
    /// A key path such as `service[2].real_server[0].port` (indices 0-based).
    Key(String),
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Location,
    pub reason: String,
}

impl ConfigError {
    pub fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            location: Location::Key(path.into()),
            reason: reason.into(),
        }
    }

    pub fn file(reason: impl Into<String>) -> Self {
        ConfigError {
            location: Location::File,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    /// `KEY.PATH: reason`, `line L, column C: reason`, or just `reason`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File => write!(f, "{}", self.reason),
            Location::Line { line, column } => {
                write!(f, "line {line}, column {column}: {}", self.reason)
            }
            Location::Key(path) => write!(f, "{path}: {}", self.reason),
        }
    }
}

/// Every error found in one file (never empty). Structural errors (TOML syntax, types,
/// unknown keys, out-of-range numbers) stop parsing, so there is at most one of those;
/// semantic errors are all reported, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

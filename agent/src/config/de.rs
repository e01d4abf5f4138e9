//! Serde helpers for range-checked integers, seconds and defaults, so that an
//! out-of-range value fails with the key path attached (via serde_path_to_error).

use serde::de::{Deserialize, Deserializer, Error};
use std::time::Duration;

/// An integer in `LO..=HI`, converted to the field's type.
pub fn int<'de, const LO: i64, const HI: i64, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let v = i64::deserialize(d)?;
    if !(LO..=HI).contains(&v) {
        return Err(D::Error::custom(format!("{v} is out of range {LO}..={HI}")));
    }
    T::try_from(v).map_err(|_| D::Error::custom(format!("{v} does not fit")))
}

/// Like [`int`] for an optional key (use with `#[serde(default)]`).
pub fn opt_int<'de, const LO: i64, const HI: i64, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    int::<LO, HI, D, T>(d).map(Some)
}

/// A non-negative number of seconds (integer or float).
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = f64::deserialize(d)?;
    Duration::try_from_secs_f64(v)
        .map_err(|_| D::Error::custom(format!("{v} is not a valid number of seconds (>= 0)")))
}

/// Like [`seconds`] for an optional key (use with `#[serde(default)]`).
pub fn opt_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    seconds(d).map(Some)
}

/// Default for a small integer key.
pub fn n<T: From<u8>, const N: u8>() -> T {
    T::from(N)
}

/// Default for a seconds key.
pub fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

/// Default for a boolean key that is on unless turned off.
pub fn yes() -> bool {
    true
}

/// Implements `Deserialize` through `FromStr`, keeping its error message.
macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use deserialize_from_str;

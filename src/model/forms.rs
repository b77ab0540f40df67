//! How typed values sit in the graph (Neo4j has no map properties and no "absent" that reads
//! back the same way): optional values as `""`, label maps as a JSON string.

/// `Option<T>` stored as its text form, `""` for none.
pub mod empty_as_none {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the value's text, or `""`.
    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    /// Reads `""` (or null) as none, anything else through `FromStr`.
    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

/// A string map stored as a JSON object in a string property.
pub mod json_text {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the map as JSON text.
    pub fn serialize<S: Serializer>(m: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&serde_json::to_string(m).map_err(serde::ser::Error::custom)?)
    }

    /// Reads JSON text (empty or null as no labels).
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        if text.is_empty() {
            return Ok(BTreeMap::new());
        }
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// A timestamp as stored: RFC 3339 in UTC with nine fractional digits, so that comparing the
/// text compares the times (Cypher `ORDER BY`, `<=`).
pub fn stored_time(t: k8s_openapi::jiff::Timestamp) -> String {
    format!("{t:.9}")
}

/// A [`k8s_openapi::jiff::Timestamp`] stored with [`stored_time`].
pub mod time {
    use k8s_openapi::jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes [`super::stored_time`].
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::stored_time(*t))
    }

    /// Reads any RFC 3339 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An optional timestamp stored with [`stored_time`], `""` for none.
pub mod optional_time {
    use k8s_openapi::jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes [`super::stored_time`] or `""`.
    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.map(super::stored_time).unwrap_or_default())
    }

    /// Reads RFC 3339 text, `""` or null as none.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

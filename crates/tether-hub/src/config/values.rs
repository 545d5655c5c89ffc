//! The values behind [`crate::config::HubConfig`], from the TOML file and from `TETHER_HUB_*`
//! environment variables, deserialized together.
//!
//! An environment variable is text: its type is the type of the field it sets, never what the
//! text looks like. `TETHER_HUB_PROVISIONING_KEY=123456` stays the string `"123456"`, and
//! `TETHER_HUB_KEEPALIVE_INTERVAL_SECS=30` becomes a number because that field is one. Each value
//! is therefore handed to serde as a deserializer that parses its text only when the field asks
//! for a number or a flag. Errors name the key (or variable) that was wrong.

use std::{collections::BTreeMap, fmt::Display, str::FromStr};

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor, value::Error};

/// Where one configuration value came from.
pub enum Source {
    /// A value of the configuration file, typed by TOML.
    File(toml::Value),
    /// The text of an environment variable.
    Environment { variable: String, text: String },
}

/// Deserializes `T` from `values` (keys as in the file).
pub fn deserialize<T: DeserializeOwned>(values: BTreeMap<String, Source>) -> Result<T, Error> {
    T::deserialize(Values {
        entries: values.into_iter(),
        current: String::new(),
    })
}

/// A map of keys to [`Source`]s, as serde sees it.
struct Values {
    entries: std::collections::btree_map::IntoIter<String, Source>,
    current: String,
}

struct Access<'a> {
    values: &'a mut Values,
    pending: Option<Source>,
}

impl<'de> de::Deserializer<'de> for Values {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Access {
            values: &mut self,
            pending: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

impl<'de> de::MapAccess<'de> for Access<'_> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((key, source)) = self.values.entries.next() else {
            return Ok(None);
        };
        self.values.current = key.clone();
        self.pending = Some(source);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let source = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("a configuration value without its key"))?;
        let origin = match &source {
            Source::File(_) => format!("`{}`", self.values.current),
            Source::Environment { variable, .. } => variable.clone(),
        };
        seed.deserialize(source)
            .map_err(|error| de::Error::custom(format!("{origin}: {error}")))
    }
}

/// Parses `text` as the number (or flag) a field wants.
fn parse<T: FromStr>(text: &str, what: &str) -> Result<T, Error>
where
    T::Err: Display,
{
    text.trim()
        .parse()
        .map_err(|error| de::Error::custom(format!("`{text}` is not {what} ({error})")))
}

macro_rules! parse_as {
    ($($method:ident => $visit:ident : $type:ty, $what:literal;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self {
                    Source::File(value) => value.deserialize_any(visitor).map_err(de::Error::custom),
                    Source::Environment { text, .. } => visitor.$visit(parse::<$type>(&text, $what)?),
                }
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Source {
    type Error = Error;

    /// Text stays text.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Source::File(value) => value.deserialize_any(visitor).map_err(de::Error::custom),
            Source::Environment { text, .. } => visitor.visit_string(text),
        }
    }

    parse_as! {
        deserialize_bool => visit_bool: bool, "true or false";
        deserialize_i8 => visit_i8: i8, "a number";
        deserialize_i16 => visit_i16: i16, "a number";
        deserialize_i32 => visit_i32: i32, "a number";
        deserialize_i64 => visit_i64: i64, "a number";
        deserialize_u8 => visit_u8: u8, "a whole number";
        deserialize_u16 => visit_u16: u16, "a whole number";
        deserialize_u32 => visit_u32: u32, "a whole number";
        deserialize_u64 => visit_u64: u64, "a whole number";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
    }

    /// A variable that is set is a value, even when empty (`Some("")` for a string setting).
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Source::File(value) => value.deserialize_option(visitor).map_err(de::Error::custom),
            environment => visitor.visit_some(environment),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Source::File(value) => value
                .deserialize_newtype_struct(name, visitor)
                .map_err(de::Error::custom),
            environment => visitor.visit_newtype_struct(environment),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Source::File(value) => value
                .deserialize_enum(name, variants, visitor)
                .map_err(de::Error::custom),
            Source::Environment { text, .. } => visitor.visit_enum(text.into_deserializer()),
        }
    }

    /// A list from the environment is comma-separated: `a,b,c`.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Source::File(value) => value.deserialize_any(visitor).map_err(de::Error::custom),
            Source::Environment { variable, text } => {
                let items: Vec<Source> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Source::Environment {
                        variable: variable.clone(),
                        text: item.to_owned(),
                    })
                    .collect();
                visitor.visit_seq(de::value::SeqDeserializer::new(items.into_iter()))
            }
        }
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for Source {
    type Deserializer = Source;

    fn into_deserializer(self) -> Source {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        key: Option<String>,
        name: String,
        count: u64,
        flag: bool,
        list: Vec<String>,
        address: Option<std::net::SocketAddr>,
    }

    fn environment(pairs: &[(&str, &str)]) -> BTreeMap<String, Source> {
        pairs
            .iter()
            .map(|(key, text)| {
                let source = Source::Environment {
                    variable: format!("TETHER_HUB_{}", key.to_ascii_uppercase()),
                    text: (*text).to_owned(),
                };
                ((*key).to_owned(), source)
            })
            .collect()
    }

    #[test]
    fn text_that_looks_like_a_number_or_a_flag_stays_text_in_string_fields() {
        let sample: Sample = deserialize(environment(&[
            ("key", "123456"),
            ("name", "true"),
            ("count", "42"),
            ("flag", "true"),
            ("list", "a, b,c"),
            ("address", "127.0.0.1:80"),
        ]))
        .unwrap();
        assert_eq!(sample.key.as_deref(), Some("123456"));
        assert_eq!(sample.name, "true");
        assert_eq!(sample.count, 42);
        assert!(sample.flag);
        assert_eq!(sample.list, ["a", "b", "c"]);
        assert_eq!(sample.address.unwrap().port(), 80);
    }

    #[test]
    fn errors_name_the_variable_or_the_key() {
        let error = deserialize::<Sample>(environment(&[("count", "many")])).unwrap_err();
        assert!(error.to_string().contains("TETHER_HUB_COUNT"), "{error}");
        let file: BTreeMap<String, Source> =
            [("count".to_owned(), Source::File(toml::Value::String("x".into())))].into();
        let error = deserialize::<Sample>(file).unwrap_err();
        assert!(error.to_string().contains("`count`"), "{error}");
        let unknown: BTreeMap<String, Source> =
            [("nope".to_owned(), Source::File(toml::Value::Integer(1)))].into();
        assert!(deserialize::<Sample>(unknown).is_err());
    }
}

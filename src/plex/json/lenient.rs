//! Deserialising Plex's JSON straight into structs, as leniently as the `Value` accessors of
//! the parent module read it — without building a `serde_json::Value` tree first.
//!
//! A full sync of a 210,000-file library parses ~400 MB of JSON; as `Value`s that was a third
//! of its CPU (issue 9: a `BTreeMap` and a `String` per key of every object, then the tree
//! cloned twice). Here each shape lists the keys it reads; every other key is skipped
//! without allocating, and no field can fail: a [`Scalar`] takes whatever JSON value it is
//! given (a mistyped one reads as `None` through its accessors, as `s`/`n`/`b` do), a
//! [`Many`] that is not an array is empty, a struct given a non-object is its default (no
//! `ratingKey`: skipped by the caller), and a repeated key keeps its last value as
//! `serde_json::Value` does. Only a document that is not JSON at all is an error.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A JSON value read as Plex's scalars: a string, a number or a boolean (`Other` for null,
/// an array or an object — all read as absent).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Scalar {
    #[default]
    Other,
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    /// As a string, accepting numbers (`s`).
    pub fn s(&self) -> Option<String> {
        match self {
            Scalar::Str(x) => Some(x.clone()),
            Scalar::Num(x) => Some(x.to_string()),
            _ => None,
        }
    }

    /// As an integer, accepting numeric strings (`n`).
    pub fn n(&self) -> Option<i64> {
        match self {
            Scalar::Num(x) => x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)),
            Scalar::Str(x) => x.trim().parse().ok(),
            _ => None,
        }
    }

    /// As a boolean, accepting `1`/`0` and `"1"`/`"0"` (`b`).
    pub fn b(&self) -> Option<bool> {
        match self {
            Scalar::Bool(x) => Some(*x),
            Scalar::Num(x) => Some(x.as_i64() != Some(0)),
            Scalar::Str(x) => Some(matches!(x.as_str(), "1" | "true")),
            Scalar::Other => None,
        }
    }

    /// A small unsigned field (`width`, `bitDepth`…); out of range is absent.
    pub fn u32(&self) -> Option<u32> {
        self.n().and_then(|x| u32::try_from(x).ok())
    }

    pub fn u8(&self) -> Option<u8> {
        self.n().and_then(|x| u8::try_from(x).ok())
    }
}

/// Drains whatever a visitor was given that the shape does not want.
macro_rules! other_visits {
    ($out:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($out)
        }
    };
}

pub(crate) fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

pub(crate) fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Num(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Num(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Scalar::Other, Scalar::Num))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
                drain_seq(seq).map(|()| Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar, A::Error> {
                drain_map(map).map(|()| Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// An array field: absent, `null` or not an array reads as empty.
#[derive(Clone, Debug, PartialEq)]
pub struct Many<T>(pub Vec<T>);

impl<T> Default for Many<T> {
    fn default() -> Self {
        Many(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Many<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Many<T>, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Many<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            other_visits!(Many::default());
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Many<T>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(x) = seq.next_element()? {
                    out.push(x);
                }
                Ok(Many(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Many<T>, A::Error> {
                drain_map(map).map(|()| Many::default())
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Matches an object key against a shape's names without allocating it.
pub(crate) struct KeySeed(pub &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|k| *k == v))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Option<usize>, E> {
        Ok(None)
    }
}

/// Declares a shape: a struct of lenient fields, each read from one JSON key (the last
/// occurrence wins), every other key skipped; `present` says whether an object was given.
macro_rules! shape {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* $json:literal => $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            $( $(#[$fm])* pub $field: $ty, )*
            /// The JSON value was an object.
            #[allow(dead_code)]
            pub present: bool,
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                const KEYS: &[&str] = &[$($json),*];
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " object"))
                    }
                    $crate::plex::json::lenient::other_visits!($name::default());
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<$name, A::Error> {
                        $crate::plex::json::lenient::drain_seq(seq).map(|()| $name::default())
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let mut out = $name { present: true, ..$name::default() };
                        while let Some(k) = map.next_key_seed($crate::plex::json::lenient::KeySeed(KEYS))? {
                            match k.and_then(|i| KEYS.get(i)).copied() {
                                $( Some($json) => out.$field = map.next_value()?, )*
                                _ => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

pub(crate) use other_visits;
pub(crate) use shape;

#[cfg(test)]
mod tests {
    use super::*;

    shape! {
        pub struct T {
            "a" => a: Scalar,
            "list" => list: Many<T>,
        }
    }

    #[test]
    fn any_shape_reads_without_error() {
        let t: T = serde_json::from_str(
            r#"{"a": "12", "x": {"deep": [1, {"a": 2}]}, "list": [{"a": 1}, "s", 3, null, [], {"a": true}]}"#,
        )
        .unwrap();
        assert_eq!(t.a.n(), Some(12));
        assert_eq!(t.list.0.len(), 6);
        assert!(t.list.0[0].present && !t.list.0[1].present);
        assert_eq!(t.list.0[5].a.b(), Some(true));
        for odd in [
            "1",
            "\"x\"",
            "null",
            "[1,2]",
            r#"{"list": {"a": 1}, "a": [1]}"#,
        ] {
            let t: T = serde_json::from_str(odd).unwrap();
            assert!(t.list.0.is_empty() && t.a.s().is_none(), "{odd}");
        }
        let dup: T = serde_json::from_str(r#"{"a": 1, "a": "2"}"#).unwrap();
        assert_eq!(
            dup.a.s().as_deref(),
            Some("2"),
            "the last occurrence wins, as in Value"
        );
        assert!(serde_json::from_str::<T>("{\"a\": ").is_err());
    }

    #[test]
    fn scalars_read_as_the_value_accessors_do() {
        let cases = [
            "1",
            "\"1\"",
            "\" 7 \"",
            "1.9",
            "true",
            "false",
            "0",
            "\"true\"",
            "null",
            "[]",
            "{}",
            "\"x\"",
            "18446744073709551615",
        ];
        for c in cases {
            let v: serde_json::Value = serde_json::from_str(&format!("{{\"k\": {c}}}")).unwrap();
            let s: Scalar = serde_json::from_str(c).unwrap();
            assert_eq!(s.s(), super::super::s(&v, "k"), "{c}");
            assert_eq!(s.n(), super::super::n(&v, "k"), "{c}");
            assert_eq!(s.b(), super::super::b(&v, "k"), "{c}");
        }
    }
}

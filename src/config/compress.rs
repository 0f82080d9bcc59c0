//! A route's `compress:` (docs/configuration.md, Compression): `true`, or a map
//! of `algorithms`, `min_size`, `types` and `level`. Read here from what the
//! user wrote into a [`CompressConfig`]; every value is checked with its position.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::ConfigError;
use super::locate::join;
use super::raw::S;
use super::units::parse_size;
use super::validate::Checker;

/// A content coding porter can produce, in its default order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Zstd,
    Brotli,
    Gzip,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];

    /// The `Content-Encoding` token, also the name in `algorithms` and metric labels.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The fast levels used when the configuration names none: a proxy compresses
    /// on every request. gzip 2, not nginx's default 1: zlib-rs's level 1 is a
    /// looser strategy than zlib's (ratio 0.42 against 0.35 on the benchmark's
    /// text), and its level 2 compresses better than zlib's level 1 (0.33) for
    /// less CPU (docs/benchmarks.md, Compression).
    pub fn default_level(self) -> u32 {
        match self {
            Encoding::Zstd => 3,
            Encoding::Brotli => 3,
            Encoding::Gzip => 2,
        }
    }

    /// The levels each library accepts.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Encoding::Zstd => 1..=19,
            Encoding::Brotli => 0..=11,
            Encoding::Gzip => 1..=9,
        }
    }

    fn parse(text: &str) -> Option<Encoding> {
        Encoding::ALL.into_iter().find(|e| e.token() == text)
    }
}

/// The media types compressed when `types` is not set: text, JSON, JavaScript,
/// XML, SVG and WebAssembly (already-compressed images, video, archives and
/// fonts gain nothing).
pub(crate) const DEFAULT_TYPES: [&str; 9] = [
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/x-javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressConfig {
    /// In the order of preference (default zstd, br, gzip); never empty.
    pub algorithms: Vec<Encoding>,
    /// Responses whose Content-Length is below this are sent as they are.
    pub min_size: u64,
    /// Lower-case `type/subtype`, `type/*` or `type/*+suffix` patterns.
    pub types: Vec<String>,
    /// The level of each algorithm, by its index in [`Encoding::ALL`].
    pub levels: [u32; 3],
}

impl Default for CompressConfig {
    fn default() -> CompressConfig {
        CompressConfig {
            algorithms: Encoding::ALL.to_vec(),
            min_size: 1024,
            types: DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            levels: Encoding::ALL.map(Encoding::default_level),
        }
    }
}

impl CompressConfig {
    pub fn level(&self, encoding: Encoding) -> u32 {
        self.levels[encoding as usize]
    }
}

/// `compress: true | false | { ... }` as written.
#[derive(Debug)]
pub(crate) enum RawCompress {
    On(bool),
    Settings(Box<RawCompressSettings>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompressSettings {
    pub algorithms: Option<S<Vec<S<String>>>>,
    pub min_size: Option<S<String>>,
    pub types: Option<S<Vec<S<String>>>>,
    pub level: Option<S<RawLevel>>,
}

/// `level: 5` (every algorithm) or `level: { gzip: 5, br: 4, zstd: 3 }`.
#[derive(Debug)]
pub(crate) enum RawLevel {
    All(u64),
    Each(Box<RawLevels>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLevels {
    pub gzip: Option<S<u64>>,
    pub br: Option<S<u64>>,
    pub zstd: Option<S<u64>>,
}

// Hand-written rather than `#[serde(untagged)]`: a map keeps serde's own errors
// (an unknown field named, with its position) instead of "did not match any variant".
impl<'de> Deserialize<'de> for RawCompress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCompress;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a map of algorithms, min_size, types and level")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawCompress, E> {
                Ok(RawCompress::On(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawCompress, A::Error> {
                RawCompressSettings::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|s| RawCompress::Settings(Box::new(s)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a level for every algorithm, or a map of gzip, br and zstd levels")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawLevel, E> {
                Ok(RawLevel::All(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawLevel, E> {
                u64::try_from(v).map(RawLevel::All).map_err(|_| E::custom("a level is not negative"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawLevel, A::Error> {
                RawLevels::deserialize(de::value::MapAccessDeserializer::new(map)).map(|l| RawLevel::Each(Box::new(l)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `None` for `compress: false`.
pub(crate) fn compress(
    check: &Checker,
    prefix: &str,
    raw: &S<RawCompress>,
) -> Result<Option<CompressConfig>, ConfigError> {
    let settings = match &raw.value {
        RawCompress::On(false) => return Ok(None),
        RawCompress::On(true) => return Ok(Some(CompressConfig::default())),
        RawCompress::Settings(settings) => settings,
    };
    let field = |name: &str| join(prefix, name);
    let mut config = CompressConfig::default();
    if let Some(list) = &settings.algorithms {
        let mut algorithms = Vec::new();
        for (i, name) in list.value.iter().enumerate() {
            let at = format!("{}[{i}]", field("algorithms"));
            let Some(encoding) = Encoding::parse(name.value.trim()) else {
                let msg = format!("unknown algorithm {:?}: use zstd, br or gzip", name.value);
                return Err(check.err(name.referenced, &at, msg));
            };
            if algorithms.contains(&encoding) {
                return Err(check.err(name.referenced, &at, format!("{} is listed twice", encoding.token())));
            }
            algorithms.push(encoding);
        }
        if algorithms.is_empty() {
            let msg = "an empty list compresses nothing: name at least one of zstd, br, gzip (or compress: false)";
            return Err(check.err(list.referenced, &field("algorithms"), msg));
        }
        config.algorithms = algorithms;
    }
    if let Some(size) = &settings.min_size {
        config.min_size = check.value(size, &field("min_size"), parse_size)?;
    }
    if let Some(list) = &settings.types {
        let mut types = Vec::new();
        for (i, pattern) in list.value.iter().enumerate() {
            let at = format!("{}[{i}]", field("types"));
            types.push(check.value(pattern, &at, parse_type_pattern)?);
        }
        if types.is_empty() {
            let msg = "an empty list compresses nothing: name media types (or compress: false)";
            return Err(check.err(list.referenced, &field("types"), msg));
        }
        config.types = types;
    }
    if let Some(level) = &settings.level {
        let mut set = |encoding: Encoding, value: &S<u64>, at: &str| {
            let range = encoding.levels();
            match u32::try_from(value.value).ok().filter(|v| range.contains(v)) {
                Some(v) => {
                    config.levels[encoding as usize] = v;
                    Ok(())
                }
                None => {
                    let msg = format!(
                        "{} level {} is out of range {}..={}",
                        encoding.token(),
                        value.value,
                        range.start(),
                        range.end()
                    );
                    Err(check.err(value.referenced, at, msg))
                }
            }
        };
        let at = field("level");
        match &level.value {
            RawLevel::All(n) => {
                let value = S { value: *n, referenced: level.referenced, defined: level.defined };
                // One number for all: each algorithm in use must accept it.
                for encoding in config.algorithms.clone() {
                    set(encoding, &value, &at)?;
                }
            }
            RawLevel::Each(each) => {
                for (encoding, value) in
                    [(Encoding::Gzip, &each.gzip), (Encoding::Brotli, &each.br), (Encoding::Zstd, &each.zstd)]
                {
                    if let Some(value) = value {
                        set(encoding, value, &join(&at, encoding.token()))?;
                    }
                }
            }
        }
    }
    Ok(Some(config))
}

/// `type/subtype`, `type/*` or `type/*+suffix`, lower-cased.
fn parse_type_pattern(text: &str) -> Result<String, String> {
    let pattern = text.trim().to_ascii_lowercase();
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    let valid = match pattern.split_once('/') {
        Some((kind, "*")) => token(kind),
        Some((kind, sub)) => match sub.strip_prefix("*+") {
            Some(suffix) => token(kind) && token(suffix),
            None => token(kind) && token(sub),
        },
        None => false,
    };
    if !valid {
        return Err(format!("{text:?} is not a media type: use type/subtype, type/* or type/*+suffix"));
    }
    Ok(pattern)
}

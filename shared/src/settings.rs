//! Layered settings: defaults in code (a YAML string per service), then `config/base.yaml` and
//! `config/$PARLEY_ENV.yaml` if present (the folder is `$PARLEY_CONFIG_DIR`, default `config`),
//! then `PARLEY__SECTION__KEY` environment variables, then the ops contract variables
//! (`DATABASE_URL`, `REDIS_URL`, `JWT_SECRET`, `API_PORT`, `SOCKET_PORT`, …) which win.
//! Any failure is one line naming the setting; a key no setting reads (a misspelt
//! `PARLEY__DATABASE__POOLSIZE`) is returned as [`Unread`] for the service to warn about.

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A setting that is missing or invalid. Its `Display` is the one line start-up prints.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(pub String);

/// Load settings of type `T`, and the keys given that none of them reads.
///
/// `defaults` is YAML; `env_map` lists `(ENV_VAR, "section.key")` pairs honoured as-is.
pub fn load<T: DeserializeOwned>(
    defaults: &str,
    env_map: &[(&str, &str)],
) -> Result<(T, Unread), SettingsError> {
    let dir = std::env::var("PARLEY_CONFIG_DIR").unwrap_or_else(|_| "config".into());
    let env = std::env::var("PARLEY_ENV").unwrap_or_else(|_| "local".into());
    let mut builder = Config::builder()
        .add_source(File::from_str(defaults, FileFormat::Yaml))
        .add_source(File::with_name(&format!("{dir}/base")).required(false))
        .add_source(File::with_name(&format!("{dir}/{env}")).required(false))
        .add_source(
            Environment::with_prefix("PARLEY")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
    for (var, key) in env_map {
        if let Ok(value) = std::env::var(var) {
            builder = builder
                .set_override(*key, value)
                .map_err(|e| SettingsError(format!("{var}: {e}")))?;
        }
    }
    let config = builder.build().map_err(|e| SettingsError(e.to_string()))?;
    deserialize(config, defaults).map_err(|e| {
        // Name the environment variable when the failing key is one of the ops contract.
        let text = e.to_string();
        let named = env_map
            .iter()
            .find(|(_, key)| text.contains(key))
            .map(|(var, key)| format!("{var} ({key}): {text}"));
        SettingsError(named.unwrap_or(text))
    })
}

/// `T` from `config`, noting the keys it does not read, each with the key of `defaults` it
/// most resembles.
fn deserialize<T: DeserializeOwned>(
    config: Config,
    defaults: &str,
) -> Result<(T, Unread), config::ConfigError> {
    let mut unread = Vec::new();
    let settings = serde_ignored::deserialize(config, |path| unread.push(path.to_string()))?;
    let known = known_keys(defaults);
    let unread = unread
        .into_iter()
        .map(|key| UnreadKey {
            suggestion: resembling(&key, &known),
            key,
        })
        .collect();
    Ok((settings, Unread(unread)))
}

/// Keys given (in a config file or a `PARLEY__SECTION__KEY` variable) that no setting reads.
/// A service logs them at start ([`Unread::warn`]) rather than refuse to start: one environment
/// often serves both services, and each ignores the other's sections.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unread(pub Vec<UnreadKey>);

/// One key no setting reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadKey {
    /// Dotted and lower-case, as `PARLEY__DATABASE__POOLSIZE` becomes `database.poolsize`.
    pub key: String,
    /// The setting it most resembles (`database.pool_size`), if one is close.
    pub suggestion: Option<String>,
}

impl Unread {
    /// The keys that `other` does not read either: what neither of two services sharing an
    /// environment reads (the all-in-one). A service that has no such section reports the whole
    /// section (`database`), the other the key in it (`database.poolsize`): the key stands.
    pub fn and(self, other: &Unread) -> Unread {
        let within = |inner: &str, outer: &str| {
            inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        let mut unread: Vec<UnreadKey> = Vec::new();
        for mine in &self.0 {
            for theirs in &other.0 {
                let key = if within(&mine.key, &theirs.key) {
                    mine
                } else if within(&theirs.key, &mine.key) {
                    theirs
                } else {
                    continue;
                };
                if !unread.contains(key) {
                    unread.push(key.clone());
                }
            }
        }
        Unread(unread)
    }

    /// One warning per key, naming `service`.
    pub fn warn(&self, service: &str) {
        for UnreadKey { key, suggestion } in &self.0 {
            match suggestion {
                Some(suggestion) => tracing::warn!(
                    setting = %key, %suggestion,
                    "`{key}` is not a setting of {service} and is ignored: did you mean `{suggestion}`?"
                ),
                None => tracing::warn!(
                    setting = %key,
                    "`{key}` is not a setting of {service} and is ignored"
                ),
            }
        }
    }
}

/// Every dotted key of the YAML `defaults`.
fn known_keys(defaults: &str) -> Vec<String> {
    fn walk(prefix: &str, value: config::Value, into: &mut Vec<String>) {
        match value.into_table() {
            Ok(table) => {
                for (key, value) in table {
                    let path = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, value, into);
                }
            }
            Err(_) => into.push(prefix.to_owned()),
        }
    }
    let mut keys = Vec::new();
    let parsed = Config::builder()
        .add_source(File::from_str(defaults, FileFormat::Yaml))
        .build();
    if let Ok(config) = parsed {
        walk("", config.cache, &mut keys);
    }
    keys
}

/// The known key closest to `key` in spelling, when it is close: the same but for `_`, or at
/// most two edits away.
fn resembling(key: &str, known: &[String]) -> Option<String> {
    let bare = |s: &str| s.replace(['_', '-'], "").to_lowercase();
    known
        .iter()
        .map(|k| {
            let distance = if bare(k) == bare(key) {
                0
            } else {
                edit_distance(k, key)
            };
            (distance, k)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance between `a` and `b`, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A list setting given either as a YAML list or as one comma-separated string (what an
/// environment variable can hold): `a, b` and `[a, b]` are the same; blanks are dropped.
/// Use with `#[serde(deserialize_with = "shared::settings::list_or_csv")]`.
pub fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &str =
        "database:\n  url: postgres\n  pool_size: 10\nlimits:\n  page_max: 200\n";

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        database: Database,
        limits: Limits,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Database {
        url: String,
        pool_size: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Limits {
        page_max: u32,
    }

    fn unread_of(given: &str) -> Unread {
        let config = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Yaml))
            .add_source(File::from_str(given, FileFormat::Yaml))
            .build()
            .unwrap();
        let (_, unread): (Sample, _) = deserialize(config, DEFAULTS).unwrap();
        unread
    }

    #[test]
    fn a_misspelt_key_is_unread_with_the_setting_it_resembles() {
        let unread = unread_of("database:\n  poolsize: 50\nlimits:\n  page_mx: 5\n");
        let mut keys: Vec<(String, Option<String>)> = unread
            .0
            .into_iter()
            .map(|k| (k.key, k.suggestion))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                (
                    "database.poolsize".into(),
                    Some("database.pool_size".into())
                ),
                ("limits.page_mx".into(), Some("limits.page_max".into())),
            ]
        );
    }

    #[test]
    fn a_section_like_none_is_unread_whole_without_a_suggestion_and_known_keys_are_read() {
        let unread = unread_of("database:\n  pool_size: 50\npresence:\n  ttl_secs: 5\n");
        assert_eq!(
            unread.0,
            [UnreadKey {
                key: "presence".into(),
                suggestion: None
            }]
        );
    }

    #[test]
    fn two_services_sharing_settings_leave_unread_only_what_neither_reads() {
        let key = |key: &str| UnreadKey {
            key: key.into(),
            suggestion: None,
        };
        let api = Unread(vec![
            key("presence"),
            key("databse"),
            key("database.poolsize"),
        ]);
        let relay = Unread(vec![
            key("presence.ttl_sec"),
            key("databse"),
            key("database"),
            key("socket.port"),
        ]);
        assert_eq!(
            api.and(&relay).0,
            [
                key("presence.ttl_sec"),
                key("databse"),
                key("database.poolsize")
            ]
        );
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("pool_size", "pool_size"), 0);
        assert_eq!(edit_distance("page_max", "page_mx"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

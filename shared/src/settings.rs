//! Layered settings: defaults in code (a YAML string per service), then `config/base.yaml` and
//! `config/$PARLEY_ENV.yaml` if present (the folder is `$PARLEY_CONFIG_DIR`, default `config`),
//! then `PARLEY__SECTION__KEY` environment variables, then the ops contract variables
//! (`DATABASE_URL`, `REDIS_URL`, `JWT_SECRET`, `API_PORT`, `SOCKET_PORT`, …) which win.
//! Any failure is one line naming the setting.

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A setting that is missing or invalid. Its `Display` is the one line start-up prints.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(pub String);

/// Load settings of type `T`.
///
/// `defaults` is YAML; `env_map` lists `(ENV_VAR, "section.key")` pairs honoured as-is.
pub fn load<T: DeserializeOwned>(
    defaults: &str,
    env_map: &[(&str, &str)],
) -> Result<T, SettingsError> {
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
    config.try_deserialize::<T>().map_err(|e| {
        // Name the environment variable when the failing key is one of the ops contract.
        let text = e.to_string();
        let named = env_map
            .iter()
            .find(|(_, key)| text.contains(key))
            .map(|(var, key)| format!("{var} ({key}): {text}"));
        SettingsError(named.unwrap_or(text))
    })
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

//! The all-in-one's defaults. Each service keeps its own typed settings and loader; this module
//! only fills in what a machine with nothing installed lacks, when the variable is unset:
//!
//! | variable | all-in-one default |
//! |---|---|
//! | `DATABASE_URL` | `sqlite://$PARLEY_DATA_DIR/parley.db` (`PARLEY_DATA_DIR` default `./data`); `:memory:` with `--ephemeral` |
//! | `REDIS_URL` | unset: the in-process bus |
//! | `JWT_SECRET` | a random secret kept in `$PARLEY_DATA_DIR/jwt-secret` (so tokens survive restarts); a fresh one with `--ephemeral` |
//! | `ATTACHMENTS_URL` | `file://$PARLEY_DATA_DIR/attachments` (absolute); a temporary directory removed at exit with `--ephemeral` |
//! | `API_PORT` / `SOCKET_PORT` | 3000 / 5000; `0` (any free port) with `--ephemeral` |
//! | `CORS_ALLOWED_ORIGINS` | the loopback origins on any port (`http://localhost:*`, `http://127.0.0.1:*`, `http://[::1]:*`): a dev server on this machine just works |
//!
//! The data directory, when created here, is its owner's alone (0700); so are the secret and the
//! database files (0600).

use anyhow::Context;
use shared::settings::SettingsError;
use std::path::{Path, PathBuf};

/// Command-line options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Throw-away mode for test suites: in-memory database, free ports, fresh secret, exit when
    /// stdin closes.
    pub ephemeral: bool,
}

impl Options {
    /// Parse `--ephemeral` (or `PARLEY_EPHEMERAL=1`); anything else is an error.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut options = Options {
            ephemeral: std::env::var("PARLEY_EPHEMERAL").is_ok_and(|v| v == "1" || v == "true"),
        };
        for arg in args {
            match arg.as_str() {
                "--ephemeral" => options.ephemeral = true,
                other => return Err(format!("unknown argument {other:?} (try --ephemeral)")),
            }
        }
        Ok(options)
    }
}

/// Which bus links the two services.
#[derive(Debug, Clone)]
pub enum BusChoice {
    InProcess,
    Redis { url: String, prefix: String },
}

/// Both services' settings and the bus.
#[derive(Debug, Clone)]
pub struct AllInOneSettings {
    pub api: api_server::settings::Settings,
    pub relay: socket_server::settings::Settings,
    pub bus: BusChoice,
    /// The database, for the start-up line (no password).
    pub database_label: String,
}

/// The variables `--ephemeral` gives throw-away defaults when they are unset.
const EPHEMERAL_DEFAULTS: [&str; 6] = [
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET",
    "ATTACHMENTS_URL",
    "API_PORT",
    "SOCKET_PORT",
];

/// Set the all-in-one defaults for every unset variable. Call it before any thread starts (it
/// writes the process environment).
pub fn apply_defaults(options: &Options) -> anyhow::Result<()> {
    let data_dir =
        PathBuf::from(std::env::var("PARLEY_DATA_DIR").unwrap_or_else(|_| "data".into()));
    let unset = |var: &str| std::env::var_os(var).is_none();
    if options.ephemeral {
        // Set variables win (a suite may run it on PostgreSQL and Redis): say so, since a shell
        // that exports them for something else would otherwise keep its data without a word.
        let kept: Vec<&str> = EPHEMERAL_DEFAULTS
            .into_iter()
            .filter(|var| !unset(var))
            .collect();
        if !kept.is_empty() {
            tracing::info!(
                variables = kept.join(", "),
                "--ephemeral: these variables are set and win over its defaults"
            );
        }
    }
    let uses_data_dir = ["DATABASE_URL", "JWT_SECRET", "ATTACHMENTS_URL"]
        .into_iter()
        .any(unset);
    if uses_data_dir && !options.ephemeral {
        // Owner-only when created here: it holds the database, the secret and the uploads.
        shared::owner_only::create_dir(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
    }
    if unset("DATABASE_URL") {
        let url = if options.ephemeral {
            ":memory:".to_owned()
        } else {
            format!("sqlite://{}", data_dir.join("parley.db").display())
        };
        std::env::set_var("DATABASE_URL", url);
    }
    if unset("JWT_SECRET") {
        let secret = if options.ephemeral {
            random_secret()
        } else {
            persisted_secret(&data_dir)?
        };
        std::env::set_var("JWT_SECRET", secret);
    }
    if unset("ATTACHMENTS_URL") {
        // Ephemeral: empty, a temporary directory removed at exit.
        let url = if options.ephemeral {
            String::new()
        } else {
            let dir = std::path::absolute(data_dir.join("attachments"))
                .context("resolving PARLEY_DATA_DIR")?;
            format!("file://{}", dir.display())
        };
        std::env::set_var("ATTACHMENTS_URL", url);
    }
    if options.ephemeral {
        for var in ["API_PORT", "SOCKET_PORT"] {
            if unset(var) {
                std::env::set_var(var, "0");
            }
        }
    }
    Ok(())
}

/// Load both services' settings (after [`apply_defaults`]), warning of the keys given that
/// neither reads.
pub fn load() -> Result<AllInOneSettings, SettingsError> {
    let (mut api, api_unread) = api_server::settings::Settings::load()?;
    let (mut relay, relay_unread) = socket_server::settings::Settings::load()?;
    api_unread.and(&relay_unread).warn("parley");
    // Unset (neither the variable nor a config file): the loopback origins, for both services.
    api.cors
        .allowed_origins
        .get_or_insert_with(shared::net::AllowedOrigins::loopback);
    relay
        .cors
        .allowed_origins
        .get_or_insert_with(shared::net::AllowedOrigins::loopback);
    let bus = match std::env::var("REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => BusChoice::Redis {
            url,
            prefix: api.redis.prefix.clone(),
        },
        _ => BusChoice::InProcess,
    };
    let url = &api.database.url;
    let database_label = if url.starts_with("postgres") {
        "postgresql".to_owned()
    } else {
        url.clone()
    };
    Ok(AllInOneSettings {
        api,
        relay,
        bus,
        database_label,
    })
}

fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The secret in `dir/jwt-secret`, created (owner-only) when missing.
fn persisted_secret(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(secret) if secret.trim().len() >= shared::auth::JwtKeys::MIN_SECRET_LEN => {
            return Ok(secret.trim().to_owned())
        }
        Ok(_) => anyhow::bail!(
            "{} is too short; delete it to get a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    shared::owner_only::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secret = random_secret();
    let mut file = shared::owner_only::file_options()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ephemeral_is_accepted_as_an_argument() {
        assert!(
            Options::parse(["--ephemeral".to_owned()])
                .unwrap()
                .ephemeral
        );
        assert!(Options::parse(["--port".to_owned()]).is_err());
    }

    #[test]
    fn the_persisted_secret_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("parley-secret-{}", uuid::Uuid::new_v4()));
        let first = persisted_secret(&dir).unwrap();
        assert_eq!(persisted_secret(&dir).unwrap(), first);
        assert!(first.len() >= shared::auth::JwtKeys::MIN_SECRET_LEN);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! The command line every Parley binary shares: `--help` (`-h`) and `--version` (`-V`). The
//! services take no other argument — they are configured by environment variables and config
//! files (`docs/operations.md`) — so anything else is refused with exit code 2.

/// What `main` should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Start serving.
    Run,
    /// Print `text` on stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// Print `text` on stderr and exit 2 (an unknown argument).
    Refuse(String),
}

/// What a binary says about itself in `--help`.
pub struct About<'a> {
    /// The binary's name, e.g. `api-server`.
    pub name: &'a str,
    pub version: &'a str,
    /// One line: what it is.
    pub summary: &'a str,
    /// Extra arguments it takes, as `(flag, meaning)` (the services take none).
    pub options: &'a [(&'a str, &'a str)],
    /// The environment variables of its ops contract, as `(variable, setting)`.
    pub env: &'a [(&'a str, &'a str)],
}

impl About<'_> {
    /// Act on the process's arguments: `Ok` with them when the binary should start; otherwise
    /// `--help` / `--version` / the refusal is printed and `Err` holds the exit code (0 or 2).
    pub fn handle_args(&self) -> Result<Vec<String>, std::process::ExitCode> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match self.command(&args) {
            Command::Run => Ok(args),
            Command::Print(text) => {
                print!("{text}");
                Err(std::process::ExitCode::SUCCESS)
            }
            Command::Refuse(text) => {
                eprint!("{text}");
                Err(std::process::ExitCode::from(2))
            }
        }
    }

    /// Bad settings: one line on stderr, exit code 2.
    pub fn refuse_settings(&self, error: impl std::fmt::Display) -> std::process::ExitCode {
        self.last_words(format_args!("{error}"));
        std::process::ExitCode::from(2)
    }

    /// The exit code of a run: 0, or one line on stderr (the whole cause chain) and 1.
    pub fn finish(&self, result: anyhow::Result<()>) -> std::process::ExitCode {
        match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                self.last_words(format_args!("{error:#}"));
                std::process::ExitCode::FAILURE
            }
        }
    }

    /// The one line a binary exits with on stderr: `name: message`, or, when the logs are JSON
    /// (`shared::telemetry::json_lines`), an `ERROR` line of the same shape as the others.
    /// Written here rather than through `tracing`, so that no `RUST_LOG` filters it out.
    fn last_words(&self, message: std::fmt::Arguments<'_>) {
        if crate::telemetry::json_lines() {
            let line = serde_json::json!({
                "timestamp": chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "fields": { "message": message.to_string() },
                "target": self.name,
            });
            eprintln!("{line}");
        } else {
            eprintln!("{}: {message}", self.name);
        }
    }

    /// `--help` / `--version` / anything else among `args` (the program name excluded); an
    /// argument listed in `options` is left to the caller.
    pub fn command(&self, args: &[String]) -> Command {
        for arg in args {
            match arg.as_str() {
                "-h" | "--help" => return Command::Print(self.help()),
                "-V" | "--version" => {
                    return Command::Print(format!("{} {}\n", self.name, self.version))
                }
                known if self.options.iter().any(|(flag, _)| *flag == known) => {}
                other => {
                    return Command::Refuse(format!(
                        "{}: unknown argument {other:?} (see {} --help)\n",
                        self.name, self.name
                    ))
                }
            }
        }
        Command::Run
    }

    fn help(&self) -> String {
        let mut text = format!(
            "{} {} — {}\n\nUSAGE:\n    {} [OPTIONS]\n\nOPTIONS:\n",
            self.name, self.version, self.summary, self.name
        );
        let mut options: Vec<(&str, &str)> = self.options.to_vec();
        options.push(("-h, --help", "print this help and exit"));
        options.push(("-V, --version", "print the version and exit"));
        for (flag, meaning) in options {
            text.push_str(&format!("    {flag:<16} {meaning}\n"));
        }
        if !self.env.is_empty() {
            text.push_str("\nENVIRONMENT (each overrides its setting):\n");
            for (variable, setting) in self.env {
                text.push_str(&format!("    {variable:<20} {setting}\n"));
            }
            text.push_str(
                "    PARLEY__SECTION__KEY any other setting (e.g. PARLEY__LIMITS__SENDS_PER_SEC)\n",
            );
        }
        text.push_str(
            "\nEvery setting, its default and the exit codes: docs/operations.md.\n\
             Exit codes: 0 stopped cleanly, 1 failed while starting or serving, 2 bad \
             arguments or settings.\n",
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about() -> About<'static> {
        About {
            name: "relay",
            version: "1.2.3",
            summary: "a test binary",
            options: &[("--ephemeral", "in memory")],
            env: &[("SOCKET_PORT", "socket.port")],
        }
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn help_and_version_are_printed_and_anything_unknown_refused() {
        let about = about();
        assert_eq!(about.command(&args(&[])), Command::Run);
        assert_eq!(about.command(&args(&["--ephemeral"])), Command::Run);
        assert_eq!(
            about.command(&args(&["-V"])),
            Command::Print("relay 1.2.3\n".into())
        );
        let Command::Print(help) = about.command(&args(&["--help"])) else {
            panic!("--help prints");
        };
        for needle in [
            "USAGE",
            "--ephemeral",
            "--version",
            "SOCKET_PORT",
            "docs/operations.md",
        ] {
            assert!(help.contains(needle), "{needle} missing from\n{help}");
        }
        assert!(matches!(
            about.command(&args(&["--port", "1"])),
            Command::Refuse(_)
        ));
    }
}

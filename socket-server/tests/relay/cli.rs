//! The relay binary's command line: `--help` / `--version` print and exit 0, an unknown argument
//! exits 2, and a bad setting stops start-up with one line and exit code 2.

use std::process::Command;

fn relay(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("running the socket-server binary")
}

#[test]
fn help_and_version_print_and_exit_0_and_unknown_arguments_exit_2() {
    let help = relay(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("SOCKET_PORT"));
    let version = relay(&["-V"], &[]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("socket-server "));
    let unknown = relay(&["--port", "1"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_and_exit_code_2() {
    let output = relay(&[], &[("JWT_SECRET", "short"), ("RUST_LOG", "off")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("JWT_SECRET"), "{stderr}");
}

#[test]
fn with_json_logs_the_refusal_is_a_json_error_line_whatever_rust_log_filters() {
    let output = relay(
        &[],
        &[
            ("JWT_SECRET", "short"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "off"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line: serde_json::Value = serde_json::from_str(stderr.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {stderr}"));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["target"], "socket-server", "{line}");
    let message = line["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("JWT_SECRET"), "{line}");
}

#[test]
fn a_rust_log_that_does_not_parse_is_reported_not_silently_replaced() {
    let output = relay(
        &[],
        &[("JWT_SECRET", "short"), ("RUST_LOG", "info,parley=loud")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RUST_LOG is not a valid filter") && stderr.contains("parley=loud"),
        "{stderr}"
    );
}

#[test]
fn text_log_lines_written_to_a_pipe_carry_no_colour_codes() {
    // A WARN line (the refused filter) and the refusal, to stderr, a pipe here
    let output = relay(
        &[],
        &[("JWT_SECRET", "short"), ("RUST_LOG", "info,parley=loud")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "colour codes in {stderr:?}");
}

#[test]
fn an_api_url_that_is_not_an_http_base_url_is_a_bad_setting() {
    for url in ["https://api.example", "notaurl"] {
        let output = relay(
            &[],
            &[
                ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
                ("API_URL", url),
                ("RUST_LOG", "off"),
            ],
        );
        assert_eq!(output.status.code(), Some(2), "{url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("API_URL"), "{stderr}");
    }
}

#[test]
fn cors_allowed_origins_is_a_comma_separated_list_checked_at_start_up() {
    let output = relay(
        &[],
        &[
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://app.example, ftp://files.example",
            ),
            ("RUST_LOG", "off"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ftp://files.example"), "{stderr}");
}

//! Builds the reference web app (`clients/web/`) that `cargo run` serves on the API's port, and
//! embeds it in the binary (`src/web.rs`): `npm ci` when the lockfile changed, then the app's
//! bundle (esbuild) into `OUT_DIR/web`. Cargo reruns this only when the app's or the SDK's
//! sources change, so an unchanged tree costs no npm work.
//!
//! Without npm (or when the install or the bundle fails) the build goes on with a
//! `cargo:warning` saying what is needed, and the binary serves one page that says so; the API
//! and the relay work either way, and every later build tries again until the app builds.
//! `PARLEY_SKIP_WEB=1` skips npm on purpose.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the app's build reads: a change to any of them rebuilds it.
const INPUTS: &[&str] = &[
    "clients/web/src",
    "clients/web/index.html",
    "clients/web/build.mjs",
    "clients/web/package.json",
    "clients/web/package-lock.json",
    "clients/js/src",
    "clients/js/package.json",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for input in INPUTS {
        if root.join(input).exists() {
            println!("cargo:rerun-if-changed={input}");
        }
    }
    println!("cargo:rerun-if-env-changed=PARLEY_SKIP_WEB");

    let dist = out.join("web");
    let built = match build_app(&root.join("clients/web"), &dist) {
        Ok(()) => true,
        Err(why) => {
            println!("cargo:warning=the web app is not built: {why}");
            // A path that never exists: cargo runs this script again on every build until the
            // app builds (npm installed later, the registry reachable again).
            println!("cargo:rerun-if-changed=clients/web/.retry-until-built");
            placeholder(&dist, &why);
            false
        }
    };
    embed(&dist, built, &out.join("web_assets.rs"));
}

fn build_app(app: &Path, dist: &Path) -> Result<(), String> {
    if std::env::var_os("PARLEY_SKIP_WEB").is_some_and(|v| v == "1") {
        return Err("PARLEY_SKIP_WEB=1".into());
    }
    if !app.join("package.json").exists() {
        return Err(format!("{} is missing", app.display()));
    }
    if Command::new("npm").arg("--version").output().is_err() {
        return Err("npm is needed to build it: install Node.js 20+ and npm \
                    (apt-get install nodejs npm), then build again"
            .into());
    }
    if needs_install(app) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(app),
            "npm ci in clients/web",
        )?;
    }
    let _ = std::fs::remove_dir_all(dist);
    run(
        Command::new("node")
            .arg("build.mjs")
            .arg(dist)
            .current_dir(app),
        "bundling clients/web (node build.mjs)",
    )
}

/// `npm ci` is needed when there is no `node_modules` or the lockfile is newer than the last
/// install (npm writes `node_modules/.package-lock.json` on every install).
fn needs_install(app: &Path) -> bool {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(app.join("package-lock.json")),
        modified(app.join("node_modules/.package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => lock > installed,
        _ => true,
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: could not start: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let head: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(8)
        .collect();
    Err(format!(
        "{what} failed ({}): {}",
        output.status,
        head.join(" | ")
    ))
}

/// The page served when the app could not be built.
fn placeholder(dist: &Path, why: &str) {
    let _ = std::fs::remove_dir_all(dist);
    std::fs::create_dir_all(dist).expect("creating OUT_DIR/web");
    let why = why
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>Parley</title>\
         <h1>Parley is running</h1>\
         <p>The API (this port) and the relay are up, but the web app was not built: {why}.</p>\
         <p>Install Node.js 20+ and npm, then run <code>cargo run</code> again.</p>"
    );
    std::fs::write(dist.join("index.html"), page).expect("writing the placeholder page");
}

/// Write `web_assets.rs`: every file under `dist` as an `include_bytes!`.
fn embed(dist: &Path, built: bool, target: &Path) {
    let mut files = Vec::new();
    collect(dist, dist, &mut files);
    files.sort();
    let mut code = format!("pub(super) static BUILT: bool = {built};\n");
    code.push_str("pub(super) static ASSETS: &[super::Asset] = &[\n");
    for (url, file) in files {
        code.push_str(&format!(
            "    super::Asset {{ path: {url:?}, bytes: include_bytes!({file:?}) }},\n",
            file = file.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(target, code).expect("writing web_assets.rs");
}

fn collect(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(base, &path, files);
        } else if let Ok(relative) = path.strip_prefix(base) {
            let url = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
            files.push((url, path));
        }
    }
}

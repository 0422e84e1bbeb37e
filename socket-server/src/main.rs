//! The relay binary: settings, telemetry, `Application::build`, serve until SIGTERM / Ctrl-C.

use socket_server::settings::Settings;
use socket_server::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("info");
    let settings = Settings::load()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(shared::shutdown::signal()).await
}

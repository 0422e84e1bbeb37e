use api_server::settings::Settings;
use api_server::startup::Application;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init("info,api_server=info");
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("api-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = async {
        let app = Application::build(settings).await?;
        app.run_until_stopped(shared::shutdown::signal()).await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

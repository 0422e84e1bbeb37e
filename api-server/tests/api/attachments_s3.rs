//! The two storages the attachment tests run on: a directory of the test's own, and a real
//! S3-protocol server (`s3s` over `s3s-fs`, serving a temporary directory) started on a free
//! loopback port by the test itself, with signed requests (access key and secret).

use api_server::settings::AttachmentSettings;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use secrecy::SecretString;

const ACCESS_KEY: &str = "parley-test-access";
const SECRET_KEY: &str = "parley-test-secret-key-0123456789";
const BUCKET: &str = "parley-attachments";

/// Which storage a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Storage {
    Filesystem,
    S3,
}

/// A storage for one test; dropping it stops the S3 server and removes the directories.
pub struct TestStorage {
    pub settings: AttachmentSettings,
    _root: tempfile::TempDir,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestStorage {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl Storage {
    pub async fn start(self) -> TestStorage {
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut settings = AttachmentSettings::default();
        match self {
            Storage::Filesystem => {
                settings.url = format!("file://{}", root.path().join("objects").display());
                TestStorage {
                    settings,
                    _root: root,
                    server: None,
                }
            }
            Storage::S3 => {
                std::fs::create_dir_all(root.path().join(BUCKET)).expect("the bucket directory");
                let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs over the directory");
                let mut builder = S3ServiceBuilder::new(fs);
                builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = builder.build();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("binding the S3 server");
                let port = listener.local_addr().expect("its address").port();
                let server = tokio::spawn(async move {
                    let http = ConnBuilder::new(TokioExecutor::new());
                    while let Ok((socket, _)) = listener.accept().await {
                        let conn = http
                            .serve_connection(TokioIo::new(socket), service.clone())
                            .into_owned();
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                });
                settings.url = format!("s3://{BUCKET}/uploads");
                settings.s3_endpoint = Some(format!("http://127.0.0.1:{port}"));
                settings.s3_region = Some("us-east-1".into());
                settings.s3_access_key_id = Some(ACCESS_KEY.into());
                settings.s3_secret_access_key = Some(SecretString::from(SECRET_KEY));
                TestStorage {
                    settings,
                    _root: root,
                    server: Some(server),
                }
            }
        }
    }
}

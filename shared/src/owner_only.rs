//! Files and directories only their owner may read: the all-in-one's data directory, its JWT
//! secret, the SQLite database. On other systems than Unix, the platform's defaults.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::path::Path;

/// Create `dir` and its missing parents, each owner-only (0700). A directory that exists is
/// left as it is.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options whose file, when they create it, is owner-only (0600); add how it is opened.
pub fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("it exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn directories_and_files_created_are_the_owners_alone() {
        let root = std::env::temp_dir().join(format!("parley-owner-only-{}", uuid::Uuid::new_v4()));
        let dir = root.join("a").join("b");

        create_dir(&dir).expect("created");
        let file = dir.join("f");
        file_options()
            .write(true)
            .create_new(true)
            .open(&file)
            .expect("created");

        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        std::fs::remove_dir_all(root).expect("removed");
    }
}

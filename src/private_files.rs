//! Owner-only files: the data directory (the store with password hashes,
//! session and CSRF tokens; dead letters; the archive) is created `0700`
//! and every file the daemon writes `0600`.
//!
//! [`restrict_process`] sets the process umask to `077` once at daemon
//! start, so that files made by libraries (SQLite's `-wal`/`-shm`, the
//! Parquet writer) are owner-only too; [`private_dir`] and
//! [`private_file`] make a directory or file owner-only whether or not it
//! existed (a data directory left by an older version is tightened). Off
//! Unix these do nothing.

use std::io;
use std::path::Path;

/// Mode of the data directory and the directories in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files the daemon writes.
pub const FILE_MODE: u32 = 0o600;

/// Sets the process umask to `077`: everything created from now on is
/// owner-only. The daemon calls it first thing; a process that embeds the
/// daemon gets the same umask.
pub fn restrict_process() {
    #[cfg(unix)]
    {
        use nix::sys::stat::{Mode, umask};
        umask(Mode::from_bits_truncate(0o077));
    }
}

/// Creates `dir` (and missing parents) as `0700`, or takes group and other
/// access away from it when it exists.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
        }
        let meta = std::fs::metadata(dir)?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Creates `file` empty as `0600` when it does not exist, or takes group
/// and other access away from it when it does.
pub fn private_file(file: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(file)?;
        if f.metadata()?.permissions().mode() & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map(drop)
}

/// Takes group and other access away from `file` if it exists.
pub fn tighten_if_present(file: &Path) -> io::Result<()> {
    if file.exists() {
        private_file(file)
    } else {
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn new_and_existing_dirs_and_files_become_owner_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b");
        private_dir(&dir).expect("dir");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&open).expect("tighten dir");
        assert_eq!(mode(&open), 0o700);

        let f = dir.join("minewatch.db");
        private_file(&f).expect("file");
        assert_eq!(mode(&f), 0o600);
        std::fs::write(&f, b"kept").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        private_file(&f).expect("tighten file");
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).expect("read"), b"kept", "contents kept");

        let absent = dir.join("absent-wal");
        tighten_if_present(&absent).expect("absent");
        assert!(!absent.exists());
    }
}

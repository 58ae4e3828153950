//! Durable, private file writes for key material: temp file, fsync, rename, fsync directory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{b64, secrets, CryptoError};

/// Mode for files holding key material.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode for directories holding key material.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and parents) with mode 0700 if it does not exist yet.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), CryptoError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(CryptoError::io(
                "expected a directory at",
                dir,
                io::Error::from(io::ErrorKind::NotADirectory),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(CryptoError::io("inspecting", dir, e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| CryptoError::io("creating directory", dir, e))?;
    // The umask may have narrowed the mode further, but never widened it; make it exact.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| CryptoError::io("setting permissions on", dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Flushes a directory's entries (new, renamed or removed names) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CryptoError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CryptoError::io("syncing directory", dir, e))
}

/// The directory that holds `path`.
pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically with mode 0600.
///
/// The data goes to a temporary file in the same directory, which is fsynced and then
/// moved into place; the directory is fsynced afterwards. With `overwrite == false` the
/// move is a hard link, which fails with [`CryptoError::AlreadyExists`] instead of
/// replacing an existing file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), CryptoError> {
    let dir = parent_of(path);
    let tmp = temp_path(path);
    let result = write_new_file(&tmp, bytes).and_then(|()| {
        if overwrite {
            fs::rename(&tmp, path).map_err(|e| CryptoError::io("renaming into", path, e))
        } else {
            let linked = fs::hard_link(&tmp, path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    CryptoError::AlreadyExists(path.display().to_string())
                } else {
                    CryptoError::io("linking into", path, e)
                }
            });
            let _ = fs::remove_file(&tmp);
            linked
        }
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Reads a whole file into a buffer that is wiped when dropped; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, CryptoError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CryptoError::io("opening", path, e)),
    };
    let mut buf = Zeroizing::new(Vec::new());
    file.read_to_end(&mut buf)
        .map_err(|e| CryptoError::io("reading", path, e))?;
    Ok(Some(buf))
}

/// Reads a file holding one text value, trimming surrounding whitespace.
pub(crate) fn read_text_optional(path: &Path) -> Result<Option<Zeroizing<String>>, CryptoError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| CryptoError::corrupt(path, "not UTF-8"))?;
    Ok(Some(Zeroizing::new(text.trim().to_owned())))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = b64::encode(&secrets::random_bytes::<12>());
    parent_of(path).join(format!(".{name}.tmp-{suffix}"))
}

fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| CryptoError::io("creating", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CryptoError::io("writing", path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_private_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_atomic(&path, b"one", true).unwrap();
        write_atomic(&path, b"two", true).unwrap();
        assert_eq!(&**read_optional(&path).unwrap().unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn no_overwrite_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_atomic(&path, b"one", false).unwrap();
        let err = write_atomic(&path, b"two", false).unwrap_err();
        assert!(matches!(err, CryptoError::AlreadyExists(_)));
        assert_eq!(&**read_optional(&path).unwrap().unwrap(), b"one");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_dir_is_created_with_0700() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        ensure_private_dir(&nested).unwrap();
        let mode = fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DIR_MODE);
        ensure_private_dir(&nested).unwrap();
        assert!(read_optional(&nested.join("missing")).unwrap().is_none());
    }
}

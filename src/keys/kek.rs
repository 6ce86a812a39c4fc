//! The key-encryption keys as written down: a comma-separated list of base64 keys (the value of
//! `KEY_ENCRYPTION_KEY`, or the contents of a key file), and the local file made on first run.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use secrecy::SecretBox;
use zeroize::Zeroizing;

use super::encryption::KeyEncryptionKey;

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("key-encryption key file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Parses a comma-separated list of base64 32-byte keys (SPEC §5). The reason never shows key
/// material, even a malformed one.
pub fn parse_kek_list(list: &str) -> Result<Vec<KeyEncryptionKey>, String> {
    let mut keys = Vec::new();
    for (index, entry) in list.split(',').map(str::trim).enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(entry)
            .map_err(|_| format!("entry {} is not standard base64", index + 1))?;
        let key: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!(
                "entry {} is {} bytes; it must be 32 random bytes in base64 (openssl rand -base64 32)",
                index + 1,
                bytes.len()
            )
        })?;
        keys.push(SecretBox::new(Box::new(key)));
    }
    Ok(keys)
}

/// Reads the keys from the file at `path`, or generates one key there with mode 0600 when the
/// file is missing (SPEC §1).
pub fn load_or_create_file(path: &Path) -> Result<Vec<KeyEncryptionKey>, KekError> {
    let fail = |reason: String| KekError::File {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_kek_list(text.trim()).map_err(fail),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut key = Zeroizing::new([0u8; 32]);
            openssl::rand::rand_bytes(key.as_mut_slice()).map_err(|e| fail(e.to_string()))?;
            let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(*key));
            if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder).map_err(|e| fail(e.to_string()))?;
            }
            write_private_file(path, encoded.as_bytes()).map_err(|e| fail(e.to_string()))?;
            Ok(vec![SecretBox::new(Box::new(*key))])
        }
        Err(error) => Err(fail(error.to_string())),
    }
}

/// Creates the file readable by its owner only; `create_new` never overwrites a key that a
/// concurrent start-up just wrote.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

//! A guest that reads a file: it imports the WASI file system, which Cairn
//! does not offer workflows, so the upload is refused.
use cairn_sdk::{Error, Result};

fn read_secrets(path: String) -> Result<String> {
    std::fs::read_to_string(path).map_err(Error::msg)
}

cairn_sdk::workflows!(read_secrets);

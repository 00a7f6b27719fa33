//! The part of cloud-init the fake plays: reading a `#cloud-config` user data document's
//! `write_files`, so a created server's machine gets the files a real VM would.

use base64::Engine as _;
use yaml_rust2::{Yaml, YamlLoader};

/// One `write_files` entry, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteFile {
    pub path: String,
    pub content: Vec<u8>,
}

/// The `write_files` of a user data document, or why cloud-init would not have written
/// them (not `#cloud-config`, not YAML, not a mapping, an entry it cannot decode).
pub fn write_files(user_data: &str) -> Result<Vec<WriteFile>, String> {
    let first = user_data.lines().next().unwrap_or("").trim_end();
    if first != "#cloud-config" {
        return Err("user_data does not start with #cloud-config".into());
    }
    let docs = YamlLoader::load_from_str(user_data)
        .map_err(|e| format!("user_data is not valid YAML: {e}"))?;
    let Some(doc) = docs.first() else {
        return Ok(Vec::new());
    };
    if doc.as_hash().is_none() && !doc.is_null() {
        return Err("user_data is not a YAML mapping".into());
    }
    let files = match &doc["write_files"] {
        Yaml::BadValue | Yaml::Null => return Ok(Vec::new()),
        Yaml::Array(a) => a,
        _ => return Err("write_files is not a list".into()),
    };
    files
        .iter()
        .enumerate()
        .map(|(i, f)| entry(f).map_err(|e| format!("write_files[{i}]: {e}")))
        .collect()
}

fn entry(f: &Yaml) -> Result<WriteFile, String> {
    let path = f["path"].as_str().ok_or("has no path")?.trim().to_string();
    let text = match &f["content"] {
        Yaml::BadValue | Yaml::Null => String::new(),
        Yaml::String(s) => s.clone(),
        Yaml::Integer(n) => n.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        _ => return Err(format!("{path}: content is not a string")),
    };
    let encoding = f["encoding"].as_str().unwrap_or("text/plain");
    let content = match encoding {
        "text/plain" => text.into_bytes(),
        "b64" | "base64" => {
            let clean: String = text.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|e| format!("{path}: bad base64: {e}"))?
        }
        other => return Err(format!("{path}: unsupported encoding {other}")),
    };
    Ok(WriteFile { path, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_block_and_base64() {
        let ud = "#cloud-config\nwrite_files:\n  - path: /etc/warden/warden.toml\n    content: |\n      [node]\n      id = \"a\"\n  - path: /etc/x\n    encoding: b64\n    content: aGVsbG8=\nruncmd: [\"true\"]\n";
        let f = write_files(ud).unwrap();
        assert_eq!(f[0].path, "/etc/warden/warden.toml");
        assert_eq!(f[0].content, b"[node]\nid = \"a\"\n");
        assert_eq!(f[1].content, b"hello");
    }

    #[test]
    fn refusals_say_why() {
        assert!(write_files("#!/bin/sh\necho hi\n")
            .unwrap_err()
            .contains("#cloud-config"));
        assert!(write_files("#cloud-config\nwrite_files: [\n")
            .unwrap_err()
            .contains("not valid YAML"));
        assert!(write_files("#cloud-config\nwrite_files:\n  - content: x\n")
            .unwrap_err()
            .contains("no path"));
        assert!(write_files("#cloud-config\nruncmd: []\n")
            .unwrap()
            .is_empty());
    }
}

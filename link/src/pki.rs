//! The fleet's own certificate authority: made once (`warden ca init DIR`), it issues a
//! certificate to every node and edge (`warden cert issue`) and revokes one that leaked
//! (`warden cert revoke`, which rewrites the CRL every appliance loads). Keys are written
//! 0600 and never overwritten; the CA's key stays on the operator's machine.
//!
//! Names: a node's certificate is for `ID.node.warden` (server and client use: a node may
//! be an edge too), an edge's for `ID.edge.warden` (client use only). An edge checks that
//! the node it dialled presents `NODE.node.warden`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::LinkError;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const CRL: &str = "crl.pem";
const STATE: &str = "ca.json";

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Node,
    Edge,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Edge => "edge",
        }
    }
}

/// The DNS name a certificate of `role` for `id` carries.
pub fn name_of(role: Role, id: &str) -> String {
    format!("{id}.{}.warden", role.as_str())
}

/// What the CA remembers beside its key: its name and what it revoked.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    name: String,
    crl_number: u64,
    revoked: Vec<Revoked>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Revoked {
    serial: String,
    at_unix: i64,
}

/// A certificate just issued.
#[derive(Debug)]
pub struct Issued {
    /// Hex, as `warden cert revoke` takes it.
    pub serial: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub not_after: OffsetDateTime,
}

fn pki(what: impl std::fmt::Display) -> LinkError {
    LinkError::Pki(what.to_string())
}

/// Makes a new CA in `dir` (created if missing): refuses if one is already there.
pub fn init_ca(dir: &Path, name: &str) -> Result<PathBuf, LinkError> {
    fs::create_dir_all(dir).map_err(|e| LinkError::io(format!("creating {}", dir.display()), e))?;
    if dir.join(CA_KEY).exists() {
        return Err(pki(format!(
            "{} already holds a CA; a second one would split the fleet (remove it first if you mean it)",
            dir.display()
        )));
    }
    let key = KeyPair::generate().map_err(pki)?;
    let cert = ca_params(name)?.self_signed(&key).map_err(pki)?;
    write_new(&dir.join(CA_KEY), key.serialize_pem().as_bytes())?;
    write_replace(&dir.join(CA_CERT), cert.pem().as_bytes())?;
    let state = State {
        name: name.to_string(),
        ..State::default()
    };
    save_state(dir, &state)?;
    write_crl(dir, &state, &cert, &key)?;
    Ok(dir.join(CA_CERT))
}

/// Issues a certificate for `id` in `role`, valid for `days` from now, into `out`
/// (`ID.crt`, `ID.key` 0600, and copies of `ca.crt` and `crl.pem`).
pub fn issue(
    ca_dir: &Path,
    role: Role,
    id: &str,
    out: &Path,
    days: u32,
) -> Result<Issued, LinkError> {
    let now = OffsetDateTime::now_utc();
    issue_between(
        ca_dir,
        role,
        id,
        out,
        now - Duration::hours(1),
        now + Duration::days(i64::from(days)),
    )
}

/// [`issue`] with an explicit validity (tests make expired certificates with it).
pub fn issue_between(
    ca_dir: &Path,
    role: Role,
    id: &str,
    out: &Path,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Issued, LinkError> {
    check_id(id)?;
    let (state, ca_cert, ca_key) = load_ca(ca_dir)?;
    let name = name_of(role, id);
    let mut params = CertificateParams::new(vec![name.clone()]).map_err(pki)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name.clone());
    dn.push(DnType::OrganizationName, state.name.clone());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match role {
        Role::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Edge => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.not_before = not_before;
    params.not_after = not_after;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(pki)?;
    serial[0] &= 0x7f; // positive, as DER integers must be
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let key = KeyPair::generate().map_err(pki)?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(pki)?;
    fs::create_dir_all(out).map_err(|e| LinkError::io(format!("creating {}", out.display()), e))?;
    let (cert_path, key_path) = (out.join(format!("{id}.crt")), out.join(format!("{id}.key")));
    write_new(&key_path, key.serialize_pem().as_bytes())?;
    write_replace(&cert_path, cert.pem().as_bytes())?;
    if out != ca_dir {
        for f in [CA_CERT, CRL] {
            let bytes = fs::read(ca_dir.join(f))
                .map_err(|e| LinkError::io(format!("reading {}", ca_dir.join(f).display()), e))?;
            write_replace(&out.join(f), &bytes)?;
        }
    }
    Ok(Issued {
        serial: hex::encode(serial),
        cert: cert_path,
        key: key_path,
        not_after,
    })
}

/// Adds `serial` (hex, as `issue` printed it) to the CA's revocation list and rewrites
/// `crl.pem`; appliances refuse the certificate once they load the new list.
pub fn revoke(ca_dir: &Path, serial: &str) -> Result<PathBuf, LinkError> {
    let serial = serial.trim().to_ascii_lowercase();
    if serial.is_empty() || hex::decode(&serial).is_err() {
        return Err(pki(format!("serial `{serial}` is not hex")));
    }
    let (mut state, ca_cert, ca_key) = load_ca(ca_dir)?;
    if !state.revoked.iter().any(|r| r.serial == serial) {
        state.revoked.push(Revoked {
            serial,
            at_unix: OffsetDateTime::now_utc().unix_timestamp(),
        });
    }
    state.crl_number += 1;
    save_state(ca_dir, &state)?;
    write_crl(ca_dir, &state, &ca_cert, &ca_key)?;
    Ok(ca_dir.join(CRL))
}

fn ca_params(name: &str) -> Result<CertificateParams, LinkError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{name} fleet CA"));
    dn.push(DnType::OrganizationName, name.to_string());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Fixed, so the issuer rebuilt from the key and the name matches the one on disk.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.serial_number = Some(SerialNumber::from_slice(&[1]));
    Ok(params)
}

/// The CA as an issuer: its state, and its certificate rebuilt from its key and name
/// (the subject and key identifier are what issued certificates point at).
fn load_ca(dir: &Path) -> Result<(State, Certificate, KeyPair), LinkError> {
    let key_path = dir.join(CA_KEY);
    let pem = fs::read_to_string(&key_path).map_err(|e| {
        LinkError::io(
            format!(
                "reading the CA key {} (run `warden ca init` first?)",
                key_path.display()
            ),
            e,
        )
    })?;
    let key = KeyPair::from_pem(&pem).map_err(|e| pki(format!("{}: {e}", key_path.display())))?;
    let state_path = dir.join(STATE);
    let text = fs::read_to_string(&state_path)
        .map_err(|e| LinkError::io(format!("reading {}", state_path.display()), e))?;
    let state: State =
        serde_json::from_str(&text).map_err(|e| pki(format!("{}: {e}", state_path.display())))?;
    let cert = ca_params(&state.name)?.self_signed(&key).map_err(pki)?;
    Ok((state, cert, key))
}

fn save_state(dir: &Path, state: &State) -> Result<(), LinkError> {
    let text = serde_json::to_string_pretty(state).map_err(pki)?;
    write_replace(&dir.join(STATE), text.as_bytes())
}

fn write_crl(dir: &Path, state: &State, ca: &Certificate, key: &KeyPair) -> Result<(), LinkError> {
    let now = OffsetDateTime::now_utc();
    let mut revoked = Vec::new();
    for r in &state.revoked {
        let bytes = hex::decode(&r.serial).map_err(pki)?;
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: OffsetDateTime::from_unix_timestamp(r.at_unix).unwrap_or(now),
            reason_code: None,
            invalidity_date: None,
        });
    }
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(3650),
        crl_number: SerialNumber::from(state.crl_number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(ca, key)
    .map_err(pki)?;
    write_replace(&dir.join(CRL), crl.pem().map_err(pki)?.as_bytes())
}

/// Ids are DNS labels: they become certificate names.
fn check_id(id: &str) -> Result<(), LinkError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(pki(format!(
            "`{id}` cannot name a certificate: use 1-63 lowercase letters, digits and inner `-` \
             (the node's lifecycle.appliance)"
        )))
    }
}

/// Writes a file that must not exist yet (keys are never overwritten); `ca` keys and node
/// keys alike are 0600.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), LinkError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            LinkError::io(
                format!("creating {} (it must not exist yet)", path.display()),
                e,
            )
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| LinkError::io(format!("writing {}", path.display()), e))
}

/// Replaces a public file atomically (temp file, then rename).
fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), LinkError> {
    let tmp = path.with_extension("tmp-warden");
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| LinkError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_ca_issues_and_revokes_and_never_overwrites_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca, "test").unwrap();
        assert!(init_ca(&ca, "again").is_err(), "a second CA in one place");
        let mode = fs::metadata(ca.join(CA_KEY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let out = dir.path().join("node-a");
        let issued = issue(&ca, Role::Node, "node-a", &out, 30).unwrap();
        assert_eq!(issued.serial.len(), 32);
        let mode = fs::metadata(&issued.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(out.join(CA_CERT).exists() && out.join(CRL).exists());
        assert!(
            issue(&ca, Role::Node, "node-a", &out, 30).is_err(),
            "key overwritten"
        );
        assert!(issue(&ca, Role::Edge, "Bad_Name", &out, 30).is_err());
        let before = fs::read_to_string(ca.join(CRL)).unwrap();
        revoke(&ca, &issued.serial).unwrap();
        assert_ne!(fs::read_to_string(ca.join(CRL)).unwrap(), before);
        assert!(revoke(&ca, "not-hex").is_err());
    }
}

//! OpenSSH key revocation lists (KRLs), written and read from the format
//! OpenSSH documents in its `PROTOCOL.krl`: sshd's `RevokedKeys` reads the
//! file on every login, so revoking a certificate is writing its serial here.
//!
//! Hallpass writes one certificate section for the target's CA with one
//! sorted serial list. The reader understands every certificate subsection
//! (serial lists, ranges, bitmaps, key ids), so `verify` can also check a
//! list made by `ssh-keygen -k`; sections about plain keys are skipped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// `SSHKRL\n\0`, the first eight bytes of every KRL.
const MAGIC: u64 = 0x5353_484b_524c_0a00;
const FORMAT_VERSION: u32 = 1;

const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const SECTION_EXTENSION: u8 = 255;

const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;
const CERT_EXTENSION: u8 = 0x39;

/// Largest KRL read back: far above any list Hallpass writes (8 bytes per
/// revoked, unexpired grant), small enough to bound a corrupt file.
pub const MAX_KRL_BYTES: u64 = 16 * 1024 * 1024;

/// What a KRL revokes by certificate, per CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Krl {
    pub krl_version: u64,
    pub generated_date: u64,
    pub comment: String,
    pub certificates: Vec<CertificateSection>,
}

/// Revocations of certificates signed by one CA (`ca_key` empty: any CA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateSection {
    /// The CA public key in SSH wire format.
    pub ca_key: Vec<u8>,
    pub serials: Vec<u64>,
    /// Inclusive `(min, max)` ranges.
    pub ranges: Vec<(u64, u64)>,
    /// `(offset, big-endian bitmap)`: bit N revokes serial offset + N.
    pub bitmaps: Vec<(u64, Vec<u8>)>,
    pub key_ids: Vec<String>,
}

impl CertificateSection {
    fn revokes(&self, serial: u64, key_id: &str) -> bool {
        self.serials.contains(&serial)
            || self.ranges.iter().any(|&(min, max)| (min..=max).contains(&serial))
            || self
                .bitmaps
                .iter()
                .any(|(offset, bitmap)| bitmap_has(bitmap, *offset, serial))
            || self.key_ids.iter().any(|id| id == key_id)
    }
}

fn bitmap_has(bitmap: &[u8], offset: u64, serial: u64) -> bool {
    let Some(bit) = serial.checked_sub(offset) else {
        return false;
    };
    let Ok(byte_from_end) = usize::try_from(bit / 8) else {
        return false;
    };
    byte_from_end < bitmap.len() && (bitmap[bitmap.len() - 1 - byte_from_end] >> (bit % 8)) & 1 == 1
}

impl Krl {
    /// Whether a certificate with `serial` and `key_id`, signed by the CA
    /// whose wire-format public key is `ca_key`, is revoked.
    pub fn revokes(&self, ca_key: &[u8], serial: u64, key_id: &str) -> bool {
        self.certificates
            .iter()
            .filter(|section| section.ca_key.is_empty() || section.ca_key == ca_key)
            .any(|section| section.revokes(serial, key_id))
    }
}

/// A KRL revoking `serials` (any order, duplicates allowed, zero refused —
/// OpenSSH refuses to load a KRL naming serial 0) of the CA `ca_key`.
pub fn encode(ca_key: &[u8], serials: &[u64], generated_date: u64, comment: &str) -> Result<Vec<u8>, String> {
    if serials.contains(&0) {
        return Err("certificate serial 0 cannot be revoked".into());
    }
    let mut sorted = serials.to_vec();
    sorted.sort_unstable();
    sorted.dedup();

    let mut out = Vec::with_capacity(64 + ca_key.len() + 8 * sorted.len());
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    // krl_version must grow with each change; the generation time does.
    out.extend_from_slice(&generated_date.to_be_bytes());
    out.extend_from_slice(&generated_date.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes()); // flags: none defined
    put_string(&mut out, b"")?; // reserved
    put_string(&mut out, comment.as_bytes())?;

    if !sorted.is_empty() {
        let mut list = Vec::with_capacity(8 * sorted.len());
        for serial in &sorted {
            list.extend_from_slice(&serial.to_be_bytes());
        }
        let mut section = Vec::new();
        put_string(&mut section, ca_key)?;
        put_string(&mut section, b"")?; // reserved
        section.push(CERT_SERIAL_LIST);
        put_string(&mut section, &list)?;
        out.push(SECTION_CERTIFICATES);
        put_string(&mut out, &section)?;
    }
    Ok(out)
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = u32::try_from(bytes.len()).map_err(|_| "KRL field longer than 4 GiB".to_string())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// SSH wire-format reading over a byte slice; every read is bounds-checked.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("truncated {what}"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_be_bytes(bytes))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(bytes))
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| format!("oversized {what}"))?;
        self.take(len, what)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads a KRL; errors say what is malformed.
pub fn parse(bytes: &[u8]) -> Result<Krl, String> {
    let mut wire = Wire(bytes);
    if wire.u64("magic")? != MAGIC {
        return Err("not an OpenSSH KRL (bad magic)".into());
    }
    let version = wire.u32("format version")?;
    if version != FORMAT_VERSION {
        return Err(format!("unsupported KRL format version {version}"));
    }
    let mut krl = Krl {
        krl_version: wire.u64("krl_version")?,
        generated_date: wire.u64("generated_date")?,
        ..Krl::default()
    };
    wire.u64("flags")?;
    wire.string("reserved")?;
    krl.comment = String::from_utf8_lossy(wire.string("comment")?).into_owned();
    while !wire.is_empty() {
        let section_type = wire.u8("section type")?;
        match section_type {
            SECTION_CERTIFICATES => krl.certificates.push(parse_certificates(wire.string("section")?)?),
            SECTION_EXPLICIT_KEY | SECTION_FINGERPRINT_SHA1 | SECTION_FINGERPRINT_SHA256 => {
                // Revocations of plain keys: nothing Hallpass certifies.
                wire.string("section")?;
            }
            SECTION_EXTENSION => check_extension(wire.string("extension")?)?,
            // OpenSSH >= 9.4 refuses signed KRLs too.
            SECTION_SIGNATURE => return Err("signed KRLs are not supported".into()),
            other => return Err(format!("unknown KRL section type {other}")),
        }
    }
    Ok(krl)
}

fn parse_certificates(data: &[u8]) -> Result<CertificateSection, String> {
    let mut wire = Wire(data);
    let mut section = CertificateSection {
        ca_key: wire.string("CA key")?.to_vec(),
        ..CertificateSection::default()
    };
    wire.string("reserved")?;
    while !wire.is_empty() {
        let sub_type = wire.u8("certificate subsection type")?;
        let mut sub = Wire(wire.string("certificate subsection")?);
        match sub_type {
            CERT_SERIAL_LIST => {
                while !sub.is_empty() {
                    section.serials.push(sub.u64("serial")?);
                }
            }
            CERT_SERIAL_RANGE => {
                let (min, max) = (sub.u64("serial_min")?, sub.u64("serial_max")?);
                if min > max {
                    return Err(format!("serial range {min}-{max} is inverted"));
                }
                section.ranges.push((min, max));
            }
            CERT_SERIAL_BITMAP => {
                let offset = sub.u64("bitmap offset")?;
                section.bitmaps.push((offset, sub.string("bitmap")?.to_vec()));
            }
            CERT_KEY_ID => {
                while !sub.is_empty() {
                    let id = sub.string("key id")?;
                    section.key_ids.push(String::from_utf8_lossy(id).into_owned());
                }
            }
            CERT_EXTENSION => check_extension(sub.0)?,
            other => return Err(format!("unknown certificate subsection type {other:#x}")),
        }
    }
    Ok(section)
}

/// Extensions may be skipped unless marked critical.
fn check_extension(data: &[u8]) -> Result<(), String> {
    let mut wire = Wire(data);
    let name = String::from_utf8_lossy(wire.string("extension name")?).into_owned();
    if wire.u8("extension criticality")? != 0 {
        return Err(format!("unsupported critical KRL extension {name:?}"));
    }
    Ok(())
}

/// Replaces `path` with `bytes` so that a reader (sshd, at every login)
/// sees the old file or the new one, never a part: a temporary file in the
/// same directory, flushed to disk, renamed over `path`, then the directory
/// flushed so the rename survives a crash. Mode 0644: sshd may drop
/// privileges before reading it, and a KRL holds no secret.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        unique_suffix()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        // The umask may have narrowed the mode given at creation.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = fs::remove_file(&temp);
    }
    result
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    (nanos << 16) ^ NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Reads the KRL at `path`, refusing files over [`MAX_KRL_BYTES`].
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_KRL_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KRL_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_KRL_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_lists_parse_back_sorted_and_deduplicated() {
        let ca = b"\0\0\0\x0bssh-ed25519\0\0\0\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let bytes = encode(ca, &[9, 3, u64::MAX, 3], 1_700_000_000, "test \"krl\"").unwrap();
        assert_eq!(&bytes[..8], b"SSHKRL\n\0");
        let krl = parse(&bytes).unwrap();
        assert_eq!(krl.generated_date, 1_700_000_000);
        assert_eq!(krl.comment, "test \"krl\"");
        assert_eq!(krl.certificates.len(), 1);
        assert_eq!(krl.certificates[0].ca_key, ca.to_vec());
        assert_eq!(krl.certificates[0].serials, vec![3, 9, u64::MAX]);
        assert!(krl.revokes(ca, 9, "x"));
        assert!(!krl.revokes(ca, 4, "x"));
        assert!(!krl.revokes(b"another CA", 9, "x"), "serials belong to their CA");
    }

    #[test]
    fn empty_lists_have_no_section_and_zero_is_refused() {
        let krl = parse(&encode(b"ca", &[], 1, "").unwrap()).unwrap();
        assert!(krl.certificates.is_empty());
        assert!(encode(b"ca", &[5, 0], 1, "").is_err());
    }

    #[test]
    fn ranges_bitmaps_key_ids_and_any_ca_sections_revoke() {
        let section = CertificateSection {
            ca_key: Vec::new(),
            serials: vec![],
            ranges: vec![(10, 20)],
            // Bits 0 and 9 set: offset 100 + 0 and 100 + 9.
            bitmaps: vec![(100, vec![0x02, 0x01])],
            key_ids: vec!["grant-7".into()],
        };
        let krl = Krl {
            certificates: vec![section],
            ..Krl::default()
        };
        for serial in [10, 15, 20, 100, 109] {
            assert!(krl.revokes(b"any", serial, "-"), "{serial}");
        }
        for serial in [9, 21, 99, 101, 108, 110, 1_000_000] {
            assert!(!krl.revokes(b"any", serial, "-"), "{serial}");
        }
        assert!(krl.revokes(b"any", 5, "grant-7"));
    }

    #[test]
    fn malformed_lists_are_refused_not_misread() {
        let good = encode(b"ca", &[1, 2], 1, "c").unwrap();
        for cut in [0, 7, 12, 40, good.len() - 1] {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(parse(&bad_magic).unwrap_err().contains("magic"));
        let mut unknown = good.clone();
        unknown.extend_from_slice(&[42, 0, 0, 0, 0]);
        assert!(parse(&unknown).unwrap_err().contains("unknown KRL section"));
        let mut critical = good;
        critical.push(SECTION_EXTENSION);
        let mut ext = Vec::new();
        put_string(&mut ext, b"x@example.com").unwrap();
        ext.push(1);
        put_string(&mut ext, b"").unwrap();
        put_string(&mut critical, &ext).unwrap();
        assert!(parse(&critical).unwrap_err().contains("critical"));
    }

    #[test]
    fn writes_replace_the_file_with_mode_0644_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.krl");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(read(&path).unwrap(), b"second");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("revoked.krl")]);
        assert!(write_atomically(&dir.path().join("missing/dir/krl"), b"x").is_err());
    }
}

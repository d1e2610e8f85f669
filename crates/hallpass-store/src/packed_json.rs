//! The stored form of the two documents every grant writes: its request
//! record (`requests.record`) and its audit events' data (`audit.data`).
//! They are compressed with zstd against a dictionary compiled into the
//! binary, which holds the member names and value shapes those documents
//! share, so a few hundred bytes of JSON keep only what is particular to
//! them (ids, times, names): a grant's three documents shrink from about
//! 1,430 bytes to about 390.
//!
//! A packed value is `0x01`, the JSON's length as a LEB128 number, and a
//! zstd frame without its magic number, checksum, size or dictionary id
//! (the tag names the dictionary). Anything else is JSON as UTF-8 text: rows written before
//! this form, which stay as they were. Packing changes how a document is
//! kept, never what it says: audit hashes are computed over the canonical
//! form of the parsed event, so they verify in either form, and exports
//! and the API carry JSON as before.
//!
//! The dictionary is part of the stored format: rows packed with it can
//! only be read with exactly these bytes, so it never changes (a test pins
//! its hash). A better one would get a tag of its own.

use std::cell::RefCell;

use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::CParameter;

use crate::StoreError;

/// Marks a value packed with [`DICTIONARY_1`]. JSON text never starts
/// with this byte.
const TAG_DICTIONARY_1: u8 = 0x01;

/// Member names and value shapes of request records and grant events,
/// with made-up values; the most common documents last, where zstd reaches
/// them cheapest.
const DICTIONARY_1: &[u8] = include_bytes!("packed_json/dictionary-1.json");

/// How every zstd frame starts (0xFD2FB528, little-endian): not stored.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// zstd's level: higher levels take several times longer for a few bytes
/// on documents this small.
const LEVEL: i32 = 3;

/// The largest document the store packs, and so the most a packed value
/// may claim to hold: a corrupt length must not make the reader allocate
/// without bound. Request bodies are far smaller.
const MAX_UNPACKED: usize = 16 * 1024 * 1024;

thread_local! {
    // A context with the dictionary loaded costs far more to make than a
    // document costs to pack, so each thread keeps one of each.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

fn zstd_error(what: &str, error: std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("{what} a stored document: {error}"))
}

fn new_compressor() -> std::io::Result<Compressor<'static>> {
    let mut compressor = Compressor::with_dictionary(LEVEL, DICTIONARY_1)?;
    compressor.set_parameter(CParameter::ChecksumFlag(false))?;
    compressor.set_parameter(CParameter::ContentSizeFlag(false))?;
    compressor.set_parameter(CParameter::DictIdFlag(false))?;
    Ok(compressor)
}

/// Serialises `value` to JSON and packs it.
pub(crate) fn pack<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    pack_bytes(&json)
}

fn pack_bytes(json: &[u8]) -> Result<Vec<u8>, StoreError> {
    // What could not be read back is not written.
    if json.len() > MAX_UNPACKED {
        return Err(StoreError::Corrupt(format!(
            "a document of {} bytes is larger than the {MAX_UNPACKED} the store keeps",
            json.len()
        )));
    }
    let frame = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(compressor) => compressor,
            None => slot.insert(new_compressor()?),
        };
        compressor.compress(json)
    });
    let frame = frame.map_err(|e| zstd_error("cannot pack", e))?;
    // Every frame starts with the same four bytes; they are left out.
    let frame = frame
        .strip_prefix(&ZSTD_MAGIC)
        .ok_or_else(|| StoreError::Corrupt("zstd wrote a frame without its magic number".into()))?;
    let mut packed = Vec::with_capacity(frame.len() + 4);
    packed.push(TAG_DICTIONARY_1);
    let mut length = json.len();
    loop {
        let low = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            packed.push(low);
            break;
        }
        packed.push(low | 0x80);
    }
    packed.extend_from_slice(frame);
    Ok(packed)
}

/// The JSON text a stored value holds, packed or not.
pub fn unpack(stored: &[u8]) -> Result<Vec<u8>, StoreError> {
    let Some((&TAG_DICTIONARY_1, rest)) = stored.split_first() else {
        return Ok(stored.to_vec());
    };
    let (length, frame) = read_length(rest)?;
    if length > MAX_UNPACKED {
        return Err(StoreError::Corrupt(format!(
            "a stored document claims {length} bytes, more than the {MAX_UNPACKED} allowed"
        )));
    }
    let frame = [&ZSTD_MAGIC[..], frame].concat();
    let json = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(decompressor) => decompressor,
            None => slot.insert(Decompressor::with_dictionary(DICTIONARY_1)?),
        };
        decompressor.decompress(&frame, length)
    });
    let json = json.map_err(|e| zstd_error("cannot unpack", e))?;
    if json.len() != length {
        return Err(StoreError::Corrupt(format!(
            "a stored document unpacked to {} bytes where it said {length}",
            json.len()
        )));
    }
    Ok(json)
}

/// Reads the LEB128 length after the tag; returns it and the frame.
fn read_length(bytes: &[u8]) -> Result<(usize, &[u8]), StoreError> {
    let mut length = 0usize;
    for (index, &byte) in bytes.iter().enumerate().take(4) {
        length |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok((length, &bytes[index + 1..]));
        }
    }
    Err(StoreError::Corrupt("a stored document's length is malformed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    #[test]
    fn the_dictionary_never_changes() {
        // Every packed row in every store depends on these exact bytes.
        assert_eq!(
            hex::encode(Sha256::digest(DICTIONARY_1)),
            "5aaadb3bf3d330f0e10e5d406012f7eb1356f7de869cd394c89747c57789ab6b"
        );
    }

    #[test]
    fn documents_come_back_as_they_went_in() {
        let documents = [
            json!({}),
            json!({"id": "0193c2d1", "reason": "ünïcode ✓ \u{0}", "n": 1.5, "list": [null, true, -3]}),
            json!({"big": "x".repeat(10_000_000), "quotes": "'\"\\\u{1b}[0m"}),
        ];
        for document in documents {
            let packed = pack(&document).expect("pack");
            assert_eq!(packed[0], TAG_DICTIONARY_1);
            let back: Value = serde_json::from_slice(&unpack(&packed).expect("unpack")).expect("json");
            assert_eq!(back, document);
        }
    }

    #[test]
    fn a_grant_record_packs_to_a_fraction_of_its_json() {
        let record = json!({"id":"01a237aa-a15b-72a5-8936-1858844dada5","role":"db-readonly","target":"billing",
            "requester":{"name":"dana","groups":["finance"]},"state":"active","duration_seconds":1800,
            "reason":"month-end close","created_at":"2026-12-02T16:50:59.035377559Z",
            "updated_at":"2026-12-02T16:50:59.035378591Z","auto_approved":true,
            "policy":{"policy_hash":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
            "activated_at":"2026-12-02T16:50:59.035378591Z","expires_at":"2026-12-02T17:20:59.035378591Z"});
        let text = serde_json::to_vec(&record).expect("json");
        let packed = pack(&record).expect("pack");
        assert!(
            packed.len() * 2 < text.len(),
            "{} packed from {}",
            packed.len(),
            text.len()
        );
    }

    #[test]
    fn a_document_too_large_to_read_back_is_refused() {
        let huge = json!({"big": "x".repeat(MAX_UNPACKED)});
        assert!(matches!(pack(&huge), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn text_written_before_packing_reads_as_it_is() {
        let old = br#"{"state":"active"}"#;
        assert_eq!(unpack(old).expect("plain"), old.to_vec());
    }

    #[test]
    fn damaged_values_are_corrupt_not_a_panic() {
        let packed = pack(&json!({"reason": "a reason long enough to compress"})).expect("pack");
        let damaged: Vec<Vec<u8>> = vec![
            vec![TAG_DICTIONARY_1],
            vec![TAG_DICTIONARY_1, 0xff, 0xff, 0xff, 0xff, 0x7f],
            vec![TAG_DICTIONARY_1, 0xff, 0xff, 0xff, 0x7f, 0],
            packed[..packed.len() - 2].to_vec(),
            [&packed[..2], &[0u8; 8][..]].concat(),
        ];
        for bytes in damaged {
            assert!(
                matches!(unpack(&bytes), Err(StoreError::Corrupt(_))),
                "{bytes:?} was accepted"
            );
        }
    }
}

//! The stored forms of what a finished task keeps until it expires: its record and its model,
//! deflated with a preset dictionary, so that a tiny task's record (about 1.2 KB of JSON) keeps
//! about 220 bytes and a small model (about 1 KB, most of it names and padding) about 210.
//!
//! Records that still change (pending and running tasks) stay plain JSON: they are few, written
//! several times each, and compared as stored by the Redis compare-and-set. A record is deflated
//! when the task ends, the one write that stays; a model when it is stored, if that saves a
//! tenth or more (a large network's weights barely shrink).
//!
//! Each stored form says what it is by its first byte: `{` a JSON record, `T` a model as
//! `training::artifact` writes it, and a version byte ([`RECORD_V1`], [`MODEL_V1`]) one
//! deflated with that version's dictionary. The dictionaries (`dictionaries/`) were made once
//! from the records and models of one run of each model type, ids blanked, the most common
//! last, and cut to their last few KB: zlib reads a dictionary again for every value it
//! deflates, and past about 3 KB a larger one cost more time than it saved bytes. A stored
//! value must stay readable for as long as it may live, so a dictionary never changes: a
//! better one comes with a new version byte, and the old one stays for reading (a test pins
//! their bytes).
//!
//! Deflate with a preset dictionary is zlib's own feature (flate2 over zlib-rs, pure Rust).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{StoreError, TaskRecord};

/// A record deflated with `dictionaries/record-v1.json`.
const RECORD_V1: u8 = 1;
/// A model deflated with `dictionaries/model-v1.bin`.
const MODEL_V1: u8 = 2;

const RECORD_DICTIONARY_V1: &[u8] = include_bytes!("dictionaries/record-v1.json");
const MODEL_DICTIONARY_V1: &[u8] = include_bytes!("dictionaries/model-v1.bin");

/// Models up to this size are deflated at zlib's default level, larger ones at its fastest.
const SMALL_MODEL_BYTES: usize = 64 << 10;
/// What a stored form may inflate to at most: more is a corrupt value, not a model.
const MOST_INFLATED_BYTES: usize = 1 << 30;

/// Task `record` as a store keeps it: plain JSON while the task may still change, deflated
/// once it ended.
pub fn record_bytes(record: &TaskRecord) -> Vec<u8> {
    let json = serde_json::to_vec(record).expect("task records serialize");
    if !record.state.is_terminal() {
        return json;
    }
    deflate(Packing::Record, &json)
}

/// A task record from its stored form (either).
pub fn record_from(stored: &[u8]) -> Result<TaskRecord, StoreError> {
    record_as(stored)
}

/// A task record, or the part of it that `T` reads, from its stored form (either).
pub fn record_as<T: serde::de::DeserializeOwned>(stored: &[u8]) -> Result<T, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("task record: {e}"));
    match stored.first() {
        Some(&RECORD_V1) => {
            let json = inflate(RECORD_V1, &stored[1..]).map_err(|e| corrupt(&e))?;
            serde_json::from_slice(&json).map_err(|e| corrupt(&e))
        }
        _ => serde_json::from_slice(stored).map_err(|e| corrupt(&e)),
    }
}

/// Model artifact `model` as a store keeps it: deflated when that saves a tenth or more.
pub fn model_bytes(model: Vec<u8>) -> Vec<u8> {
    let packing = if model.len() <= SMALL_MODEL_BYTES {
        Packing::SmallModel
    } else {
        Packing::LargeModel
    };
    let packed = deflate(packing, &model);
    if packed.len() * 10 <= model.len() * 9 {
        packed
    } else {
        model
    }
}

/// A model artifact from its stored form (either).
pub fn model_from(stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    match stored.first() {
        Some(&MODEL_V1) => inflate(MODEL_V1, &stored[1..])
            .map_err(|e| StoreError::Corrupt(format!("model artifact: {e}"))),
        _ => Ok(stored),
    }
}

/// How a stored form is deflated.
#[derive(Clone, Copy)]
enum Packing {
    /// An ended record: a 16 KB window holds the dictionary and the record.
    Record,
    /// A model up to `SMALL_MODEL_BYTES`.
    SmallModel,
    /// A larger model, at zlib's fastest level.
    LargeModel,
}

impl Packing {
    /// (version byte, dictionary, level, window bits)
    fn settings(self) -> (u8, &'static [u8], Compression, u8) {
        match self {
            Packing::Record => (RECORD_V1, RECORD_DICTIONARY_V1, Compression::default(), 14),
            Packing::SmallModel => (MODEL_V1, MODEL_DICTIONARY_V1, Compression::default(), 15),
            Packing::LargeModel => (MODEL_V1, MODEL_DICTIONARY_V1, Compression::fast(), 15),
        }
    }
}

thread_local! {
    /// A deflate stream per packing, reset for each use: a new one allocates and clears
    /// about 200 KB, which cost more than deflating a record.
    static DEFLATERS: RefCell<[Option<Compress>; 3]> = const { RefCell::new([None, None, None]) };
    /// An inflate stream per version byte, reset for each use.
    static INFLATERS: RefCell<[Option<Decompress>; 2]> = const { RefCell::new([None, None]) };
}

/// The version byte of `packing`, then `data` as raw deflate with its preset dictionary.
fn deflate(packing: Packing, data: &[u8]) -> Vec<u8> {
    let (tag, dictionary, level, window_bits) = packing.settings();
    DEFLATERS.with_borrow_mut(|streams| {
        let z = streams[packing as usize]
            .get_or_insert_with(|| Compress::new_with_window_bits(level, false, window_bits));
        z.reset();
        z.set_dictionary(dictionary)
            .expect("a reset deflate stream takes a dictionary");
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        out.push(tag);
        loop {
            let consumed = z.total_in() as usize;
            out.reserve(data.len().max(64));
            match z.compress_vec(&data[consumed..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return out,
                Ok(_) => continue,
                Err(e) => unreachable!("deflate into a growing buffer fails only on misuse: {e}"),
            }
        }
    })
}

/// Inflates raw deflate `data` made with the dictionary of version byte `tag`.
fn inflate(tag: u8, data: &[u8]) -> Result<Vec<u8>, String> {
    let (slot, dictionary) = match tag {
        RECORD_V1 => (0, RECORD_DICTIONARY_V1),
        _ => (1, MODEL_DICTIONARY_V1),
    };
    INFLATERS.with_borrow_mut(|streams| {
        let z = streams[slot].get_or_insert_with(|| Decompress::new(false));
        z.reset(false);
        z.set_dictionary(dictionary).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(data.len() * 4 + 256);
        loop {
            let consumed = z.total_in() as usize;
            if out.len() == out.capacity() {
                if out.len() >= MOST_INFLATED_BYTES {
                    return Err(format!("inflates to over {MOST_INFLATED_BYTES} bytes"));
                }
                out.reserve(out.len());
            }
            let before = (z.total_in(), z.total_out());
            match z.decompress_vec(&data[consumed..], &mut out, FlushDecompress::Finish) {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) if (z.total_in(), z.total_out()) == before && out.len() < out.capacity() => {
                    return Err("the deflated data ends before its end".into());
                }
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskState;
    use crate::training::{ModelType, TrainSpec};

    fn ended() -> TaskRecord {
        let mut task = TaskRecord::new(TrainSpec::new(ModelType::Linear), None, 0, 3);
        task.state = TaskState::Success;
        task.result = Some(serde_json::json!({"metrics": {"test_r2": 0.123_456_789_012_345_67}}));
        task
    }

    #[test]
    fn a_record_is_plain_json_until_its_task_ends_then_deflated() {
        let pending = TaskRecord::new(TrainSpec::new(ModelType::Mlp), None, 0, 3);
        let stored = record_bytes(&pending);
        assert_eq!(stored[0], b'{');
        assert_eq!(record_from(&stored).unwrap(), pending);

        let ended = ended();
        let json = serde_json::to_vec(&ended).unwrap();
        let stored = record_bytes(&ended);
        assert_eq!(stored[0], RECORD_V1);
        assert!(
            stored.len() * 3 < json.len(),
            "{} of {}",
            stored.len(),
            json.len()
        );
        assert_eq!(record_from(&stored).unwrap(), ended);
        // Records stored plain before this form existed still read.
        assert_eq!(record_from(&json).unwrap(), ended);
    }

    #[test]
    fn models_deflate_when_it_pays_and_read_back_either_way() {
        let mut small = b"TYMODEL1".to_vec();
        small.extend_from_slice(br#"{"feature_names":["x0","x1"],"target_name":"y"}"#);
        small.resize(900, 0);
        let stored = model_bytes(small.clone());
        assert_eq!(stored[0], MODEL_V1);
        assert!(stored.len() < 200, "{}", stored.len());
        assert_eq!(model_from(stored).unwrap(), small);

        // Bytes that do not shrink are kept as they are.
        let mut state = 7u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        let mut model = b"TYMODEL1".to_vec();
        model.extend(noise);
        assert_eq!(model_bytes(model.clone()), model);
        assert_eq!(model_from(model.clone()).unwrap(), model);
    }

    /// Not a timed assertion: prints what packing costs (`cargo test --release --lib
    /// packing_costs -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn packing_costs() {
        let record = ended();
        let n = 20_000;
        let started = std::time::Instant::now();
        let mut stored = Vec::new();
        for _ in 0..n {
            stored = record_bytes(&record);
        }
        let packed = started.elapsed().as_secs_f64() / n as f64 * 1e6;
        let started = std::time::Instant::now();
        for _ in 0..n {
            record_from(&stored).unwrap();
        }
        let read = started.elapsed().as_secs_f64() / n as f64 * 1e6;
        eprintln!(
            "an ended record: {} bytes stored, {packed:.1} us to store, {read:.1} us to read",
            stored.len()
        );
    }

    #[test]
    fn a_damaged_stored_form_is_corrupt_not_a_panic() {
        let mut stored = record_bytes(&ended());
        stored.truncate(stored.len() / 2);
        assert!(matches!(record_from(&stored), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            model_from(vec![MODEL_V1, 0xff, 0x00]),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// What is stored must stay readable while it lives: a dictionary is never changed in
    /// place (a new one takes a new version byte).
    #[test]
    fn the_dictionaries_never_change() {
        let sum = |bytes: &[u8]| {
            bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            })
        };
        assert_eq!(
            (RECORD_DICTIONARY_V1.len(), sum(RECORD_DICTIONARY_V1)),
            (3382, 7_514_073_194_566_617_436),
            "record-v1.json"
        );
        assert_eq!(
            (MODEL_DICTIONARY_V1.len(), sum(MODEL_DICTIONARY_V1)),
            (2048, 15_433_367_810_180_307_759),
            "model-v1.bin"
        );
    }
}

//! Fuzzing the two parsers that take bytes from strangers: the training request
//! (`parse_train_request`) and the CSV reader (`Dataset::from_csv`). Inputs are mutations of
//! the small checked-in corpus in `tests/fuzz-corpus/` plus generated JSON and CSV. Neither
//! parser may panic; a refusal is a 4xx `ApiError` or a `DataError`; an acceptance is fully
//! valid. CI runs a few hundred cases of each (`PROPTEST_CASES` runs more).

use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use trainyard::http::parse_train_request;
use trainyard::training::{Dataset, MAX_CSV_COLUMNS};

fn corpus(kind: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Edit::Flip(i, b) if !bytes.is_empty() => bytes[i % len] ^= b,
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Edit::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Edit::Truncate(i) => bytes.truncate(i % len),
            Edit::Duplicate(i, n) if !bytes.is_empty() => {
                let start = i % len;
                let end = (start + n % 64).min(bytes.len());
                let piece = bytes[start..end].to_vec();
                bytes.splice(start..start, piece);
            }
            _ => {}
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let interesting = prop_oneof![
        any::<u8>(),
        Just(b'"'),
        Just(b','),
        Just(b'\n'),
        Just(b'{'),
        Just(b'['),
        Just(b'-'),
        Just(b'e'),
        Just(0xff),
    ];
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ];
    prop::collection::vec(edit, 0..8)
}

/// Arbitrary JSON, biased towards the request's own field names.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("epochs".to_string()),
        Just("learning_rate".to_string()),
        Just("hidden_sizes".to_string()),
        Just("batch_size".to_string()),
        Just("seed".to_string()),
        Just("gbdt".to_string()),
        Just("n_trees".to_string()),
        Just("priority".to_string()),
        Just("device".to_string()),
        Just("dataset".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_request(model: &str, body: &[u8]) {
    let ct = Some("application/json".to_string());
    match parse_train_request(model, &ct, body, 3) {
        Ok(parsed) => {
            parsed
                .spec
                .validate()
                .expect("an accepted request is valid");
            assert!(parsed.priority <= 9 && parsed.max_retries <= 10);
        }
        Err(e) => {
            assert!(
                [400, 404, 413, 415, 422].contains(&e.status.as_u16()),
                "{e:?}"
            );
            assert!(!e.code.is_empty() && !e.message.is_empty());
        }
    }
}

fn check_csv(bytes: &[u8]) {
    match Dataset::from_csv(bytes, "fuzz", "y") {
        Ok(data) => {
            assert!(data.n_rows() > 0 && data.n_features() > 0);
            assert!(data.n_features() < MAX_CSV_COLUMNS);
            assert_eq!(data.features().len(), data.n_rows() * data.n_features());
            assert_eq!(data.targets().len(), data.n_rows());
            assert!(
                data.features()
                    .iter()
                    .chain(data.targets())
                    .all(|v| v.is_finite())
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_requests_never_panic(pick in any::<usize>(), edits in edits(),
                                    model in prop_oneof![Just("mlp"), Just("gbdt"), Just("all"), Just("xgb")]) {
        let corpus = corpus("requests");
        let body = apply(corpus[pick % corpus.len()].clone(), &edits);
        check_request(model, &body);
    }

    #[test]
    fn generated_json_requests_never_panic(value in json()) {
        check_request("mlp", &serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn mutated_csv_never_panics(pick in any::<usize>(), edits in edits()) {
        let corpus = corpus("csv");
        check_csv(&apply(corpus[pick % corpus.len()].clone(), &edits));
    }

    #[test]
    fn generated_csv_never_panics(
        header in prop::collection::vec("[a-y ]{0,3}", 0..6),
        rows in prop::collection::vec(
            prop::collection::vec(prop_oneof![
                any::<f32>().prop_map(|f| f.to_string()),
                "-?[0-9]{0,4}(\\.[0-9]{0,3})?(e-?[0-9])?",
                "\"?[a-z,]{0,3}\"?",
                Just(String::new()),
            ], 0..7),
            0..8),
    ) {
        let mut text = header.join(",");
        text.push_str(",y\n");
        for row in rows {
            text.push_str(&row.join(","));
            text.push('\n');
        }
        check_csv(text.as_bytes());
    }
}

#[test]
fn the_corpus_parses_as_expected() {
    // The seeds themselves: valid requests are accepted, broken ones refused with a 4xx.
    let ct = Some("application/json".to_string());
    for body in corpus("requests") {
        check_request("mlp", &body);
    }
    assert!(parse_train_request("mlp", &ct, br#"{"epochs": 50}"#, 3).is_ok());
    let refused = parse_train_request("mlp", &ct, br#"{"epochs": 0}"#, 3).unwrap_err();
    assert_eq!(
        (refused.status.as_u16(), refused.code),
        (422, "invalid_parameters")
    );
    for csv in corpus("csv") {
        check_csv(&csv);
    }
    assert!(Dataset::from_csv(b"a,b,y\n1,2,3\n", "d", "y").is_ok());
}

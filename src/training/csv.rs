//! Reading a user's CSV: a header line, numeric cells, one named target column. Every error
//! names the line and the column.

use super::{DataError, Dataset};

/// Most columns a CSV may have, target included.
pub const MAX_CSV_COLUMNS: usize = 4096;
/// Most data rows a CSV may have.
pub const MAX_CSV_ROWS: usize = 10_000_000;

impl Dataset {
    /// Parses CSV bytes with a header line. `target` names the column to predict; every other
    /// column is a feature. Cells must be finite numbers; surrounding spaces are allowed.
    pub fn from_csv(bytes: &[u8], name: &str, target: &str) -> Result<Dataset, DataError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let mut records = reader.byte_records();

        let header = match records.next() {
            None => return Err(DataError::Empty),
            Some(record) => record.map_err(|e| DataError::Malformed(e.to_string()))?,
        };
        if header.len() > MAX_CSV_COLUMNS {
            return Err(DataError::TooManyColumns {
                found: header.len(),
                max: MAX_CSV_COLUMNS,
            });
        }
        let mut columns = Vec::with_capacity(header.len());
        for (index, raw) in header.iter().enumerate() {
            let column = std::str::from_utf8(raw)
                .map_err(|_| DataError::NotUtf8 {
                    line: 1,
                    column: format!("#{}", index + 1),
                })?
                .trim()
                .to_string();
            if column.is_empty() {
                return Err(DataError::EmptyColumnName { index: index + 1 });
            }
            if columns.contains(&column) {
                return Err(DataError::DuplicateColumn { column });
            }
            columns.push(column);
        }
        let target_index =
            columns
                .iter()
                .position(|c| c == target)
                .ok_or_else(|| DataError::MissingTarget {
                    target: target.into(),
                    columns: columns.clone(),
                })?;
        if columns.len() < 2 {
            return Err(DataError::NoFeatures);
        }

        let width = columns.len();
        let mut features = Vec::new();
        let mut targets = Vec::new();
        for record in records {
            let record = record.map_err(|e| DataError::Malformed(e.to_string()))?;
            let line = record.position().map_or(0, |p| p.line());
            if record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace) {
                continue; // a blank line, such as a trailing one
            }
            if record.len() != width {
                return Err(DataError::Ragged {
                    line,
                    expected: width,
                    found: record.len(),
                });
            }
            if targets.len() == MAX_CSV_ROWS {
                return Err(DataError::TooManyRows { max: MAX_CSV_ROWS });
            }
            for (index, raw) in record.iter().enumerate() {
                let value = parse_cell(raw, line, &columns[index])?;
                if index == target_index {
                    targets.push(value);
                } else {
                    features.push(value);
                }
            }
        }
        if targets.is_empty() {
            return Err(DataError::NoRows);
        }
        let target_name = columns.remove(target_index);
        Dataset::new(name, columns, target_name, features, targets)
    }
}

fn parse_cell(raw: &[u8], line: u64, column: &str) -> Result<f32, DataError> {
    let text = std::str::from_utf8(raw).map_err(|_| DataError::NotUtf8 {
        line,
        column: column.into(),
    })?;
    let text = text.trim();
    let value: f32 = text.parse().map_err(|_| DataError::NotNumeric {
        line,
        column: column.into(),
        value: text.chars().take(40).collect(),
    })?;
    if !value.is_finite() {
        return Err(DataError::NotFinite {
            line,
            column: column.into(),
            value: text.into(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(csv: &[u8]) -> Result<Dataset, DataError> {
        Dataset::from_csv(csv, "t", "y")
    }

    #[test]
    fn reads_a_good_csv_with_the_target_anywhere() {
        let d = read(b"\xEF\xBB\xBFa, y ,b\n1,2,3\n4, 5 ,6e0\n\n").unwrap();
        assert_eq!(d.feature_names, vec!["a", "b"]);
        assert_eq!(d.target_name, "y");
        assert_eq!(d.features(), &[1.0, 3.0, 4.0, 6.0]);
        assert_eq!(d.targets(), &[2.0, 5.0]);
        let quoted = read(b"\"a\",\"y\"\n\"1.5\",\"2\"\n").unwrap();
        assert_eq!(quoted.features(), &[1.5]);
    }

    #[test]
    fn every_bad_csv_names_its_line_and_column() {
        assert_eq!(read(b""), Err(DataError::Empty));
        assert_eq!(read(b"a,y\n"), Err(DataError::NoRows));
        assert_eq!(read(b"y\n1\n"), Err(DataError::NoFeatures));
        assert!(matches!(
            read(b"a,b\n1,2\n"),
            Err(DataError::MissingTarget { ref target, ref columns }) if target == "y" && columns == &["a", "b"]
        ));
        assert_eq!(
            read(b"a,y\n1,2\n3\n"),
            Err(DataError::Ragged {
                line: 3,
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            read(b"a,y\n1,2\n3,4,5\n"),
            Err(DataError::Ragged {
                line: 3,
                expected: 2,
                found: 3
            })
        );
        assert_eq!(
            read(b"a,y\n1,2\nabc,4\n"),
            Err(DataError::NotNumeric {
                line: 3,
                column: "a".into(),
                value: "abc".into()
            })
        );
        assert_eq!(
            read(b"a,y\n1,\n"),
            Err(DataError::NotNumeric {
                line: 2,
                column: "y".into(),
                value: "".into()
            })
        );
        assert_eq!(
            read(b"a,y\nNaN,1\n"),
            Err(DataError::NotFinite {
                line: 2,
                column: "a".into(),
                value: "NaN".into()
            })
        );
        assert_eq!(
            read(b"a,y\n1,inf\n"),
            Err(DataError::NotFinite {
                line: 2,
                column: "y".into(),
                value: "inf".into()
            })
        );
        assert_eq!(
            read(b"a,y\n1,2\n\xff,3\n"),
            Err(DataError::NotUtf8 {
                line: 3,
                column: "a".into()
            })
        );
        assert_eq!(
            read(b"a,a,y\n1,2,3\n"),
            Err(DataError::DuplicateColumn { column: "a".into() })
        );
        assert_eq!(
            read(b"a,,y\n1,2,3\n"),
            Err(DataError::EmptyColumnName { index: 2 })
        );
        let wide = (0..=MAX_CSV_COLUMNS)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(matches!(
            read(wide.as_bytes()),
            Err(DataError::TooManyColumns { .. })
        ));
        // The messages carry the position for a person to read.
        let message = read(b"a,y\n1,2\nabc,4\n").unwrap_err().to_string();
        assert!(
            message.contains("line 3") && message.contains("\"a\""),
            "{message}"
        );
    }
}

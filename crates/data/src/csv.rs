//! Numeric CSV tables: a header line, then one row of numbers per line.
//!
//! Deliberately small: comma-separated, no quoting (the data sets are plain numbers).
//! A malformed file is an error naming the line and column, never a panic.

use std::path::Path;

use crate::error::DataError;

/// A numeric table read from CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names from the header.
    pub header: Vec<String>,
    /// The values, row-major, `rows × header.len()`.
    pub values: Vec<f32>,
}

impl Table {
    /// Parses CSV bytes, which must be UTF-8: a bad byte is an error naming its line and
    /// column (the std message names neither).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Table, DataError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let offset = e.valid_up_to();
            let before = &bytes[..offset];
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            DataError::InvalidUtf8 {
                line: before.iter().filter(|&&b| b == b'\n').count() + 1,
                column: before[line_start..].iter().filter(|&&b| b == b',').count() + 1,
                offset,
                byte: bytes[offset],
            }
        })?;
        Table::parse(text)
    }

    /// Parses CSV text. Blank lines are skipped; every other line must have as many
    /// numeric fields as the header.
    pub fn parse(text: &str) -> Result<Table, DataError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or(DataError::Empty {
            what: "the CSV text".into(),
        })?;
        let header: Vec<String> = header.split(',').map(|h| h.trim().to_string()).collect();
        let mut values = Vec::new();
        for (index, line) in lines {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != header.len() {
                return Err(DataError::Ragged {
                    line: index + 1,
                    expected: header.len(),
                    got: fields.len(),
                });
            }
            for (column, field) in fields.iter().enumerate() {
                let value = field
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| DataError::NotANumber {
                        line: index + 1,
                        column: column + 1,
                        text: field.to_string(),
                    })?;
                values.push(value);
            }
        }
        if values.is_empty() {
            return Err(DataError::Empty {
                what: "the CSV's data rows".into(),
            });
        }
        Ok(Table { header, values })
    }

    /// Number of data rows.
    pub fn rows(&self) -> usize {
        self.values.len() / self.header.len()
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.header.len()
    }

    /// Splits off the last column: (features `rows × (cols − 1)`, last column).
    pub fn split_last_column(&self) -> (Vec<f32>, Vec<f32>) {
        let cols = self.cols();
        let mut features = Vec::with_capacity(self.rows() * (cols - 1));
        let mut last = Vec::with_capacity(self.rows());
        for row in self.values.chunks_exact(cols) {
            features.extend_from_slice(&row[..cols - 1]);
            last.push(row[cols - 1]);
        }
        (features, last)
    }
}

/// Reads and parses a CSV file; errors name the file.
pub fn read_csv(path: impl AsRef<Path>) -> Result<Table, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Table::parse_bytes(&bytes).map_err(|e| DataError::InFile {
        path: path.display().to_string(),
        error: Box::new(e),
    })
}

//! Issue 12: an invalid UTF-8 byte in a CSV file is an error naming its line and column.

use tapegrad_data::{read_csv, DataError, Table};

#[test]
fn invalid_utf8_names_line_and_column() {
    let bytes = b"a,b,y\n1,2,3\n4,5\xff,6\n";
    let err = Table::parse_bytes(bytes).unwrap_err();
    assert_eq!(
        err,
        DataError::InvalidUtf8 {
            line: 3,
            column: 2,
            offset: 15,
            byte: 0xff
        }
    );
    assert_eq!(
        err.to_string(),
        "line 3, column 2: invalid UTF-8 (byte 0xff at offset 15)"
    );
    // In the header, first column.
    assert!(matches!(
        Table::parse_bytes(b"\xc3(,b\n1,2\n"),
        Err(DataError::InvalidUtf8 {
            line: 1,
            column: 1,
            offset: 0,
            ..
        })
    ));
    // Valid UTF-8 parses as text does.
    assert_eq!(
        Table::parse_bytes("é,b\n1,2\n".as_bytes()).unwrap(),
        Table::parse("é,b\n1,2\n").unwrap()
    );

    let dir = std::env::temp_dir().join(format!("tapegrad-csv-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.csv");
    std::fs::write(&path, bytes).unwrap();
    let msg = read_csv(&path).unwrap_err().to_string();
    assert!(
        msg.contains("latin1.csv") && msg.contains("line 3, column 2: invalid UTF-8"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

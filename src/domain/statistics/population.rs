//! The population (key) file of a statistics order: who is in the study, and the project's serial
//! number (löpnummer) for each person, which is all an extract is keyed by.
//!
//! The format is text, one person per line: the identity number, the serial number, then any
//! further variables the order agreed on (e.g. an index date), separated by `;` (or `,` or a tab,
//! the same on every line). A first line whose first column is not an identity number is a header
//! and names the columns. Blank lines are skipped.
//!
//! A file is taken whole or not at all: a research population that silently lost a person is worse
//! than one sent again. So every line is checked, and the answer lists every rejected line by its
//! number and reason. No reason ever repeats an identity number (or a serial number, which would
//! tie the pseudonym to a line of a file that holds the number).

use std::collections::HashMap;

use time::Date;

use crate::domain::Personnummer;

/// The most persons one file may hold.
pub const MAX_PERSONS: usize = 5_000_000;
/// The longest serial number.
pub const MAX_SERIAL_LEN: usize = 32;

/// One person of the population.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub person: Personnummer,
    /// The project's serial number: the only key the extract carries.
    pub serial: String,
    /// The further variables, in the file's column order.
    pub extra: Vec<String>,
}

/// A checked population file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Population {
    /// The names of the further columns (from the header, or `column3`, … without one).
    pub extra_columns: Vec<String>,
    pub members: Vec<Member>,
}

/// A rejected line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based, as an editor counts.
    pub line: usize,
    pub reason: String,
}

/// Why a file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PopulationRefused {
    #[error("the file holds no persons")]
    Empty,
    #[error("the file is not UTF-8 text")]
    NotText,
    #[error("the file holds more than {MAX_PERSONS} persons; split the order")]
    TooLarge,
    #[error("{} line(s) rejected; nothing was stored", .0.len())]
    Lines(Vec<LineProblem>),
}

/// Checks a population file, read as of `today` (for identity numbers in the ten-digit form).
pub fn parse(bytes: &[u8], today: Date) -> Result<Population, PopulationRefused> {
    let text = std::str::from_utf8(bytes).map_err(|_| PopulationRefused::NotText)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let Some(&(first_line, first)) = lines.peek() else {
        return Err(PopulationRefused::Empty);
    };
    let separator = [';', '\t', ',']
        .into_iter()
        .find(|s| first.contains(*s))
        .unwrap_or(';');
    let split = |line: &str| -> Vec<String> { line.split(separator).map(|c| c.trim().to_string()).collect() };
    let first_columns = split(first);
    let has_header = Personnummer::parse(&first_columns[0], today).is_err()
        && !first_columns[0].chars().any(|c| c.is_ascii_digit());
    let columns = first_columns.len();
    let extra_columns = if has_header {
        lines.next();
        first_columns[2.min(columns)..].to_vec()
    } else {
        (3..=columns).map(|i| format!("column{i}")).collect()
    };
    if columns < 2 {
        return Err(PopulationRefused::Lines(vec![LineProblem {
            line: first_line,
            reason: "a line needs at least two columns: the identity number and the serial number"
                .to_string(),
        }]));
    }

    let mut members = Vec::new();
    let mut problems = Vec::new();
    let mut persons: HashMap<String, usize> = HashMap::new();
    let mut serials: HashMap<String, usize> = HashMap::new();
    for (line, text) in lines {
        if members.len() >= MAX_PERSONS {
            return Err(PopulationRefused::TooLarge);
        }
        let mut reject = |reason: String| problems.push(LineProblem { line, reason });
        let cells = split(text);
        if cells.len() != columns {
            reject(format!("{} columns where the file has {columns}", cells.len()));
            continue;
        }
        let person = match Personnummer::parse(&cells[0], today) {
            Ok(p) => p,
            Err(e) => {
                reject(format!("the identity number is not valid: {e}"));
                continue;
            }
        };
        let serial = cells[1].clone();
        if serial.is_empty()
            || serial.len() > MAX_SERIAL_LEN
            || !serial
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            reject(format!(
                "the serial number must be 1 to {MAX_SERIAL_LEN} letters, digits, '-' or '_'"
            ));
            continue;
        }
        if let Some(earlier) = persons.get(person.as_storage()) {
            reject(format!("the same person as on line {earlier}"));
            continue;
        }
        if let Some(earlier) = serials.get(&serial) {
            reject(format!("the same serial number as on line {earlier}"));
            continue;
        }
        persons.insert(person.as_storage().to_string(), line);
        serials.insert(serial.clone(), line);
        members.push(Member {
            person,
            serial,
            extra: cells[2..].to_vec(),
        });
    }
    if !problems.is_empty() {
        return Err(PopulationRefused::Lines(problems));
    }
    if members.is_empty() {
        return Err(PopulationRefused::Empty);
    }
    Ok(Population {
        extra_columns,
        members,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    const TODAY: Date = date!(2026 - 12 - 01);

    fn lines_of(result: Result<Population, PopulationRefused>) -> Vec<(usize, String)> {
        match result {
            Err(PopulationRefused::Lines(problems)) => {
                problems.into_iter().map(|p| (p.line, p.reason)).collect()
            }
            other => panic!("expected line problems, got {other:?}"),
        }
    }

    #[test]
    fn a_file_with_a_header_and_an_extra_column() {
        let file =
            "personnummer;lopnr;indexdatum\r\n19900704-2386;A1;2024-01-01\n\n199501132386;A2;2024-02-01\n";
        let p = parse(file.as_bytes(), TODAY).unwrap();
        assert_eq!(p.extra_columns, vec!["indexdatum"]);
        assert_eq!(p.members.len(), 2);
        assert_eq!(p.members[1].serial, "A2");
        assert_eq!(p.members[1].person.as_storage(), "199501132386");
        assert_eq!(p.members[0].extra, vec!["2024-01-01"]);
    }

    #[test]
    fn without_a_header_with_commas() {
        let p = parse(b"900704-2386,1\n950113-2386,2\n", TODAY).unwrap();
        assert!(p.extra_columns.is_empty());
        assert_eq!(p.members.len(), 2);
    }

    #[test]
    fn every_bad_line_is_named_and_no_number_is_repeated() {
        let file = "19900704-2386;1\n19900704-2387;2\n19900704-2386;3\n19950113-2386;1\n19950113-2386\n201701012393;x y\n";
        let problems = lines_of(parse(file.as_bytes(), TODAY));
        assert_eq!(
            problems.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6]
        );
        assert!(problems[0].1.contains("not valid"), "{problems:?}");
        assert_eq!(problems[1].1, "the same person as on line 1");
        assert_eq!(problems[2].1, "the same serial number as on line 1");
        assert!(problems[3].1.contains("1 columns where the file has 2"));
        assert!(problems[4].1.contains("serial number"));
        for (_, reason) in &problems {
            for digits in ["9007042386", "900704", "2387", "9501132386", "2393"] {
                assert!(!reason.contains(digits), "{reason}");
            }
        }
    }

    #[test]
    fn a_first_line_with_one_column_is_named_by_its_own_number() {
        // The fuzz target `population` checks that a refusal names a line that is not blank:
        // blank lines before the first line made this refusal name line 1 instead.
        assert_eq!(
            lines_of(parse(b"\n  \r\npersonnummer\n19900704-2386\n", TODAY)),
            vec![(
                3,
                "a line needs at least two columns: the identity number and the serial number".to_string()
            )]
        );
    }

    #[test]
    fn empty_and_not_text_files_are_refused() {
        assert_eq!(parse(b"", TODAY), Err(PopulationRefused::Empty));
        assert_eq!(parse(b"\n  \n", TODAY), Err(PopulationRefused::Empty));
        assert_eq!(
            parse(b"personnummer;lopnr\n", TODAY),
            Err(PopulationRefused::Empty)
        );
        assert_eq!(parse(&[0xff, 0xfe, 0x00], TODAY), Err(PopulationRefused::NotText));
        assert!(matches!(
            parse(b"19900704-2386\n", TODAY),
            Err(PopulationRefused::Lines(_))
        ));
    }
}

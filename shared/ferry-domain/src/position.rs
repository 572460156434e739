//! Binlog positions: where a change is in the source's binlog.
//!
//! A [`Position`] is a binlog file and a byte offset in it, plus, when the server uses GTIDs,
//! the GTID set executed up to there. The text form is `file:offset` or
//! `file:offset@gtid-set`, e.g. `binlog.000042:1873@0-1-1205`; it is what the API shows, what
//! the CLI accepts, and what the checkpoints store.
//!
//! # Ordering
//!
//! File names order by base name, then by their numeric suffix (`binlog.000010` after
//! `binlog.000009`, and `binlog.1000000` after `binlog.999999`). Two positions of the same
//! server order by file then offset. Equal file and offset with different GTID sets order by
//! GTID containment, and are unordered when neither set contains the other; that is the only
//! case where [`Position::partial_cmp`] answers `None`. Across a failover to another server,
//! compare the GTID sets, not the positions.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::gtid::{GtidParseError, GtidSet};

/// Why a string is not a binlog position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionParseError {
    #[error(
        "`{0}` is not a binlog file name: expected a base name, a dot and a number, like binlog.000042"
    )]
    File(String),
    #[error(
        "`{0}` is not a binlog position: expected file:offset or file:offset@gtid-set, like binlog.000042:1873"
    )]
    Shape(String),
    #[error("the offset `{0}` is not a number of bytes")]
    Offset(String),
    #[error(transparent)]
    Gtid(#[from] GtidParseError),
}

/// A binlog file name: base name and index (`binlog.000042`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BinlogFile {
    name: String,
    /// Length of the base name, up to the last dot.
    base_len: usize,
    index: u64,
}

impl BinlogFile {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn base(&self) -> &str {
        &self.name[..self.base_len]
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    /// The file the server writes after this one: the next index, padded as this one is
    /// (`binlog.000009` → `binlog.000010`).
    pub fn next(&self) -> Self {
        let width = self.name.len() - self.base_len - 1;
        let index = self.index.saturating_add(1);
        Self {
            name: format!("{}.{index:0width$}", self.base()),
            base_len: self.base_len,
            index,
        }
    }
}

impl FromStr for BinlogFile {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PositionParseError::File(s.chars().take(120).collect());
        let (base, index) = s.rsplit_once('.').ok_or_else(bad)?;
        let base_ok = !base.is_empty()
            && base.len() <= 200
            && base
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !base_ok || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Self {
            name: s.to_owned(),
            base_len: base.len(),
            index: index.parse().map_err(|_| bad())?,
        })
    }
}

impl TryFrom<String> for BinlogFile {
    type Error = PositionParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BinlogFile> for String {
    fn from(f: BinlogFile) -> String {
        f.name
    }
}

impl fmt::Display for BinlogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Ord for BinlogFile {
    fn cmp(&self, other: &Self) -> Ordering {
        self.base()
            .cmp(other.base())
            .then(self.index.cmp(&other.index))
            // Same base and index written with different zero padding: still a total order.
            .then_with(|| self.name.cmp(&other.name))
    }
}

impl PartialOrd for BinlogFile {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A position in a source's binlog.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    file: BinlogFile,
    offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gtid: Option<GtidSet>,
}

impl Position {
    /// A position; an empty GTID state (a server's first binlog before its first GTID) is
    /// none, so every position prints in a form that parses back.
    pub fn new(file: BinlogFile, offset: u64, gtid: Option<GtidSet>) -> Self {
        let gtid = gtid.filter(|g| !g.is_empty());
        Self { file, offset, gtid }
    }

    pub fn file(&self) -> &BinlogFile {
        &self.file
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn gtid(&self) -> Option<&GtidSet> {
        self.gtid.as_ref()
    }

    /// Compares file and offset only: the order of events in one server's binlog.
    pub fn cmp_file_offset(&self, other: &Self) -> Ordering {
        self.file
            .cmp(&other.file)
            .then(self.offset.cmp(&other.offset))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.cmp_file_offset(other) {
            Ordering::Equal => match (&self.gtid, &other.gtid) {
                (None, None) => Some(Ordering::Equal),
                (Some(a), Some(b)) => a.partial_cmp(b),
                _ => None,
            },
            o => Some(o),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)?;
        if let Some(g) = &self.gtid {
            write!(f, "@{g}")?;
        }
        Ok(())
    }
}

impl FromStr for Position {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || PositionParseError::Shape(s.chars().take(120).collect());
        let (file_offset, gtid) = match s.split_once('@') {
            // `file:offset@` is how an empty GTID state printed before Ferry left it out.
            Some((fo, "")) => (fo, None),
            Some((fo, g)) => (fo, Some(g.parse::<GtidSet>()?)),
            None => (s, None),
        };
        let (file, offset) = file_offset.rsplit_once(':').ok_or_else(shape)?;
        if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PositionParseError::Offset(
                offset.chars().take(40).collect(),
            ));
        }
        Ok(Self {
            file: file.parse()?,
            offset: offset
                .parse()
                .map_err(|_| PositionParseError::Offset(offset.to_owned()))?,
            gtid,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_next_file_keeps_the_padding() {
        let f: BinlogFile = "mysql-bin.000009".parse().unwrap();
        assert_eq!(f.next().name(), "mysql-bin.000010");
        assert_eq!(f.next().index(), 10);
        assert!(f.next() > f);
        let wide: BinlogFile = "binlog.999999".parse().unwrap();
        assert_eq!(wide.next().name(), "binlog.1000000");
        assert_eq!(wide.next(), "binlog.1000000".parse().unwrap());
    }

    use super::*;
    use crate::gtid::tests::gtid_set;
    use proptest::prelude::*;

    fn pos(s: &str) -> Position {
        s.parse().unwrap()
    }

    #[test]
    fn text_forms() {
        let p = pos("binlog.000042:1873@0-1-1205");
        assert_eq!(p.file().base(), "binlog");
        assert_eq!(p.file().index(), 42);
        assert_eq!(p.offset(), 1873);
        assert_eq!(p.to_string(), "binlog.000042:1873@0-1-1205");
        let m = pos("mysql-bin.000003:4@3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5");
        assert!(matches!(m.gtid(), Some(GtidSet::Mysql(_))));
        assert_eq!(pos("a.b.7:4").file().base(), "a.b");
        // A server's first binlog before its first GTID: an empty state is none, printed
        // without `@` (and `@` with nothing after it, as it once printed, reads as none).
        let empty = Position::new(
            "binlog.000001".parse().unwrap(),
            671,
            Some(GtidSet::MariaDb(Default::default())),
        );
        assert_eq!(empty.gtid(), None);
        assert_eq!(empty.to_string(), "binlog.000001:671");
        assert_eq!(pos("binlog.000001:671@"), empty);
        for bad in [
            "",
            "binlog.000001",
            "binlog.000001:",
            "binlog.000001:-1",
            "binlog.000001:1x",
            "binlog:4",
            ".000001:4",
            "bin log.000001:4",
            "binlog.000001:4@zz",
            "binlog.000001:99999999999999999999999",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ordering() {
        assert!(pos("binlog.000009:900") < pos("binlog.000010:4"));
        assert!(pos("binlog.999999:900") < pos("binlog.1000000:4"));
        assert!(pos("binlog.000010:4") < pos("binlog.000010:5"));
        assert!(pos("binlog.000010:4@0-1-4") < pos("binlog.000010:4@0-1-5"));
        assert_eq!(
            pos("binlog.000010:4@0-1-4").partial_cmp(&pos("binlog.000010:4")),
            None
        );
        assert_eq!(
            pos("binlog.000010:4@0-1-4").partial_cmp(&pos("binlog.000010:4@0-1-4")),
            Some(Ordering::Equal)
        );
    }

    #[test]
    fn json_shape() {
        let p = pos("binlog.000002:120@0-1-3");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["file"], "binlog.000002");
        assert_eq!(json["offset"], 120);
        assert_eq!(json["gtid"], "0-1-3");
        assert_eq!(serde_json::from_value::<Position>(json).unwrap(), p);
    }

    fn position() -> impl Strategy<Value = Position> {
        (
            "[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}",
            0u64..10_000_000,
            1u32..7,
            any::<u64>(),
            proptest::option::of(gtid_set()),
        )
            .prop_map(|(base, index, width, offset, gtid)| {
                let file = format!("{base}.{index:0width$}", width = width as usize);
                Position::new(file.parse().unwrap(), offset, gtid)
            })
    }

    proptest! {
        #[test]
        fn print_parse_round_trip(p in position()) {
            let text = p.to_string();
            let back: Position = text.parse().unwrap();
            prop_assert_eq!(&back, &p);
            prop_assert_eq!(back.to_string(), text);
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
        }

        #[test]
        fn file_offset_order_is_total_and_consistent(a in position(), b in position(), c in position()) {
            // Antisymmetric, transitive, and agreeing with partial_cmp whenever files differ.
            prop_assert_eq!(a.cmp_file_offset(&b), b.cmp_file_offset(&a).reverse());
            if a.cmp_file_offset(&b) != Ordering::Greater && b.cmp_file_offset(&c) != Ordering::Greater {
                prop_assert_ne!(a.cmp_file_offset(&c), Ordering::Greater);
            }
            if a.cmp_file_offset(&b) != Ordering::Equal {
                prop_assert_eq!(a.partial_cmp(&b), Some(a.cmp_file_offset(&b)));
            }
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<Position>();
        }
    }
}

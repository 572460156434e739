//! GTID sets in MariaDB's and MySQL's forms.
//!
//! - **MariaDB**: a GTID is `domain-server-sequence` (`0-1-15`); a position is one GTID per
//!   replication domain, comma-separated (`0-1-15,1-2-7`), as `@@gtid_binlog_pos` and
//!   `@@gtid_slave_pos` print it. Sequence numbers grow within a domain, so one position
//!   contains another when it is at least as far in every domain.
//! - **MySQL**: a set maps a source UUID (and, from 8.4, a tag) to intervals of transaction
//!   numbers: `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,…` or
//!   `3e11fa47-…:1-5:mytag:1-3`. One set contains another when it holds every transaction of
//!   it.
//!
//! Both print canonically (MariaDB domains ascending; MySQL UUIDs lowercase and ascending,
//! untagged intervals first, tags ascending, intervals merged), so printing a parsed set and
//! parsing it again gives the same set.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not a GTID set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a GTID set: {reason}")]
pub struct GtidParseError {
    input: String,
    reason: String,
}

impl GtidParseError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        let mut shown: String = input.chars().take(120).collect();
        if shown.len() < input.len() {
            shown.push('…');
        }
        Self {
            input: shown,
            reason: reason.into(),
        }
    }

    pub fn hint(&self) -> &'static str {
        "give a MariaDB position like `0-1-15,1-2-7` (@@gtid_binlog_pos) or a MySQL set like \
         `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5` (@@gtid_executed)"
    }
}

/// One MariaDB GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MariaDbGtid {
    pub domain: u32,
    pub server: u32,
    pub sequence: u64,
}

impl fmt::Display for MariaDbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.sequence)
    }
}

impl FromStr for MariaDbGtid {
    type Err = GtidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().splitn(3, '-');
        let (Some(d), Some(sv), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(GtidParseError::new(
                s,
                "a MariaDB GTID is domain-server-sequence",
            ));
        };
        fn num<'a>(s: &str, p: &'a str, what: &str) -> Result<&'a str, GtidParseError> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                Err(GtidParseError::new(
                    s,
                    format!("the {what} is not a number"),
                ))
            } else {
                Ok(p)
            }
        }
        let overflow = |what: &str| GtidParseError::new(s, format!("the {what} is out of range"));
        Ok(Self {
            domain: num(s, d, "domain")?
                .parse()
                .map_err(|_| overflow("domain"))?,
            server: num(s, sv, "server id")?
                .parse()
                .map_err(|_| overflow("server id"))?,
            sequence: num(s, seq, "sequence number")?
                .parse()
                .map_err(|_| overflow("sequence number"))?,
        })
    }
}

/// A MariaDB GTID position: the last GTID of each replication domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MariaDbGtidSet(BTreeMap<u32, MariaDbGtid>);

impl MariaDbGtidSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `gtid` as the latest of its domain.
    pub fn advance(&mut self, gtid: MariaDbGtid) {
        self.0.insert(gtid.domain, gtid);
    }

    /// Whether the transaction `gtid` is at or before this position.
    pub fn contains(&self, gtid: &MariaDbGtid) -> bool {
        self.0
            .get(&gtid.domain)
            .is_some_and(|g| g.sequence >= gtid.sequence)
    }

    pub fn iter(&self) -> impl Iterator<Item = &MariaDbGtid> {
        self.0.values()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn is_subset(&self, other: &Self) -> bool {
        self.0.values().all(|g| other.contains(g))
    }
}

impl fmt::Display for MariaDbGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for MariaDbGtidSet {
    type Err = GtidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = Self::new();
        for part in s.split(',') {
            let g: MariaDbGtid = part
                .parse()
                .map_err(|e: GtidParseError| GtidParseError::new(s, e.reason))?;
            if set.0.contains_key(&g.domain) {
                return Err(GtidParseError::new(
                    s,
                    format!(
                        "domain {} appears twice; a position holds one GTID per domain \
                         (use @@gtid_binlog_pos, not @@gtid_binlog_state)",
                        g.domain
                    ),
                ));
            }
            set.advance(g);
        }
        Ok(set)
    }
}

impl PartialOrd for MariaDbGtidSet {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        containment(self == other, self.is_subset(other), other.is_subset(self))
    }
}

/// An inclusive interval of MySQL transaction numbers, `start >= 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Interval {
    pub start: u64,
    pub end: u64,
}

/// A MySQL source id: the server UUID and, from MySQL 8.4, an optional tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sid {
    pub uuid: Uuid,
    pub tag: Option<String>,
}

/// A MySQL GTID set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MysqlGtidSet(BTreeMap<Sid, Vec<Interval>>);

impl MysqlGtidSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the transactions `start..=end` of `sid`.
    pub fn add(&mut self, sid: Sid, start: u64, end: u64) {
        let intervals = self.0.entry(sid).or_default();
        intervals.push(Interval { start, end });
        intervals.sort();
        let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
        for iv in intervals.drain(..) {
            match merged.last_mut() {
                Some(last) if iv.start <= last.end.saturating_add(1) => {
                    last.end = last.end.max(iv.end);
                }
                _ => merged.push(iv),
            }
        }
        *intervals = merged;
    }

    /// Whether transaction `gno` of `sid` is in the set.
    pub fn contains(&self, sid: &Sid, gno: u64) -> bool {
        self.0
            .get(sid)
            .is_some_and(|ivs| ivs.iter().any(|iv| iv.start <= gno && gno <= iv.end))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Sid, &[Interval])> {
        self.0.iter().map(|(s, v)| (s, v.as_slice()))
    }

    fn is_subset(&self, other: &Self) -> bool {
        self.0.iter().all(|(sid, ivs)| {
            let Some(theirs) = other.0.get(sid) else {
                return false;
            };
            ivs.iter().all(|iv| {
                theirs
                    .iter()
                    .any(|t| t.start <= iv.start && iv.end <= t.end)
            })
        })
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last_uuid: Option<Uuid> = None;
        for (sid, ivs) in &self.0 {
            if last_uuid == Some(sid.uuid) {
                // Another tag of the same UUID continues the element.
            } else {
                if last_uuid.is_some() {
                    f.write_str(",")?;
                }
                write!(f, "{}", sid.uuid.hyphenated())?;
                last_uuid = Some(sid.uuid);
            }
            if let Some(tag) = &sid.tag {
                write!(f, ":{tag}")?;
            }
            for iv in ivs {
                if iv.start == iv.end {
                    write!(f, ":{}", iv.start)?;
                } else {
                    write!(f, ":{}-{}", iv.start, iv.end)?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = GtidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = Self::new();
        // MySQL prints long sets over several lines.
        for element in s.split(',').map(str::trim) {
            let mut parts = element.split(':');
            let uuid_text = parts.next().unwrap_or_default();
            let uuid = Uuid::try_parse(uuid_text)
                .map_err(|_| GtidParseError::new(s, format!("`{uuid_text}` is not a UUID")))?;
            let mut tag: Option<String> = None;
            let mut intervals_of_tag = 0;
            let mut any = false;
            for part in parts {
                if part.starts_with(|c: char| c.is_ascii_digit()) {
                    let (start, end) = parse_interval(s, part)?;
                    set.add(
                        Sid {
                            uuid,
                            tag: tag.clone(),
                        },
                        start,
                        end,
                    );
                    intervals_of_tag += 1;
                    any = true;
                } else {
                    if tag.is_some() && intervals_of_tag == 0 {
                        return Err(GtidParseError::new(s, "a tag without intervals"));
                    }
                    tag = Some(parse_tag(s, part)?);
                    intervals_of_tag = 0;
                }
            }
            if !any || intervals_of_tag == 0 {
                return Err(GtidParseError::new(
                    s,
                    format!("`{uuid_text}` has no transaction interval"),
                ));
            }
        }
        Ok(set)
    }
}

fn parse_interval(input: &str, part: &str) -> Result<(u64, u64), GtidParseError> {
    let bad = || GtidParseError::new(input, format!("`{part}` is not an interval like 1-5"));
    let number = |t: &str| {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u64>().map_err(|_| bad())
    };
    let (start, end) = match part.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(part)?;
            (n, n)
        }
    };
    if start == 0 || end < start {
        return Err(GtidParseError::new(
            input,
            format!("`{part}` is empty or starts at 0; transaction numbers start at 1"),
        ));
    }
    Ok((start, end))
}

/// A MySQL 8.4 GTID tag: 1 to 32 characters of `[a-z0-9_]`, starting with a letter or `_`;
/// MySQL folds tags to lower case.
fn parse_tag(input: &str, part: &str) -> Result<String, GtidParseError> {
    let tag = part.to_ascii_lowercase();
    let ok = (1..=32).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(tag)
    } else {
        Err(GtidParseError::new(
            input,
            format!("`{part}` is neither an interval nor a tag"),
        ))
    }
}

impl PartialOrd for MysqlGtidSet {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        containment(self == other, self.is_subset(other), other.is_subset(self))
    }
}

/// Orders sets by containment; sets neither of which contains the other are unordered.
fn containment(equal: bool, sub: bool, sup: bool) -> Option<Ordering> {
    match (equal, sub, sup) {
        (true, _, _) => Some(Ordering::Equal),
        (false, true, false) => Some(Ordering::Less),
        (false, false, true) => Some(Ordering::Greater),
        // Same transactions but different servers recorded (MariaDB): not comparable.
        _ => None,
    }
}

/// A GTID set of either flavor. Serialized as its text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GtidSet {
    MariaDb(MariaDbGtidSet),
    Mysql(MysqlGtidSet),
}

impl GtidSet {
    /// Whether the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::MariaDb(s) => s.is_empty(),
            Self::Mysql(s) => s.is_empty(),
        }
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MariaDb(s) => s.fmt(f),
            Self::Mysql(s) => s.fmt(f),
        }
    }
}

impl FromStr for GtidSet {
    type Err = GtidParseError;

    /// Tells the flavors apart by the first element: a MySQL element has a `:` after its UUID.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(GtidParseError::new(s, "it is empty"));
        }
        if s.contains(':') {
            s.parse().map(Self::Mysql)
        } else {
            s.parse().map(Self::MariaDb)
        }
    }
}

impl TryFrom<String> for GtidSet {
    type Error = GtidParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<GtidSet> for String {
    fn from(g: GtidSet) -> String {
        g.to_string()
    }
}

impl PartialOrd for GtidSet {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Self::MariaDb(a), Self::MariaDb(b)) => a.partial_cmp(b),
            (Self::Mysql(a), Self::Mysql(b)) => a.partial_cmp(b),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mariadb_positions() {
        let s: GtidSet = "1-2-7,0-1-15".parse().unwrap();
        assert_eq!(s.to_string(), "0-1-15,1-2-7");
        let GtidSet::MariaDb(m) = &s else { panic!() };
        assert!(m.contains(&"0-9-15".parse().unwrap()));
        assert!(!m.contains(&"0-1-16".parse().unwrap()));
        assert!(!m.contains(&"2-1-1".parse().unwrap()));
        for bad in [
            "0-1",
            "0-1-x",
            "a-1-2",
            "0-1-2,0-1-3",
            "0-1-2,",
            "4294967296-1-1",
            "0--1-2",
        ] {
            assert!(bad.parse::<GtidSet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mysql_sets() {
        let text = "3E11FA47-71CA-11E1-9E33-C80AA9429562:7:1-5:6, \
                    00000000-0000-0000-0000-000000000001:23";
        let s: GtidSet = text.parse().unwrap();
        assert_eq!(
            s.to_string(),
            "00000000-0000-0000-0000-000000000001:23,3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7"
        );
        let tagged: GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:TagB:3:taga:1-2"
            .parse()
            .unwrap();
        assert_eq!(
            tagged.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:taga:1-2:tagb:3"
        );
        for bad in [
            "3e11fa47-71ca-11e1-9e33-c80aa9429562",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:0-5",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-1",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:tag",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1:9tag:2",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:a:b:1",
            "not-a-uuid:1-5",
            "",
        ] {
            assert!(bad.parse::<GtidSet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn containment_orders_sets() {
        let p = |s: &str| s.parse::<GtidSet>().unwrap();
        assert!(p("0-1-5") < p("0-1-6"));
        assert!(p("0-1-5") < p("0-1-5,1-1-1"));
        assert_eq!(p("0-1-5,1-1-2").partial_cmp(&p("0-1-6,1-1-1")), None);
        assert_eq!(p("0-1-5").partial_cmp(&p("0-2-5")), None);
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert!(p(&format!("{u}:1-5")) < p(&format!("{u}:1-9")));
        assert!(p(&format!("{u}:2-3")) < p(&format!("{u}:1-5")));
        assert_eq!(
            p(&format!("{u}:1-5")).partial_cmp(&p(&format!("{u}:6-9"))),
            None
        );
        assert_eq!(p("0-1-5").partial_cmp(&p(&format!("{u}:1"))), None);
    }

    pub(crate) fn mariadb_set() -> impl Strategy<Value = MariaDbGtidSet> {
        proptest::collection::btree_map(any::<u32>(), (any::<u32>(), any::<u64>()), 1..4).prop_map(
            |m| {
                let mut s = MariaDbGtidSet::new();
                for (domain, (server, sequence)) in m {
                    s.advance(MariaDbGtid {
                        domain,
                        server,
                        sequence,
                    });
                }
                s
            },
        )
    }

    pub(crate) fn mysql_set() -> impl Strategy<Value = MysqlGtidSet> {
        let element = (
            any::<u128>(),
            proptest::option::of("[a-z_][a-z0-9_]{0,31}"),
            proptest::collection::vec((1u64..1_000_000, 0u64..1_000), 1..4),
        );
        proptest::collection::vec(element, 1..4).prop_map(|elements| {
            let mut s = MysqlGtidSet::new();
            for (uuid, tag, ivs) in elements {
                for (start, len) in ivs {
                    s.add(
                        Sid {
                            uuid: Uuid::from_u128(uuid),
                            tag: tag.clone(),
                        },
                        start,
                        start + len,
                    );
                }
            }
            s
        })
    }

    pub(crate) fn gtid_set() -> impl Strategy<Value = GtidSet> {
        prop_oneof![
            mariadb_set().prop_map(GtidSet::MariaDb),
            mysql_set().prop_map(GtidSet::Mysql)
        ]
    }

    proptest! {
        #[test]
        fn print_parse_round_trip(set in gtid_set()) {
            let text = set.to_string();
            let back: GtidSet = text.parse().unwrap();
            prop_assert_eq!(&back, &set);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn union_contains_both(a in mysql_set(), b in mysql_set()) {
            let mut u = a.clone();
            for (sid, ivs) in b.iter() {
                for iv in ivs {
                    u.add(sid.clone(), iv.start, iv.end);
                }
            }
            prop_assert!(a <= u);
            prop_assert!(b <= u);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<GtidSet>();
        }
    }
}

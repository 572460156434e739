//! MySQL geometry values (a 4-byte SRID, then WKB) as WKT, the way JTS's `WKTWriter` writes it
//! (Maxwell's geometry text): a space before each `(`, `", "` between coordinates, whole
//! numbers without a fraction: `POINT (3 2)`,
//! `GEOMETRYCOLLECTION (POINT (1 1), LINESTRING (0 1, 1 2))`.
//!
//! Written here: the WKB of MySQL's seven 2-D types is a small, fixed grammar, and the
//! geometry crates that read it bring a whole geometry stack for one function.

use std::fmt::Write;

/// The WKT of a MySQL geometry value; `None` for bytes that are not one.
pub(crate) fn mysql_geometry_wkt(value: &[u8]) -> Option<String> {
    let mut wkb = Wkb {
        bytes: value.get(4..)?,
    };
    let mut out = String::new();
    wkb.geometry(&mut out, true, 0)?;
    wkb.bytes.is_empty().then_some(out)
}

/// Geometry collections nest; a value nested deeper than this is refused, not recursed into.
const MAX_DEPTH: u32 = 32;

struct Wkb<'a> {
    bytes: &'a [u8],
}

impl Wkb<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn u32(&mut self, little: bool) -> Option<u32> {
        let b = self.take::<4>()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn f64(&mut self, little: bool) -> Option<f64> {
        let b = self.take::<8>()?;
        Some(if little {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }

    /// A count of items each at least `min` bytes long: refused when the value cannot hold
    /// them (a damaged count is not allocated for).
    fn count(&mut self, little: bool, min: usize) -> Option<usize> {
        let n = usize::try_from(self.u32(little)?).ok()?;
        (n.checked_mul(min)? <= self.bytes.len()).then_some(n)
    }

    /// One geometry with its byte order and type; `tagged` writes its type name first (the
    /// members of a MULTIPOINT etc. are written without it).
    fn geometry(&mut self, out: &mut String, tagged: bool, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let little = match self.take::<1>()?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let kind = self.u32(little)?;
        let name = match kind {
            1 => "POINT",
            2 => "LINESTRING",
            3 => "POLYGON",
            4 => "MULTIPOINT",
            5 => "MULTILINESTRING",
            6 => "MULTIPOLYGON",
            7 => "GEOMETRYCOLLECTION",
            _ => return None,
        };
        if tagged {
            out.push_str(name);
            out.push(' ');
        }
        match kind {
            1 => {
                let (x, y) = (self.f64(little)?, self.f64(little)?);
                if x.is_nan() && y.is_nan() {
                    out.push_str("EMPTY");
                } else {
                    out.push('(');
                    coordinate(out, x, y);
                    out.push(')');
                }
            }
            2 => self.points(out, little)?,
            3 => self.rings(out, little)?,
            _ => {
                let n = self.count(little, 5)?;
                if n == 0 {
                    out.push_str("EMPTY");
                    return Some(());
                }
                out.push('(');
                for i in 0..n {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    // Members of a collection carry their type name; of a MULTI*, not.
                    self.geometry(out, kind == 7, depth + 1)?;
                }
                out.push(')');
            }
        }
        Some(())
    }

    /// `(x y, x y, …)`, or `EMPTY`.
    fn points(&mut self, out: &mut String, little: bool) -> Option<()> {
        let n = self.count(little, 16)?;
        if n == 0 {
            out.push_str("EMPTY");
            return Some(());
        }
        out.push('(');
        for i in 0..n {
            if i > 0 {
                out.push_str(", ");
            }
            let (x, y) = (self.f64(little)?, self.f64(little)?);
            coordinate(out, x, y);
        }
        out.push(')');
        Some(())
    }

    /// `((ring), (ring))`, or `EMPTY`.
    fn rings(&mut self, out: &mut String, little: bool) -> Option<()> {
        let n = self.count(little, 4)?;
        if n == 0 {
            out.push_str("EMPTY");
            return Some(());
        }
        out.push('(');
        for i in 0..n {
            if i > 0 {
                out.push_str(", ");
            }
            self.points(out, little)?;
        }
        out.push(')');
        Some(())
    }
}

/// `x y`, each as JTS prints it: plain decimal, no exponent, no `.0` on whole numbers.
fn coordinate(out: &mut String, x: f64, y: f64) {
    let _ = write!(out, "{x} {y}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64, y: f64) -> Vec<u8> {
        let mut b = vec![1, 1, 0, 0, 0];
        b.extend(x.to_le_bytes());
        b.extend(y.to_le_bytes());
        b
    }

    fn srid0(wkb: Vec<u8>) -> Vec<u8> {
        [vec![0, 0, 0, 0], wkb].concat()
    }

    #[test]
    fn points_and_collections_as_jts_writes_them() {
        assert_eq!(
            mysql_geometry_wkt(&srid0(point(3.0, 2.0))).unwrap(),
            "POINT (3 2)"
        );
        assert_eq!(
            mysql_geometry_wkt(&srid0(point(1.5, -0.25))).unwrap(),
            "POINT (1.5 -0.25)"
        );
        let mut line = vec![1, 2, 0, 0, 0, 4, 0, 0, 0];
        for (x, y) in [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0)] {
            line.extend(f64::to_le_bytes(x));
            line.extend(f64::to_le_bytes(y));
        }
        let mut collection = vec![1, 7, 0, 0, 0, 2, 0, 0, 0];
        collection.extend(point(1.0, 1.0));
        collection.extend(&line);
        assert_eq!(
            mysql_geometry_wkt(&srid0(collection)).unwrap(),
            "GEOMETRYCOLLECTION (POINT (1 1), LINESTRING (0 1, 1 2, 2 3, 3 4))"
        );
        let mut multi = vec![1, 4, 0, 0, 0, 2, 0, 0, 0];
        multi.extend(point(1.0, 1.0));
        multi.extend(point(2.0, 2.0));
        assert_eq!(
            mysql_geometry_wkt(&srid0(multi)).unwrap(),
            "MULTIPOINT ((1 1), (2 2))"
        );
        let mut polygon = vec![1, 3, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0];
        for (x, y) in [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)] {
            polygon.extend(f64::to_le_bytes(x));
            polygon.extend(f64::to_le_bytes(y));
        }
        assert_eq!(
            mysql_geometry_wkt(&srid0(polygon)).unwrap(),
            "POLYGON ((0 0, 1 0, 1 1, 0 0))"
        );
    }

    #[test]
    fn damaged_values_are_refused() {
        assert_eq!(mysql_geometry_wkt(&[0, 0, 0]), None);
        let mut p = srid0(point(1.0, 2.0));
        p.truncate(p.len() - 1);
        assert_eq!(mysql_geometry_wkt(&p), None);
        // A count far beyond the bytes.
        assert_eq!(
            mysql_geometry_wkt(&srid0(vec![1, 2, 0, 0, 0, 255, 255, 255, 255])),
            None
        );
        assert_eq!(
            mysql_geometry_wkt(&[srid0(point(1.0, 2.0)), vec![0]].concat()),
            None
        );
    }
}

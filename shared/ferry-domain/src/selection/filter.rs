//! Row filters (blueprint §3): `"filter": "total > 0 AND status IN ('paid', 'sent')"` on a
//! table of the selection. The text is parsed with sqlparser's MySQL dialect into a small, safe
//! subset — comparisons, `AND`/`OR`/`NOT`, `IN`, `BETWEEN`, `IS [NOT] NULL`, `[NOT] LIKE` over
//! column names and literals — and anything else is refused when the task is configured, naming
//! the part. The parsed filter is evaluated by Ferry on binlog rows ([`BoundFilter::admit`]) and
//! rendered back to SQL from its own tree (never the user's text) for snapshot reads
//! ([`BoundFilter::to_sql`]), so both read the same rows:
//!
//! - numbers compare exactly (DECIMAL digits, not floats);
//! - text compares byte for byte (case-sensitive, whatever the column's collation: the snapshot
//!   query compares `CAST(column AS BINARY)`);
//! - DATE, DATETIME and TIMESTAMP columns compare with quoted literals as times (`'2026-01-01'`
//!   is midnight; TIMESTAMP in UTC);
//! - SQL's three-valued logic: a row passes when the filter is true, not when it is unknown.
//!
//! The filter is written by Ferry's own parser rather than a general SQL evaluator: the subset
//! is what both the snapshot query and the binlog can decide identically.

use std::cmp::Ordering;

use sqlparser::ast::{BinaryOperator, Expr as SqlExpr, UnaryOperator, Value as SqlValue};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::change::{Operation, RowChange, TableSchema};
use crate::value::Value;

/// A parsed row filter, its column names not yet bound to a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Column(String),
    Literal(Lit),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    In(Box<Expr>, Vec<Expr>, bool),
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    Like(Box<Expr>, Box<Expr>, bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Null,
    /// A number's digits, as written (`-12.50`).
    Number(String),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Self::Eq => o == Ordering::Equal,
            Self::Ne => o != Ordering::Equal,
            Self::Lt => o == Ordering::Less,
            Self::Le => o != Ordering::Greater,
            Self::Gt => o == Ordering::Greater,
            Self::Ge => o != Ordering::Less,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// The longest filter accepted, and the deepest nesting.
const MAX_DEPTH: usize = 64;

impl Filter {
    /// Parses `text`; the error names the part Ferry does not support, or what is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let dialect = MySqlDialect {};
        let mut parser = Parser::new(&dialect)
            .try_with_sql(text)
            .map_err(|e| format!("not a SQL expression: {e}"))?;
        let expr = parser
            .parse_expr()
            .map_err(|e| format!("not a SQL expression: {e}"))?;
        let next = parser.peek_token();
        if next.token != Token::EOF {
            return Err(format!(
                "unexpected `{}` after the expression: a filter is one boolean expression",
                next.token
            ));
        }
        let expr = convert(&expr, 0)?;
        if !is_boolean(&expr) {
            return Err("a filter must be a condition (a comparison, IN, BETWEEN, IS NULL, LIKE, or these joined by AND, OR, NOT), not a value".into());
        }
        Ok(Self { expr })
    }

    /// The columns the filter names, in order of appearance.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.expr.columns(&mut out);
        out
    }

    /// The filter bound to `schema`'s columns; an error names a column the table lacks.
    pub fn bind(&self, schema: &TableSchema) -> Result<BoundFilter, String> {
        let columns = schema
            .columns()
            .iter()
            .map(|c| (c.name.as_str(), c.source_type.as_str()));
        self.bind_columns(&schema.name().to_string(), columns)
    }

    /// The filter bound to the columns `(name, declared type)` of table `table`, in order.
    pub fn bind_columns<'c>(
        &self,
        table: &str,
        columns: impl Iterator<Item = (&'c str, &'c str)>,
    ) -> Result<BoundFilter, String> {
        let (index, kinds): (Vec<String>, Vec<Kind>) = columns
            .map(|(name, ty)| (name.to_ascii_lowercase(), Kind::of(ty)))
            .unzip();
        for name in self.columns() {
            if !index.contains(&name.to_ascii_lowercase()) {
                return Err(format!(
                    "the filter of {table} names column `{name}`, which the table does not have"
                ));
            }
        }
        Ok(BoundFilter {
            expr: self.expr.clone(),
            index,
            kinds,
        })
    }
}

fn is_boolean(e: &Expr) -> bool {
    !matches!(e, Expr::Column(_) | Expr::Literal(_))
}

fn unsupported(what: &str, e: &SqlExpr) -> String {
    format!(
        "{what} (`{e}`) is not supported in a row filter: use comparisons, AND, OR, NOT, IN, BETWEEN, IS NULL and LIKE over column names and literals"
    )
}

fn convert(e: &SqlExpr, depth: usize) -> Result<Expr, String> {
    if depth > MAX_DEPTH {
        return Err(format!("the filter nests deeper than {MAX_DEPTH} levels"));
    }
    let sub = |x: &SqlExpr| convert(x, depth + 1).map(Box::new);
    Ok(match e {
        SqlExpr::Identifier(ident) => Expr::Column(ident.value.clone()),
        SqlExpr::CompoundIdentifier(_) => {
            return Err(format!(
                "a qualified name (`{e}`) is not supported in a row filter: name the column alone"
            ));
        }
        SqlExpr::Value(v) => Expr::Literal(literal(&v.value, e)?),
        SqlExpr::Nested(inner) => convert(inner, depth + 1)?,
        SqlExpr::UnaryOp { op, expr } => match (op, expr.as_ref()) {
            (UnaryOperator::Not, x) => Expr::Not(sub(x)?),
            (UnaryOperator::Minus, SqlExpr::Value(v)) => match literal(&v.value, e)? {
                Lit::Number(n) if !n.starts_with('-') => {
                    Expr::Literal(Lit::Number(format!("-{n}")))
                }
                _ => {
                    return Err(unsupported(
                        "a minus sign before something else than a number",
                        e,
                    ));
                }
            },
            (UnaryOperator::Plus, SqlExpr::Value(v)) => match literal(&v.value, e)? {
                l @ Lit::Number(_) => Expr::Literal(l),
                _ => {
                    return Err(unsupported(
                        "a plus sign before something else than a number",
                        e,
                    ));
                }
            },
            _ => return Err(unsupported(&format!("the operator {op}"), e)),
        },
        SqlExpr::BinaryOp { left, op, right } => {
            let cmp = match op {
                BinaryOperator::Eq => Some(Cmp::Eq),
                BinaryOperator::NotEq => Some(Cmp::Ne),
                BinaryOperator::Lt => Some(Cmp::Lt),
                BinaryOperator::LtEq => Some(Cmp::Le),
                BinaryOperator::Gt => Some(Cmp::Gt),
                BinaryOperator::GtEq => Some(Cmp::Ge),
                _ => None,
            };
            match (cmp, op) {
                (Some(c), _) => Expr::Cmp(c, operand(left, depth)?, operand(right, depth)?),
                (None, BinaryOperator::And) => {
                    Expr::And(boolean(left, depth)?, boolean(right, depth)?)
                }
                (None, BinaryOperator::Or) => {
                    Expr::Or(boolean(left, depth)?, boolean(right, depth)?)
                }
                _ => return Err(unsupported(&format!("the operator {op}"), e)),
            }
        }
        SqlExpr::IsNull(x) => Expr::IsNull(operand(x, depth)?, false),
        SqlExpr::IsNotNull(x) => Expr::IsNull(operand(x, depth)?, true),
        SqlExpr::InList {
            expr,
            list,
            negated,
        } => Expr::In(
            operand(expr, depth)?,
            list.iter()
                .map(|x| operand(x, depth).map(|b| *b))
                .collect::<Result<_, _>>()?,
            *negated,
        ),
        SqlExpr::Between {
            expr,
            negated,
            low,
            high,
        } => Expr::Between(
            operand(expr, depth)?,
            operand(low, depth)?,
            operand(high, depth)?,
            *negated,
        ),
        SqlExpr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => Expr::Like(operand(expr, depth)?, operand(pattern, depth)?, *negated),
        SqlExpr::Like { .. } => return Err(unsupported("LIKE with ESCAPE or ANY", e)),
        SqlExpr::Function(_) => return Err(unsupported("a function call", e)),
        SqlExpr::Subquery(_) | SqlExpr::InSubquery { .. } | SqlExpr::Exists { .. } => {
            return Err(unsupported("a subquery", e));
        }
        _ => return Err(unsupported("this expression", e)),
    })
}

/// A comparison's side: a column or a literal.
fn operand(e: &SqlExpr, depth: usize) -> Result<Box<Expr>, String> {
    let x = convert(e, depth + 1)?;
    match x {
        Expr::Column(_) | Expr::Literal(_) => Ok(Box::new(x)),
        _ => Err(unsupported(
            "a condition where a column or a literal belongs",
            e,
        )),
    }
}

/// A side of AND or OR: a condition.
fn boolean(e: &SqlExpr, depth: usize) -> Result<Box<Expr>, String> {
    let x = convert(e, depth + 1)?;
    if is_boolean(&x) {
        Ok(Box::new(x))
    } else {
        Err(format!(
            "`{e}` is a value where AND and OR need a condition: compare it (`{e} = 1`)"
        ))
    }
}

fn literal(v: &SqlValue, e: &SqlExpr) -> Result<Lit, String> {
    Ok(match v {
        SqlValue::Null => Lit::Null,
        SqlValue::Boolean(b) => Lit::Number(if *b { "1" } else { "0" }.into()),
        SqlValue::Number(n, _) => {
            if Decimal::parse(n).is_none() {
                return Err(unsupported("a number in this form", e));
            }
            Lit::Number(n.clone())
        }
        SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => Lit::Text(s.clone()),
        _ => return Err(unsupported("a literal of this kind", e)),
    })
}

impl Expr {
    fn columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Column(c) => out.push(c),
            Self::Literal(_) => {}
            Self::Not(x) | Self::IsNull(x, _) => x.columns(out),
            Self::And(a, b) | Self::Or(a, b) | Self::Cmp(_, a, b) | Self::Like(a, b, _) => {
                a.columns(out);
                b.columns(out);
            }
            Self::In(x, list, _) => {
                x.columns(out);
                for l in list {
                    l.columns(out);
                }
            }
            Self::Between(x, lo, hi, _) => {
                x.columns(out);
                lo.columns(out);
                hi.columns(out);
            }
        }
    }
}

/// How a column's values compare (from its source type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
    Temporal,
    Other,
}

impl Kind {
    fn of(source_type: &str) -> Self {
        let t = source_type.trim().to_ascii_lowercase();
        let base = t.split(['(', ' ']).next().unwrap_or("");
        match base {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
            | "numeric" | "float" | "double" | "real" | "year" | "bit" | "bool" | "boolean" => {
                Self::Number
            }
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "json" => Self::Text,
            "date" | "datetime" | "timestamp" => Self::Temporal,
            _ => Self::Other,
        }
    }
}

/// A filter bound to one table's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundFilter {
    expr: Expr,
    /// The table's column names, lowercased, by position.
    index: Vec<String>,
    kinds: Vec<Kind>,
}

/// A value as the filter compares it.
#[derive(Debug, Clone, PartialEq)]
enum Datum {
    Null,
    Number(Decimal),
    Text(String),
    /// A DATE, DATETIME or TIMESTAMP as `YYYY-MM-DD HH:MM:SS.ffffff`.
    Time(String),
    Bytes(Vec<u8>),
}

impl BoundFilter {
    fn position(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.index.iter().position(|c| *c == lower)
    }

    /// Whether a row image (values by column position) passes.
    pub fn passes(&self, row: &[Value]) -> bool {
        self.truth(&self.expr, row) == Some(true)
    }

    /// What a change becomes under the filter: kept when its images pass, dropped when none
    /// does; an update whose row leaves the filter becomes a delete of the old image, and one
    /// whose row enters it an insert of the new image, so whoever applies the changes holds
    /// exactly the filtered rows.
    pub fn admit(&self, change: RowChange) -> Option<RowChange> {
        match change.operation() {
            Operation::Insert | Operation::Read => change
                .after()
                .is_some_and(|a| self.passes(a))
                .then_some(change),
            Operation::Delete => change
                .before()
                .is_some_and(|b| self.passes(b))
                .then_some(change),
            Operation::Update => {
                let was = change.before().is_some_and(|b| self.passes(b));
                let is = change.after().is_some_and(|a| self.passes(a));
                match (was, is) {
                    (true, true) => Some(change),
                    (false, false) => None,
                    (true, false) => change.into_delete(),
                    (false, true) => change.into_insert(),
                }
            }
        }
    }

    fn datum(&self, e: &Expr, row: &[Value]) -> Datum {
        match e {
            Expr::Column(c) => {
                let Some(i) = self.position(c) else {
                    return Datum::Null;
                };
                row.get(i).map_or(Datum::Null, from_value)
            }
            Expr::Literal(Lit::Null) => Datum::Null,
            Expr::Literal(Lit::Number(n)) => Decimal::parse(n).map_or(Datum::Null, Datum::Number),
            Expr::Literal(Lit::Text(t)) => Datum::Text(t.clone()),
            _ => Datum::Null,
        }
    }

    fn compare(&self, a: &Expr, b: &Expr, row: &[Value]) -> Option<Ordering> {
        compare(&self.datum(a, row), &self.datum(b, row))
    }

    fn truth(&self, e: &Expr, row: &[Value]) -> Option<bool> {
        match e {
            Expr::Not(x) => self.truth(x, row).map(|b| !b),
            Expr::And(a, b) => match (self.truth(a, row), self.truth(b, row)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Or(a, b) => match (self.truth(a, row), self.truth(b, row)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::Cmp(op, a, b) => self.compare(a, b, row).map(|o| op.holds(o)),
            Expr::IsNull(x, negated) => Some((self.datum(x, row) == Datum::Null) != *negated),
            Expr::In(x, list, negated) => {
                let mut unknown = false;
                for item in list {
                    match self.compare(x, item, row) {
                        Some(Ordering::Equal) => return Some(!negated),
                        Some(_) => {}
                        None => unknown = true,
                    }
                }
                if unknown { None } else { Some(*negated) }
            }
            Expr::Between(x, lo, hi, negated) => {
                let low = self.compare(x, lo, row).map(|o| o != Ordering::Less);
                let high = self.compare(x, hi, row).map(|o| o != Ordering::Greater);
                let inside = match (low, high) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                inside.map(|b| b != *negated)
            }
            Expr::Like(x, pattern, negated) => {
                let text = text_of(&self.datum(x, row))?;
                let pattern = text_of(&self.datum(pattern, row))?;
                Some(like(text.as_bytes(), pattern.as_bytes()) != *negated)
            }
            Expr::Column(_) | Expr::Literal(_) => None,
        }
    }

    /// The filter as a MySQL condition for snapshot reads, rendered from the parsed tree:
    /// columns quoted, text as hexadecimal literals (nothing of the user's text is pasted), text
    /// columns compared as binary strings (see the module's comparison rules).
    pub fn to_sql(&self) -> String {
        let mut out = String::new();
        self.render(&self.expr, &mut out);
        out
    }

    fn render(&self, e: &Expr, out: &mut String) {
        match e {
            Expr::Column(c) => {
                let quoted = format!("`{}`", c.replace('`', "``"));
                match self.position(c).and_then(|i| self.kinds.get(i)) {
                    Some(Kind::Text) => out.push_str(&format!("CAST({quoted} AS BINARY)")),
                    _ => out.push_str(&quoted),
                }
            }
            Expr::Literal(Lit::Null) => out.push_str("NULL"),
            Expr::Literal(Lit::Number(n)) => out.push_str(n),
            Expr::Literal(Lit::Text(t)) => {
                out.push_str("CONVERT(X'");
                for b in t.as_bytes() {
                    out.push_str(&format!("{b:02X}"));
                }
                out.push_str("' USING utf8mb4)");
            }
            Expr::Not(x) => {
                out.push_str("NOT (");
                self.render(x, out);
                out.push(')');
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                out.push('(');
                self.render(a, out);
                out.push_str(if matches!(e, Expr::And(..)) {
                    ") AND ("
                } else {
                    ") OR ("
                });
                self.render(b, out);
                out.push(')');
            }
            Expr::Cmp(op, a, b) => {
                self.render_operand(a, b, out);
                out.push_str(&format!(" {} ", op.sql()));
                self.render_operand(b, a, out);
            }
            Expr::IsNull(x, negated) => {
                self.render(x, out);
                out.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
            }
            Expr::In(x, list, negated) => {
                self.render(x, out);
                out.push_str(if *negated { " NOT IN (" } else { " IN (" });
                for (i, item) in list.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.render_operand(item, x, out);
                }
                out.push(')');
            }
            Expr::Between(x, lo, hi, negated) => {
                self.render(x, out);
                out.push_str(if *negated {
                    " NOT BETWEEN "
                } else {
                    " BETWEEN "
                });
                self.render_operand(lo, x, out);
                out.push_str(" AND ");
                self.render_operand(hi, x, out);
            }
            Expr::Like(x, pattern, negated) => {
                self.render(x, out);
                out.push_str(if *negated { " NOT LIKE " } else { " LIKE " });
                self.render_operand(pattern, x, out);
            }
        }
    }

    /// A literal compared with a text column is a binary string too (both sides compared
    /// byte for byte, as Ferry does).
    fn render_operand(&self, e: &Expr, other: &Expr, out: &mut String) {
        let other_is_text = matches!(other, Expr::Column(c)
            if self.position(c).and_then(|i| self.kinds.get(i)) == Some(&Kind::Text));
        match e {
            Expr::Literal(Lit::Text(t)) if other_is_text => {
                out.push_str("X'");
                for b in t.as_bytes() {
                    out.push_str(&format!("{b:02X}"));
                }
                out.push('\'');
            }
            _ => self.render(e, out),
        }
    }
}

fn text_of(d: &Datum) -> Option<String> {
    match d {
        Datum::Null => None,
        Datum::Number(n) => Some(n.text.clone()),
        Datum::Text(t) | Datum::Time(t) => Some(t.clone()),
        Datum::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

fn from_value(v: &Value) -> Datum {
    match v {
        Value::Null => Datum::Null,
        Value::Int(i) => Decimal::parse(&i.to_string()).map_or(Datum::Null, Datum::Number),
        Value::UInt(u) => Decimal::parse(&u.to_string()).map_or(Datum::Null, Datum::Number),
        Value::Year(y) => Decimal::parse(&y.to_string()).map_or(Datum::Null, Datum::Number),
        Value::Float(f) if f.is_finite() => {
            Decimal::parse(&f.to_string()).map_or(Datum::Null, Datum::Number)
        }
        Value::Double(f) if f.is_finite() => {
            Decimal::parse(&f.to_string()).map_or(Datum::Null, Datum::Number)
        }
        Value::Float(_) | Value::Double(_) => Datum::Null,
        Value::Decimal(d) => Decimal::parse(d.as_str()).map_or(Datum::Null, Datum::Number),
        Value::Bit(b) => {
            let n = b.bytes.iter().fold(0u64, |n, x| (n << 8) | u64::from(*x));
            Decimal::parse(&n.to_string()).map_or(Datum::Null, Datum::Number)
        }
        Value::String(s) | Value::Json(s) => Datum::Text(s.clone()),
        Value::Enum(e) => Datum::Text(e.name.clone()),
        Value::Set(s) => Datum::Text(s.names.join(",")),
        Value::Bytes(b) | Value::Geometry(b) => Datum::Bytes(b.clone()),
        Value::Date(d) => Datum::Time(format!("{d} 00:00:00.000000")),
        Value::DateTime(t) => Datum::Time(format!(
            "{} {:02}:{:02}:{:02}.{:06}",
            t.date, t.hour, t.minute, t.second, t.micros
        )),
        Value::Timestamp(t) => chrono::DateTime::from_timestamp(t.seconds, t.micros * 1000)
            .map_or(Datum::Null, |at| {
                Datum::Time(at.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
            }),
        Value::Time(t) => Datum::Text(t.to_string()),
    }
}

/// A quoted literal read as a time: `YYYY-MM-DD`, with an optional `HH:MM[:SS[.f]]`.
fn as_time(text: &str) -> Option<String> {
    let t = text.trim();
    let (date, time) = t.split_once([' ', 'T']).unwrap_or((t, "00:00:00"));
    let d: Vec<&str> = date.split('-').collect();
    let [y, m, day] = d.as_slice() else {
        return None;
    };
    let (y, m, day): (u16, u8, u8) = (y.parse().ok()?, m.parse().ok()?, day.parse().ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    let num = |i: usize| -> Option<u8> { parts.get(i).map_or(Some(0), |p| p.parse().ok()) };
    if parts.is_empty()
        || parts.len() > 3
        || frac.len() > 6
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{frac:0<6}",
        num(0)?,
        num(1)?,
        num(2)?
    ))
}

fn compare(a: &Datum, b: &Datum) -> Option<Ordering> {
    match (a, b) {
        (Datum::Null, _) | (_, Datum::Null) => None,
        (Datum::Number(x), Datum::Number(y)) => Some(x.cmp(y)),
        (Datum::Number(x), Datum::Text(t)) => Decimal::parse(t.trim()).map(|y| x.cmp(&y)),
        (Datum::Text(t), Datum::Number(y)) => Decimal::parse(t.trim()).map(|x| x.cmp(y)),
        (Datum::Time(x), Datum::Text(t)) => as_time(t).map(|y| x.as_str().cmp(y.as_str())),
        (Datum::Text(t), Datum::Time(y)) => as_time(t).map(|x| x.as_str().cmp(y.as_str())),
        (Datum::Time(x), Datum::Time(y)) | (Datum::Text(x), Datum::Text(y)) => {
            Some(x.as_bytes().cmp(y.as_bytes()))
        }
        (Datum::Bytes(x), Datum::Text(y)) => Some(x.as_slice().cmp(y.as_bytes())),
        (Datum::Text(x), Datum::Bytes(y)) => Some(x.as_bytes().cmp(y.as_slice())),
        (Datum::Bytes(x), Datum::Bytes(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// SQL LIKE over bytes: `%` any run, `_` one character (one UTF-8 sequence), `\` escapes.
fn like(text: &[u8], pattern: &[u8]) -> bool {
    let s = String::from_utf8_lossy(text);
    let p = String::from_utf8_lossy(pattern);
    let t: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    // Iterative matching with backtracking to the last `%`.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('%') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('\\') if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                pi += 2;
                ti += 1;
                continue;
            }
            // An escaped character that differs: no match here.
            Some('\\') if pi + 1 < p.len() => {}
            Some('_') => {
                pi += 1;
                ti += 1;
                continue;
            }
            Some(c) if *c == t[ti] => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// An exact decimal number: sign, integer digits without leading zeros, fraction digits
/// without trailing zeros; ordered by value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    int: String,
    frac: String,
    /// The number as read.
    text: String,
}

impl Decimal {
    fn parse(s: &str) -> Option<Self> {
        let (negative, rest) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.trim_end_matches('0').to_owned();
        let zero = int.is_empty() && frac.is_empty();
        Some(Self {
            negative: negative && !zero,
            int,
            frac,
            text: s.to_owned(),
        })
    }

    fn magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.magnitude(other),
            (true, true) => other.magnitude(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::change::{Column, ObjectName};
    use crate::value::{Date, DateTime};

    fn schema() -> Arc<TableSchema> {
        let col = |n: &str, t: &str| Column {
            name: n.into(),
            source_type: t.into(),
            nullable: true,
        };
        Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "orders".into(),
                },
                vec![
                    col("id", "int"),
                    col("total", "decimal(10,2)"),
                    col("status", "varchar(10)"),
                    col("placed", "datetime"),
                ],
                vec![0],
            )
            .unwrap(),
        )
    }

    fn row(id: i64, total: Option<&str>, status: &str, day: u8) -> Vec<Value> {
        vec![
            Value::Int(id),
            total.map_or(Value::Null, |t| {
                Value::Decimal(t.to_owned().try_into().unwrap())
            }),
            Value::String(status.into()),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2026,
                    month: 12,
                    day,
                },
                hour: 10,
                minute: 0,
                second: 0,
                micros: 0,
            }),
        ]
    }

    fn passes(filter: &str, r: &[Value]) -> bool {
        Filter::parse(filter)
            .unwrap()
            .bind(&schema())
            .unwrap()
            .passes(r)
    }

    #[test]
    fn the_supported_subset_evaluates_like_sql() {
        let r = row(7, Some("19.90"), "paid", 5);
        assert!(passes("total > 0", &r));
        assert!(passes("total = 19.9", &r), "decimals compare by value");
        assert!(!passes("total > 19.90", &r));
        assert!(passes("total >= -1 AND id <> 8", &r));
        assert!(passes("status IN ('paid', 'sent')", &r));
        assert!(!passes("status NOT IN ('paid', 'sent')", &r));
        assert!(
            !passes("status = 'PAID'", &r),
            "text compares byte for byte"
        );
        assert!(passes("status LIKE 'p_i%'", &r));
        assert!(passes("status NOT LIKE '%x%'", &r));
        assert!(passes("id BETWEEN 1 AND 7", &r));
        assert!(!passes("id NOT BETWEEN 1 AND 7", &r));
        assert!(passes(
            "placed >= '2026-12-05' AND placed < '2026-12-06'",
            &r
        ));
        assert!(passes("placed = '2026-12-05 10:00'", &r));
        assert!(passes("NOT (id = 8 OR status = 'x')", &r));
        assert!(
            passes("id = '7'", &r),
            "a quoted number compares as a number"
        );
        assert!(passes("TRUE = 1 AND id = 7", &r));
        // Unknown is not true: NULL totals pass neither a comparison nor its negation.
        let n = row(8, None, "open", 5);
        assert!(!passes("total > 0", &n));
        assert!(!passes("NOT (total > 0)", &n));
        assert!(passes("total IS NULL", &n));
        assert!(!passes("total IS NOT NULL", &n));
        assert!(passes("total > 0 OR status = 'open'", &n));
        assert!(!passes("total IN (1, 2)", &n));
    }

    #[test]
    fn anything_else_is_refused_naming_the_part() {
        for (filter, names) in [
            ("total > 0; DROP TABLE orders", "unexpected"),
            ("SLEEP(10) = 0", "a function call"),
            ("id IN (SELECT id FROM other)", "subquery"),
            ("total + 1 > 2", "the operator +"),
            ("orders.total > 0", "qualified name"),
            ("total", "must be a condition"),
            ("total > 0 AND status", "is a value where AND"),
            ("status LIKE 'a!%' ESCAPE '!'", "ESCAPE"),
            ("", "not a SQL expression"),
            (
                "id = (1 = 1)",
                "a condition where a column or a literal belongs",
            ),
        ] {
            let e = Filter::parse(filter).unwrap_err();
            assert!(e.contains(names), "{filter}: {e}");
        }
        let e = Filter::parse("missing > 1")
            .unwrap()
            .bind(&schema())
            .unwrap_err();
        assert!(e.contains("`missing`") && e.contains("shop.orders"), "{e}");
    }

    #[test]
    fn updates_across_the_filter_become_deletes_and_inserts() {
        let f = Filter::parse("total > 10")
            .unwrap()
            .bind(&schema())
            .unwrap();
        let s = schema();
        let low = row(1, Some("5"), "a", 1);
        let high = row(1, Some("50"), "a", 1);
        let moved_out = RowChange::update(Arc::clone(&s), high.clone(), low.clone()).unwrap();
        let out = f.admit(moved_out).unwrap();
        assert_eq!(out.operation(), Operation::Delete);
        assert_eq!(out.before(), Some(high.as_slice()));
        let moved_in = RowChange::update(Arc::clone(&s), low.clone(), high.clone()).unwrap();
        let into = f.admit(moved_in).unwrap();
        assert_eq!(into.operation(), Operation::Insert);
        assert_eq!(into.after(), Some(high.as_slice()));
        let outside = RowChange::update(Arc::clone(&s), low.clone(), low.clone()).unwrap();
        assert!(f.admit(outside).is_none());
        let inside = RowChange::update(Arc::clone(&s), high.clone(), high.clone()).unwrap();
        assert_eq!(f.admit(inside).unwrap().operation(), Operation::Update);
        assert!(
            f.admit(RowChange::insert(Arc::clone(&s), low.clone()).unwrap())
                .is_none()
        );
        assert!(
            f.admit(RowChange::delete(Arc::clone(&s), high).unwrap())
                .is_some()
        );
    }

    #[test]
    fn the_snapshot_condition_is_rendered_from_the_tree() {
        let f =
            Filter::parse("status = 'a''b' AND total BETWEEN 1 AND 2.5 OR placed > \"2026-01-01\"")
                .unwrap()
                .bind(&schema())
                .unwrap();
        assert_eq!(
            f.to_sql(),
            "((CAST(`status` AS BINARY) = X'612762') AND (`total` BETWEEN 1 AND 2.5)) OR (`placed` > CONVERT(X'323032362D30312D3031' USING utf8mb4))"
        );
    }

    #[test]
    fn like_matches_as_sql_does() {
        assert!(like(b"abc", b"a%"));
        assert!(like(b"abc", b"%c"));
        assert!(like(b"abc", b"a_c"));
        assert!(!like(b"abc", b"a_"));
        assert!(like(b"a%c", b"a\\%c"));
        assert!(!like(b"abc", b"a\\%c"));
        assert!(like(b"", b"%"));
        assert!(like("héllo".as_bytes(), b"h_llo"), "_ is one character");
        assert!(like(b"aXbXc", b"a%b%c"));
    }
}

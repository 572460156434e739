//! Numbers as the Java tools Ferry's formats are named after print them: `Float.toString` /
//! `Double.toString` (Maxwell's, Canal's and Kafka Connect's floats) and
//! `BigDecimal.toString` (Maxwell's DECIMAL). Consumers written against those tools compare
//! or parse this text, so it is reproduced here rather than Rust's own.
//!
//! Written here: no crate prints Java's forms. The digits are Rust's shortest round-tripping
//! ones, which is what Java prints since JDK 19 (JDK-4511638); older JDKs print a few values
//! (such as `2.0E-3` vs `0.002`-style boundary cases) with more digits.

use std::fmt::Write;

/// Java's `Double.toString` of `x`: `1.0`, `0.5`, `1.0E10`, `1.234E-5`. `None` for NaN and
/// the infinities, which JSON cannot hold.
pub(crate) fn java_double(x: f64) -> Option<String> {
    x.is_finite().then(|| java_text(&format!("{x:e}")))
}

/// Java's `Float.toString` of `x`: the shortest digits of the 32-bit value (`1.1`, not
/// `1.100000023841858`).
pub(crate) fn java_float(x: f32) -> Option<String> {
    x.is_finite().then(|| java_text(&format!("{x:e}")))
}

/// Java's text from Rust's shortest scientific form (`-1.234e-5`, `1e10`, `0e0`).
fn java_text(scientific: &str) -> String {
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    // Java writes plain decimals for 10^-3 <= |x| < 10^7 (and zero), else d.dddE±n.
    if digits == "0" || (-3..7).contains(&exponent) {
        if exponent >= 0 {
            let point = usize::try_from(exponent).unwrap_or(0) + 1;
            let (int, frac) = if digits.len() > point {
                digits.split_at(point)
            } else {
                (digits.as_str(), "")
            };
            out.push_str(int);
            for _ in int.len()..point {
                out.push('0');
            }
            out.push('.');
            out.push_str(if frac.is_empty() { "0" } else { frac });
        } else {
            out.push_str("0.");
            for _ in 1..exponent.unsigned_abs() {
                out.push('0');
            }
            out.push_str(&digits);
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        out.push('.');
        out.push_str(if rest.is_empty() { "0" } else { rest });
        let _ = write!(out, "E{exponent}");
    }
    out
}

/// Java's `BigDecimal.toString` of an exact decimal written plainly (`"603.00"`,
/// `"-0.00000001"`): the same text, except where the adjusted exponent is below -6, where
/// Java switches to scientific notation (`0E-10` for DECIMAL(20,10) zero, `1E-8`).
pub(crate) fn java_big_decimal(plain: &str) -> String {
    let (negative, body) = match plain.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, plain),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let all: String = format!("{int}{frac}");
    let unscaled = all.trim_start_matches('0');
    let unscaled = if unscaled.is_empty() { "0" } else { unscaled };
    let scale = i64::try_from(frac.len()).unwrap_or(0);
    let precision = i64::try_from(unscaled.len()).unwrap_or(1);
    let adjusted = precision - 1 - scale;
    if adjusted >= -6 {
        return plain.to_owned();
    }
    let mut out = String::new();
    if negative && unscaled != "0" {
        out.push('-');
    }
    let (first, rest) = unscaled.split_at(1);
    out.push_str(first);
    if !rest.is_empty() {
        out.push('.');
        out.push_str(rest);
    }
    let _ = write!(out, "E{adjusted}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_java_does() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (4.2341, "4.2341"),
            (100.0, "100.0"),
            (1234567.0, "1234567.0"),
            (1.0e7, "1.0E7"),
            (1.0e10, "1.0E10"),
            (1.5e20, "1.5E20"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1.234e-5, "1.234E-5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
        ];
        for (x, want) in cases {
            assert_eq!(java_double(x).unwrap(), want, "{x}");
        }
        assert_eq!(java_double(f64::NAN), None);
    }

    #[test]
    fn floats_print_their_own_shortest_digits() {
        assert_eq!(java_float(1.1).unwrap(), "1.1");
        assert_eq!(java_float(5.6).unwrap(), "5.6");
        assert_eq!(java_float(0.875).unwrap(), "0.875");
        assert_eq!(java_float(1.0e10).unwrap(), "1.0E10");
        assert_eq!(java_float(3.4028235e38).unwrap(), "3.4028235E38");
    }

    #[test]
    fn big_decimals_switch_to_exponents_below_minus_six() {
        assert_eq!(java_big_decimal("603.00"), "603.00");
        assert_eq!(java_big_decimal("0.00"), "0.00");
        assert_eq!(java_big_decimal("-12345678.90"), "-12345678.90");
        assert_eq!(java_big_decimal("0.000001"), "0.000001");
        assert_eq!(java_big_decimal("0.00000001"), "1E-8");
        assert_eq!(java_big_decimal("0.0000000000"), "0E-10");
        assert_eq!(java_big_decimal("-0.000000012"), "-1.2E-8");
        assert_eq!(
            java_big_decimal("0.000000000000000000000000000001"),
            "1E-30"
        );
        assert_eq!(java_big_decimal("12"), "12");
    }
}

//! `resource.Quantity` as Kubernetes parses, compares and prints it.
//!
//! The value is held exactly as an integer count of nano-units (10^-9), the
//! smallest precision Kubernetes keeps: parsing rounds anything finer up (away
//! from zero), as `ParseQuantity` does. The format (decimal SI, binary SI or
//! decimal exponent) is remembered so that the canonical text matches
//! Kubernetes' `String()`: `1.5Gi` prints as `1536Mi`, `0.1` as `100m`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Why a string is not a quantity; the messages are Kubernetes' own.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// Kubernetes keeps arbitrary precision here; r8s keeps about 10^29.
    #[error("quantity is too large")]
    TooLarge,
}

/// How a quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `1e3`, `5E-3`
    DecimalExponent,
    /// `Ki`, `Mi`, ... `Ei`
    BinarySI,
    /// no suffix, or `n u m k M G T P E`
    DecimalSI,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// A Kubernetes resource quantity (`500m`, `128Mi`, `1.5`, `2e3`).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl Quantity {
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        text.parse()
    }

    /// A quantity of `nanos` 10^-9 units.
    pub fn from_nanos(nanos: i128, format: Format) -> Self {
        Quantity { nanos, format }
    }

    /// Whole units, e.g. cores or bytes.
    pub fn from_units(units: i64, format: Format) -> Self {
        Quantity {
            nanos: units as i128 * NANOS_PER_UNIT,
            format,
        }
    }

    /// Thousandths of a unit, e.g. CPU millicores.
    pub fn from_millis(millis: i64) -> Self {
        Quantity {
            nanos: millis as i128 * 1_000_000,
            format: Format::DecimalSI,
        }
    }

    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in whole units, rounded away from zero like Kubernetes' `Value()`
    /// (so `1.1` bytes is 2), saturating at the i64 range.
    pub fn value(&self) -> i64 {
        saturate(div_round_away(self.nanos, NANOS_PER_UNIT))
    }

    /// The value in thousandths, rounded away from zero like `MilliValue()`.
    pub fn milli_value(&self) -> i64 {
        saturate(div_round_away(self.nanos, 1_000_000))
    }

    /// The sum, keeping this quantity's format (as Kubernetes' `Add`).
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_add(other.nanos)?,
            format: self.format,
        })
    }

    /// The difference, keeping this quantity's format (as Kubernetes' `Sub`).
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_sub(other.nanos)?,
            format: self.format,
        })
    }

    /// The canonical text, as Kubernetes serializes the quantity.
    pub fn canonical(&self) -> String {
        self.to_string()
    }
}

fn saturate(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// `n / d` rounded away from zero (d > 0).
fn div_round_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// The pieces of the text, split as Kubernetes' `parseQuantityString` does.
struct Parts<'a> {
    positive: bool,
    /// Integer digits without leading zeros ("0" when none).
    whole: &'a str,
    /// Digits after the decimal point.
    fraction: &'a str,
    suffix: &'a str,
}

fn split_quantity(text: &str) -> Result<Parts<'_>, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::FormatWrong);
    }
    let bytes = text.as_bytes();
    let end = bytes.len();
    let mut pos = 0;
    let mut positive = true;
    match bytes[0] {
        b'-' => {
            positive = false;
            pos += 1;
        }
        b'+' => pos += 1,
        _ => {}
    }
    while pos < end && bytes[pos] == b'0' {
        pos += 1;
    }
    let digits_end = |from: usize| {
        (from..end)
            .find(|&i| !bytes[i].is_ascii_digit())
            .unwrap_or(end)
    };
    let whole_end = digits_end(pos);
    let whole = if whole_end == pos {
        "0"
    } else {
        &text[pos..whole_end]
    };
    pos = whole_end;
    let mut fraction = "";
    if pos < end && bytes[pos] == b'.' {
        let fraction_end = digits_end(pos + 1);
        fraction = &text[pos + 1..fraction_end];
        pos = fraction_end;
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&bytes[pos]) {
        pos += 1;
    }
    if pos < end && (bytes[pos] == b'-' || bytes[pos] == b'+') {
        pos += 1;
    }
    if digits_end(pos) != end {
        return Err(QuantityError::FormatWrong);
    }
    Ok(Parts {
        positive,
        whole,
        fraction,
        suffix: &text[suffix_start..],
    })
}

/// What a suffix multiplies by.
enum Multiplier {
    PowerOf10(i32),
    PowerOf2(u32),
}

fn interpret_suffix(suffix: &str) -> Result<(Multiplier, Format), QuantityError> {
    use Multiplier::*;
    let decimal = |e| Ok((PowerOf10(e), Format::DecimalSI));
    let binary = |e| Ok((PowerOf2(e), Format::BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .filter(|rest| !rest.is_empty())
                .and_then(|rest| rest.parse::<i32>().ok())
                .ok_or(QuantityError::Suffix)?;
            Ok((PowerOf10(exponent), Format::DecimalExponent))
        }
    }
}

fn pow10(exponent: u32) -> Option<i128> {
    10i128.checked_pow(exponent)
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts = split_quantity(text)?;
        let (multiplier, mut format) = interpret_suffix(parts.suffix)?;
        // Trailing zeros of the fraction carry no value; dropping them keeps
        // the digits within i128 for inputs like "1.000000000000000000000".
        let fraction = parts.fraction.trim_end_matches('0');
        let digits = format!("{}{}", parts.whole, fraction);
        let digits = digits.trim_start_matches('0');
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError::TooLarge)?
        };
        // nanos = mantissa * multiplier * 10^(9 - fraction digits), rounded up.
        let mut scale10 = 9 - fraction.len() as i64;
        let mut numerator = mantissa;
        match multiplier {
            Multiplier::PowerOf10(e) => scale10 += e as i64,
            Multiplier::PowerOf2(e) => {
                numerator = numerator
                    .checked_mul(1i128 << e)
                    .ok_or(QuantityError::TooLarge)?
            }
        }
        let nanos = if numerator == 0 {
            0
        } else if scale10 >= 0 {
            let factor = u32::try_from(scale10)
                .ok()
                .and_then(pow10)
                .ok_or(QuantityError::TooLarge)?;
            numerator
                .checked_mul(factor)
                .ok_or(QuantityError::TooLarge)?
        } else {
            // Finer than a nano-unit: anything non-zero rounds up to the next nano.
            match u32::try_from(-scale10).ok().and_then(pow10) {
                Some(divisor) => div_round_away(numerator, divisor),
                None => 1,
            }
        };
        if format == Format::BinarySI && nanos < NANOS_PER_UNIT && nanos > 0 {
            // Kubernetes avoids binary suffixes for values below one.
            format = Format::DecimalSI;
        }
        let nanos = if parts.positive { nanos } else { -nanos };
        Ok(Quantity { nanos, format })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySI
            && (self.nanos.unsigned_abs() < (1024 * NANOS_PER_UNIT) as u128
                || self.nanos % NANOS_PER_UNIT != 0)
        {
            // Small or fractional binary values print as decimal to stay exact.
            format = Format::DecimalSI;
        }
        match format {
            Format::BinarySI => {
                let mut units = self.nanos / NANOS_PER_UNIT;
                let mut power = 0;
                while power < 6 && units % 1024 == 0 {
                    units /= 1024;
                    power += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                write!(f, "{units}{suffix}")
            }
            Format::DecimalSI | Format::DecimalExponent => {
                // Largest exponent (a multiple of 3) that keeps the mantissa whole.
                let mut mantissa = self.nanos;
                let mut exponent: i32 = -9;
                let max_exponent = if format == Format::DecimalSI {
                    18
                } else {
                    i32::MAX
                };
                while mantissa % 1000 == 0 && exponent < max_exponent {
                    mantissa /= 1000;
                    exponent += 3;
                }
                if format == Format::DecimalExponent {
                    return match exponent {
                        0 => write!(f, "{mantissa}"),
                        _ => write!(f, "{mantissa}e{exponent}"),
                    };
                }
                let suffix = match exponent {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    0 => "",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    _ => "E",
                };
                write!(f, "{mantissa}{suffix}")
            }
        }
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> for Quantity {
    type Error = QuantityError;

    fn try_from(
        q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    ) -> Result<Self, Self::Error> {
        q.0.parse()
    }
}

impl From<Quantity> for k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    fn from(q: Quantity) -> Self {
        k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("00100", "100"),
            ("1", "1"),
            ("+5", "5"),
            ("-5", "-5"),
            ("100m", "100m"),
            ("0.1", "100m"),
            (".5", "500m"),
            ("1.", "1"),
            ("1.5", "1500m"),
            ("1500m", "1500m"),
            ("1000m", "1"),
            ("2000m", "2"),
            ("1.5k", "1500"),
            ("1k", "1k"),
            ("1000", "1k"),
            ("1000000", "1M"),
            ("12M", "12M"),
            ("1G", "1G"),
            ("5E", "5E"),
            ("1n", "1n"),
            ("1u", "1u"),
            ("0.5u", "500n"),
            ("1Ki", "1Ki"),
            ("1024", "1024"),
            ("128Mi", "128Mi"),
            ("1.5Gi", "1536Mi"),
            ("1024Mi", "1Gi"),
            ("0.5Gi", "512Mi"),
            ("0.5Ki", "512"),
            ("1023Ki", "1023Ki"),
            ("2Ei", "2Ei"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1e0", "1"),
            ("1.5e3", "1500"),
            ("1e-3", "1e-3"),
            ("5e6", "5e6"),
            ("1e-10", "1e-9"),
            ("0.0000000001", "1n"),
            ("-0.0000000001", "-1n"),
            ("1.000000000000000000000000000000", "1"),
            ("-1.5Gi", "-1536Mi"),
            ("100.0m", "100m"),
        ];
        for (input, want) in cases {
            let q: Quantity = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(q.to_string(), want, "canonical form of {input}");
            // The canonical form parses back to the same value.
            assert_eq!(
                q.to_string().parse::<Quantity>().unwrap(),
                q,
                "round trip of {input}"
            );
        }
    }

    #[test]
    fn rejects_bad_input_with_kubernetes_messages() {
        let regex = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
        let cases = [
            ("", regex),
            ("abc", regex),
            ("1x", regex),
            ("1 Gi", regex),
            ("1Gi ", regex),
            ("1GiB", regex),
            ("1.5.5", regex),
            ("1e", "unable to parse quantity's suffix"),
            ("1Kii", "unable to parse quantity's suffix"),
            ("1ki", "unable to parse quantity's suffix"),
            ("1Ki5", "unable to parse quantity's suffix"),
            ("1e1.5", regex),
            ("--1", "unable to parse quantity's suffix"),
        ];
        for (input, want) in cases {
            let err = input.parse::<Quantity>().expect_err(input);
            assert_eq!(err.to_string(), want, "error for {input:?}");
        }
        assert_eq!("1e40".parse::<Quantity>(), Err(QuantityError::TooLarge));
    }

    #[test]
    fn converts_to_values_rounding_up() {
        let cases = [
            ("100m", 1, 100),
            ("1", 1, 1000),
            ("1.1", 2, 1100),
            ("1500m", 2, 1500),
            ("1Ki", 1024, 1024000),
            ("128Mi", 134217728, 134217728000),
            ("1n", 1, 1),
            ("1.0001m", 1, 2),
            ("-1.5", -2, -1500),
            ("0", 0, 0),
        ];
        for (input, value, milli) in cases {
            let q = Quantity::parse(input).unwrap();
            assert_eq!(q.value(), value, "value of {input}");
            assert_eq!(q.milli_value(), milli, "milli value of {input}");
        }
    }

    #[test]
    fn compares_and_adds_exactly() {
        let q = |s| Quantity::parse(s).unwrap();
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("0.1"), q("100m"));
        let sum = q("100m").checked_add(&q("200m")).unwrap();
        assert_eq!(sum, q("0.3"));
        assert_eq!(sum.to_string(), "300m");
        assert_eq!(
            q("1Gi").checked_sub(&q("512Mi")).unwrap().to_string(),
            "512Mi"
        );
        assert_eq!(Quantity::from_millis(250).to_string(), "250m");
        assert_eq!(
            Quantity::from_units(2048, Format::BinarySI).to_string(),
            "2Ki"
        );
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let q: Quantity = serde_json::from_str("\"1.5Gi\"").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"1536Mi\"");
        assert!(serde_json::from_str::<Quantity>("\"1x\"").is_err());
    }
}

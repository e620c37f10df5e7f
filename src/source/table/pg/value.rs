//! Decoding of PostgreSQL result values (binary format) into the fields of a
//! vassal row: text, exact `ts` renderings (timestamps to the microsecond,
//! integers, floats, numerics) and uid/gid integers.

use crate::source::table::rows::Field;
use std::error::Error;
use tokio_postgres::types::{FromSql, Type};

/// Any value, undecoded: its type and its bytes.
pub struct Raw<'a> {
    ty: Type,
    bytes: &'a [u8],
}

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw { ty: ty.clone(), bytes: raw })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Column `idx` of `row` as an undecoded value (`None` for NULL).
pub fn raw(row: &tokio_postgres::Row, idx: usize) -> Field<Raw<'_>> {
    if idx >= row.len() {
        return Field::Absent;
    }
    match row.try_get::<_, Option<Raw>>(idx) {
        Ok(Some(raw)) => Field::Value(raw),
        Ok(None) => Field::Null,
        Err(e) => Field::Wrong(e.to_string()),
    }
}

/// Applies `decode` to a present value.
fn map<T>(field: Field<Raw<'_>>, decode: impl FnOnce(&Raw<'_>) -> Option<T>) -> Field<T> {
    match field {
        Field::Value(raw) => match decode(&raw) {
            Some(v) => Field::Value(v),
            None => Field::Wrong(raw.ty.name().to_owned()),
        },
        Field::Absent => Field::Absent,
        Field::Null => Field::Null,
        Field::Wrong(t) => Field::Wrong(t),
    }
}

/// A text column (`text`, `varchar`, `char`, `name`).
pub fn text(field: Field<Raw<'_>>) -> Field<String> {
    map(field, |raw| {
        let texty = [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::UNKNOWN].contains(&raw.ty);
        texty.then(|| std::str::from_utf8(raw.bytes).ok().map(str::to_owned)).flatten()
    })
}

/// An integer column (`smallint`, `integer`, `bigint`, `oid`).
pub fn int(field: Field<Raw<'_>>) -> Field<i64> {
    map(field, integer)
}

fn integer(raw: &Raw<'_>) -> Option<i64> {
    let b = raw.bytes;
    match raw.ty {
        Type::INT2 => Some(i16::from_be_bytes(b.try_into().ok()?).into()),
        Type::INT4 => Some(i32::from_be_bytes(b.try_into().ok()?).into()),
        Type::INT8 => Some(i64::from_be_bytes(b.try_into().ok()?)),
        Type::OID => Some(u32::from_be_bytes(b.try_into().ok()?).into()),
        _ => None,
    }
}

/// A `ts` column rendered exactly: a timestamp as Unix seconds with six
/// decimals, a number as its decimal text.
pub fn ts(field: Field<Raw<'_>>) -> Field<String> {
    map(field, |raw| {
        let b = raw.bytes;
        match raw.ty {
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Some(timestamp(i64::from_be_bytes(b.try_into().ok()?))),
            Type::FLOAT4 => Some(f32::from_be_bytes(b.try_into().ok()?).to_string()),
            Type::FLOAT8 => Some(f64::from_be_bytes(b.try_into().ok()?).to_string()),
            Type::NUMERIC => numeric(b),
            _ => integer(raw).map(|i| i.to_string()),
        }
    })
}

/// Microseconds since 2000-01-01 (PostgreSQL's epoch) as Unix seconds with
/// six decimals.
fn timestamp(pg_micros: i64) -> String {
    const PG_EPOCH_IN_UNIX_MICROS: i128 = 946_684_800_000_000;
    match pg_micros {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        us => {
            let unix = i128::from(us) + PG_EPOCH_IN_UNIX_MICROS;
            format!("{}.{:06}", unix.div_euclid(1_000_000), unix.rem_euclid(1_000_000))
        }
    }
}

/// A binary `numeric` as decimal text, with exactly its display scale.
fn numeric(b: &[u8]) -> Option<String> {
    let word = |i: usize| b.get(i..i + 2).map(|w| u16::from_be_bytes([w[0], w[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect::<Option<_>>()?;
    let digit = |pos: i64| {
        let idx = weight - pos;
        usize::try_from(idx).ok().and_then(|i| digits.get(i).copied()).unwrap_or(0)
    };
    let minus = match sign {
        0x0000 => "",
        0x4000 => "-",
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    };
    let mut int = String::new();
    for pos in (0..=weight).rev() {
        match int.is_empty() {
            true => int.push_str(&digit(pos).to_string()),
            false => int.push_str(&format!("{:04}", digit(pos))),
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut pos = -1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", digit(pos)));
        pos -= 1;
    }
    frac.truncate(dscale);
    Some(match frac.is_empty() {
        true => format!("{minus}{int}"),
        false => format!("{minus}{int}.{frac}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_render_exactly() {
        // 1700000000.123456 = 17 0000 0000 . 1234 56(00)
        assert_eq!(numeric(&num(5, 2, 0, 6, &[17, 0, 0, 1234, 5600])).unwrap(), "1700000000.123456");
        assert_eq!(numeric(&num(1, 0, 0x4000, 2, &[42])).unwrap(), "-42.00");
        assert_eq!(numeric(&num(1, -1, 0, 4, &[5])).unwrap(), "0.0005");
        assert_eq!(numeric(&num(1, -2, 0, 8, &[5])).unwrap(), "0.00000005");
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric(&num(1, 1, 0, 0, &[3])).unwrap(), "30000");
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric(&[0, 1]).is_none());
    }

    #[test]
    fn timestamps_render_unix_micros() {
        assert_eq!(timestamp(0), "946684800.000000");
        assert_eq!(timestamp(1), "946684800.000001");
        assert_eq!(timestamp(-946_684_800_000_001), "-1.999999");
        assert_eq!(timestamp(i64::MAX), "infinity");
    }
}

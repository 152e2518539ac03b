//! Redis's `long double` arithmetic (INCRBYFLOAT, and later HINCRBYFLOAT), emulated bit
//! for bit.
//!
//! Redis reads operands with `strtold`, adds them in x87 80-bit extended precision (a
//! 64-bit significand) and writes the result with `%.17Lf` minus trailing zeros. `f64`
//! arithmetic gives different text for everyday inputs (0.1 + 0.2 is "0.3" in Redis,
//! 10000.1 is "10000.09999999999999964"), and the extended range accepts "1e400", so the
//! format is emulated exactly: correctly rounded parsing, addition rounded to nearest-even
//! at 64 bits with gradual underflow, and exact decimal printing. Values are small
//! (at most a few thousand digits), so a minimal big integer is enough.

use std::cmp::Ordering;

/// A finite x87 extended value: `(-1)^neg × mant × 2^exp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongDouble {
    neg: bool,
    mant: u64,
    exp: i64,
}

/// What `strtold` read, as Redis accepts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    Finite(LongDouble),
    /// "inf" or "infinity": accepted, but any sum with it is rejected.
    Infinite,
}

/// Exponent of the least significant bit of a subnormal.
const MIN_EXP: i64 = -16445;
/// Exponent of the least significant bit of the largest finite value.
const MAX_EXP: i64 = 16320;
/// Redis's MAX_LONG_DOUBLE_CHARS: longer arguments are not floats.
const MAX_CHARS: usize = 5 * 1024;
/// Bits of quotient computed before rounding to 64: enough for a guard bit and more.
const QUOTIENT_BITS: i64 = 68;

impl LongDouble {
    pub const ZERO: LongDouble = LongDouble {
        neg: false,
        mant: 0,
        exp: 0,
    };

    /// An integer, exactly (64 significand bits hold every `i64`).
    pub fn from_i64(n: i64) -> LongDouble {
        LongDouble {
            neg: n < 0,
            mant: n.unsigned_abs(),
            exp: 0,
        }
    }

    /// Reads a float as Redis's `string2ld`: `strtold` syntax (decimal, hex, "inf"), no
    /// leading space, nothing after the number, no NaN, no overflow, no underflow to zero.
    pub fn parse(s: &[u8]) -> Option<Parsed> {
        if s.is_empty() || s.len() >= MAX_CHARS {
            return None;
        }
        if matches!(s[0], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
            return None;
        }
        let (neg, body) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        if starts_with_ci(body, b"inf") {
            let rest = &body[3..];
            return (rest.is_empty() || rest.eq_ignore_ascii_case(b"inity"))
                .then_some(Parsed::Infinite);
        }
        let hex = body.len() > 2
            && body[0] == b'0'
            && (body[1] | 0x20) == b'x'
            && (body[2].is_ascii_hexdigit()
                || (body[2] == b'.' && body.get(3).is_some_and(u8::is_ascii_hexdigit)));
        let v = if hex {
            parse_hex(neg, &body[2..])?
        } else {
            parse_decimal(neg, body)?
        };
        Some(Parsed::Finite(v))
    }

    /// The sum rounded as the x87 unit rounds it; `None` when it overflows to infinity.
    pub fn checked_add(self, other: LongDouble) -> Option<LongDouble> {
        if other.mant == 0 {
            return Some(self);
        }
        if self.mant == 0 {
            return Some(other);
        }
        let e = self.exp.min(other.exp);
        let a = Big::from_u64(self.mant).shl((self.exp - e) as usize);
        let b = Big::from_u64(other.mant).shl((other.exp - e) as usize);
        let (neg, sum) = if self.neg == other.neg {
            (self.neg, a.add(&b))
        } else {
            match a.cmp(&b) {
                Ordering::Equal => return Some(LongDouble::ZERO),
                Ordering::Greater => (self.neg, a.sub(&b)),
                Ordering::Less => (other.neg, b.sub(&a)),
            }
        };
        round(neg, &sum, &Big::from_u64(1), e)
    }

    /// Redis's "human friendly" text: `%.17Lf` without trailing zeros or a trailing
    /// point, and "-0" written "0".
    pub fn to_human(self) -> String {
        let mut out = String::new();
        if self.exp >= 0 {
            let int = Big::from_u64(self.mant).shl(self.exp as usize);
            if self.neg && !int.is_zero() {
                out.push('-');
            }
            out.push_str(&int.to_decimal());
            return out;
        }
        // The value times 10^17 is below 2^121: u128 arithmetic is exact here.
        let scaled = self.mant as u128 * 100_000_000_000_000_000u128;
        let shift = (-self.exp) as u32;
        let hundredths = if shift >= 128 {
            0
        } else {
            let kept = scaled >> shift;
            let rem = scaled & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            // printf rounds exactly, ties to even.
            if rem > half || (rem == half && kept & 1 == 1) {
                kept + 1
            } else {
                kept
            }
        };
        if hundredths == 0 {
            return "0".to_string();
        }
        let digits = format!("{hundredths:018}");
        let (int, frac) = digits.split_at(digits.len() - 17);
        let frac = frac.trim_end_matches('0');
        if self.neg {
            out.push('-');
        }
        out.push_str(int);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        out
    }
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Reads `[+-]exponent` digits at the start of `s`; `None` when there is no digit (strtold
/// then leaves the exponent marker unread). Saturates far beyond any meaningful value.
fn exponent(s: &[u8]) -> Option<(i64, usize)> {
    let (neg, start) = match s.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits = s[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in &s[start..start + digits] {
        n = (n * 10 + (c - b'0') as i64).min(1 << 40);
    }
    Some((if neg { -n } else { n }, start + digits))
}

/// Splits `[digits][.digits]` off `s` with `is_digit`; returns the digits (without the
/// point), how many followed the point, and the bytes read.
fn mantissa(s: &[u8], is_digit: fn(&u8) -> bool) -> (Vec<u8>, i64, usize) {
    let int = s.iter().take_while(|c| is_digit(c)).count();
    let mut digits = s[..int].to_vec();
    let mut read = int;
    let mut frac = 0;
    if s.get(int) == Some(&b'.') {
        frac = s[int + 1..].iter().take_while(|c| is_digit(c)).count();
        digits.extend_from_slice(&s[int + 1..int + 1 + frac]);
        read = int + 1 + frac;
    }
    (digits, frac as i64, read)
}

fn parse_decimal(neg: bool, s: &[u8]) -> Option<LongDouble> {
    let (digits, frac, mut read) = mantissa(s, u8::is_ascii_digit);
    if digits.is_empty() {
        return None;
    }
    let mut exp10 = -frac;
    if matches!(s.get(read), Some(b'e' | b'E'))
        && let Some((e, n)) = exponent(&s[read + 1..])
    {
        exp10 += e;
        read += 1 + n;
    }
    if read != s.len() {
        return None;
    }
    let first = digits.iter().position(|&c| c != b'0');
    let Some(first) = first else {
        return Some(LongDouble {
            neg,
            ..LongDouble::ZERO
        });
    };
    let last = digits.iter().rposition(|&c| c != b'0').unwrap_or(first);
    let sig = &digits[first..=last];
    exp10 += (digits.len() - 1 - last) as i64;
    // The value lies in [10^(mag-1), 10^mag): far outside the range it overflows or
    // underflows, and exact arithmetic would only waste time.
    let mag = sig.len() as i64 + exp10;
    if !(-4960..=4940).contains(&mag) {
        return None;
    }
    let mut num = Big::from_decimal(sig);
    let mut den = Big::from_u64(1);
    if exp10 >= 0 {
        num = num.mul(&Big::pow10(exp10 as usize));
    } else {
        den = Big::pow10((-exp10) as usize);
    }
    nonzero(round(neg, &num, &den, 0)?)
}

fn parse_hex(neg: bool, s: &[u8]) -> Option<LongDouble> {
    let (digits, frac, mut read) = mantissa(s, u8::is_ascii_hexdigit);
    let mut exp2 = -4 * frac;
    if matches!(s.get(read), Some(b'p' | b'P'))
        && let Some((e, n)) = exponent(&s[read + 1..])
    {
        exp2 += e;
        read += 1 + n;
    }
    if read != s.len() {
        return None;
    }
    let num = Big::from_hex(&digits);
    if num.is_zero() {
        return Some(LongDouble {
            neg,
            ..LongDouble::ZERO
        });
    }
    let mag = num.bits() as i64 + exp2;
    if !(MIN_EXP - 8..=MAX_EXP + 72).contains(&mag) {
        return None;
    }
    nonzero(round(neg, &num, &Big::from_u64(1), exp2)?)
}

/// strtold reports a nonzero input that rounds to zero as a range error.
fn nonzero(v: LongDouble) -> Option<LongDouble> {
    (v.mant != 0).then_some(v)
}

/// Rounds `± num / den × 2^exp2` to the nearest extended value, ties to even, with
/// gradual underflow. `None` when it overflows. `num` is not zero.
fn round(neg: bool, num: &Big, den: &Big, exp2: i64) -> Option<LongDouble> {
    // Scale so that the quotient has QUOTIENT_BITS or QUOTIENT_BITS - 1 bits.
    let s = QUOTIENT_BITS - 1 - (num.bits() as i64 - den.bits() as i64);
    let (mut rem, mut divisor) = if s >= 0 {
        (num.shl(s as usize), den.clone())
    } else {
        (num.clone(), den.shl((-s) as usize))
    };
    divisor = divisor.shl(QUOTIENT_BITS as usize - 1);
    let mut q: u128 = 0;
    for i in (0..QUOTIENT_BITS).rev() {
        if rem.cmp(&divisor) != Ordering::Less {
            rem = rem.sub(&divisor);
            q |= 1 << i;
        }
        divisor.shr1();
    }
    let sticky = !rem.is_zero();
    let e = exp2 - s;
    let bits = 128 - q.leading_zeros() as i64;
    let drop = (bits - 64).max(MIN_EXP - e);
    let mut kept = if drop >= 128 {
        0
    } else {
        let kept = q >> drop;
        let rem = q & ((1u128 << drop) - 1);
        let half = 1u128 << (drop - 1);
        if rem > half || (rem == half && (sticky || kept & 1 == 1)) {
            kept + 1
        } else {
            kept
        }
    };
    let mut exp = e + drop;
    if kept == 1u128 << 64 {
        kept >>= 1;
        exp += 1;
    }
    if kept == 0 {
        return Some(LongDouble {
            neg,
            ..LongDouble::ZERO
        });
    }
    if exp > MAX_EXP {
        return None;
    }
    Some(LongDouble {
        neg,
        mant: kept as u64,
        exp,
    })
}

/// An unsigned big integer: little-endian 64-bit limbs, no high zero limbs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u64>);

impl Big {
    fn from_u64(n: u64) -> Big {
        let mut b = Big(vec![n]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn bits(&self) -> usize {
        match self.0.last() {
            None => 0,
            Some(top) => self.0.len() * 64 - top.leading_zeros() as usize,
        }
    }

    fn from_decimal(digits: &[u8]) -> Big {
        let mut b = Big(Vec::new());
        for chunk in digits.chunks(19) {
            let mut v = 0u64;
            for &c in chunk {
                v = v * 10 + (c - b'0') as u64;
            }
            b.mul_add_small(10u64.pow(chunk.len() as u32), v);
        }
        b
    }

    fn from_hex(digits: &[u8]) -> Big {
        let mut b = Big(Vec::new());
        for chunk in digits.chunks(15) {
            let mut v = 0u64;
            for &c in chunk {
                v = v << 4 | (c as char).to_digit(16).unwrap_or(0) as u64;
            }
            b.mul_add_small(1 << (4 * chunk.len()), v);
        }
        b
    }

    fn pow10(k: usize) -> Big {
        let mut b = Big::from_u64(1);
        for _ in 0..k / 19 {
            b.mul_add_small(10u64.pow(19), 0);
        }
        b.mul_add_small(10u64.pow((k % 19) as u32), 0);
        b
    }

    /// `self = self * m + a`.
    fn mul_add_small(&mut self, m: u64, a: u64) {
        let mut carry = a as u128;
        for limb in self.0.iter_mut() {
            let v = *limb as u128 * m as u128 + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        if carry != 0 {
            self.0.push(carry as u64);
        }
        self.trim();
    }

    fn mul(&self, other: &Big) -> Big {
        let mut out = vec![0u64; self.0.len() + other.0.len()];
        for (i, &x) in self.0.iter().enumerate() {
            let mut carry = 0u128;
            for (j, &y) in other.0.iter().enumerate() {
                let v = out[i + j] as u128 + x as u128 * y as u128 + carry;
                out[i + j] = v as u64;
                carry = v >> 64;
            }
            out[i + other.0.len()] = carry as u64;
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn shl(&self, n: usize) -> Big {
        if self.is_zero() {
            return self.clone();
        }
        let (limbs, bits) = (n / 64, n % 64);
        let mut out = vec![0u64; limbs];
        if bits == 0 {
            out.extend_from_slice(&self.0);
        } else {
            let mut carry = 0u64;
            for &l in &self.0 {
                out.push(l << bits | carry);
                carry = l >> (64 - bits);
            }
            out.push(carry);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn shr1(&mut self) {
        let n = self.0.len();
        for i in 0..n {
            let high = if i + 1 < n { self.0[i + 1] << 63 } else { 0 };
            self.0[i] = self.0[i] >> 1 | high;
        }
        self.trim();
    }

    fn cmp(&self, other: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    fn add(&self, other: &Big) -> Big {
        let (long, short) = if self.0.len() >= other.0.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut out = Vec::with_capacity(long.0.len() + 1);
        let mut carry = false;
        for (i, &l) in long.0.iter().enumerate() {
            let (v, c1) = l.overflowing_add(short.0.get(i).copied().unwrap_or(0));
            let (v, c2) = v.overflowing_add(carry as u64);
            out.push(v);
            carry = c1 || c2;
        }
        if carry {
            out.push(1);
        }
        Big(out)
    }

    /// `self - other`, for `self >= other`.
    fn sub(&self, other: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = false;
        for (i, &l) in self.0.iter().enumerate() {
            let (v, b1) = l.overflowing_sub(other.0.get(i).copied().unwrap_or(0));
            let (v, b2) = v.overflowing_sub(borrow as u64);
            out.push(v);
            borrow = b1 || b2;
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn to_decimal(&self) -> String {
        const CHUNK: u64 = 10_000_000_000_000_000_000; // 10^19
        if self.is_zero() {
            return "0".to_string();
        }
        let mut limbs = self.0.clone();
        let mut chunks = Vec::new();
        while !limbs.is_empty() {
            let mut rem = 0u128;
            for limb in limbs.iter_mut().rev() {
                let v = rem << 64 | *limb as u128;
                *limb = (v / CHUNK as u128) as u64;
                rem = v % CHUNK as u128;
            }
            chunks.push(rem as u64);
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
        }
        let mut out = chunks.pop().map(|c| c.to_string()).unwrap_or_default();
        for c in chunks.iter().rev() {
            out.push_str(&format!("{c:019}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn human(s: &str) -> Option<String> {
        match LongDouble::parse(s.as_bytes())? {
            Parsed::Finite(v) => Some(v.to_human()),
            Parsed::Infinite => Some("inf".into()),
        }
    }

    fn sum(a: &str, b: &str) -> Option<String> {
        let f = |s: &str| match LongDouble::parse(s.as_bytes()) {
            Some(Parsed::Finite(v)) => v,
            other => panic!("{s}: {other:?}"),
        };
        f(a).checked_add(f(b)).map(LongDouble::to_human)
    }

    // Every expected text below is what redis-server 7.0.15 (x86_64) replied.
    #[test]
    fn parses_and_prints_like_strtold_and_printf() {
        let cases = [
            ("0.1", "0.1"),
            ("10000.1", "10000.09999999999999964"),
            ("100000.1", "100000.10000000000000142"),
            ("1e5", "100000"),
            ("5.0e3", "5000"),
            ("1.5e20", "150000000000000000000"),
            ("-0.0", "0"),
            ("0x10", "16"),
            ("1e-20", "0"),
            ("3.14159265358979323846264", "3.14159265358979324"),
            (".5", "0.5"),
            ("5.", "5"),
            ("+.5e+3", "500"),
            ("0x1p-3", "0.125"),
            ("0x1.8p1", "3"),
            ("0X1P1", "2"),
            ("0x1.8", "1.5"),
            ("1e-4950", "0"),
            ("00012", "12"),
            ("-1e-17", "-0.00000000000000001"),
            ("-5e-18", "0"),
            ("5e-18", "0"),
            ("1.5e-17", "0.00000000000000002"),
            ("2.5e-17", "0.00000000000000002"),
            (
                "123456789012345678901234567890",
                "123456789012345678899921813504",
            ),
            ("-9223372036854775808", "-9223372036854775808"),
            ("18446744073709551617", "18446744073709551616"),
            ("0x1p-16445", "0"),
            ("1.9e-4951", "0"),
            ("infinity", "inf"),
            ("-INF", "inf"),
        ];
        for (input, want) in cases {
            assert_eq!(human(input).as_deref(), Some(want), "{input:?}");
        }
        assert!(human("1e300").unwrap().starts_with(
            "1000000000000000000008997324079559193870523944273290747938260082321265646596"
        ));
        assert_eq!(human("1e300").unwrap().len(), 301);
        assert!(
            human("1.18973149535723176503e+4932")
                .unwrap()
                .starts_with("118973149535723176502126385303097020516906332229462420044")
        );
        for bad in [
            "1e",
            "1e+",
            "0x",
            "1e-5000",
            "1e5000",
            "nan",
            "1 ",
            " 1",
            "-",
            "+",
            ".",
            "e5",
            "1_0",
            "1,5",
            "0x1p16384",
            "0x1p-16446",
            "1e-4951",
            "",
            "infin",
            "abc",
            "\0",
            "1\0",
        ] {
            assert_eq!(human(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn adds_like_the_x87_unit() {
        assert_eq!(sum("0.1", "0.2").as_deref(), Some("0.3"));
        assert_eq!(sum("10.5", "0.1").as_deref(), Some("10.6"));
        assert_eq!(sum("1e4000", "-1e4000").as_deref(), Some("0"));
        assert_eq!(
            sum("1.1", "1e30").as_deref(),
            Some("1000000000000000000024696061952")
        );
        assert_eq!(
            sum("9223372036854775807", "1").as_deref(),
            Some("9223372036854775808")
        );
        assert_eq!(sum("-3", "0.5").as_deref(), Some("-2.5"));
        assert_eq!(
            sum("123.456", "-1000000.789").as_deref(),
            Some("-999877.33299999999996999")
        );
        assert_eq!(sum("1", "1.0e-3").as_deref(), Some("1.001"));
        assert_eq!(
            sum(
                "1.18973149535723176502e+4932",
                "1.18973149535723176502e+4932"
            ),
            None
        );
        let mut acc = LongDouble::ZERO;
        let tenth = match LongDouble::parse(b"0.1") {
            Some(Parsed::Finite(v)) => v,
            _ => unreachable!(),
        };
        let mut seen = Vec::new();
        for _ in 0..10 {
            acc = acc.checked_add(tenth).unwrap();
            // Redis stores the text and parses it back before the next addition.
            acc = match LongDouble::parse(acc.to_human().as_bytes()) {
                Some(Parsed::Finite(v)) => v,
                _ => unreachable!(),
            };
            seen.push(acc.to_human());
        }
        assert_eq!(
            seen,
            [
                "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"
            ]
        );
        assert_eq!(
            LongDouble::from_i64(i64::MIN).to_human(),
            "-9223372036854775808"
        );
    }
}

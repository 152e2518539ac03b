//! Glob patterns as Redis's `stringmatchlen` understands them (KEYS, SCAN MATCH, CONFIG
//! GET): `*`, `?`, `[abc]`, `[^a-z]`, and `\` to escape.
//!
//! Iterative with one backtrack point (the last `*`), so a pattern like `a*a*a*a*b`
//! against a long string costs O(pattern x string), not exponential time.

pub fn glob_match(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {
                    let (len, ok) = match_one(&pattern[p..], text[t], nocase);
                    if ok {
                        p += len;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one pattern token (a literal, an escape or a class) against `c`: the token's
/// length and whether it matched.
fn match_one(pat: &[u8], c: u8, nocase: bool) -> (usize, bool) {
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match pat[0] {
        b'\\' if pat.len() >= 2 => (2, eq(pat[1], c)),
        b'[' => {
            let mut i = 1;
            let negate = pat.get(1) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            loop {
                match pat.get(i) {
                    // An unterminated class runs to the end of the pattern, as in Redis.
                    None => break,
                    Some(b']') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < pat.len() => {
                        matched |= eq(pat[i + 1], c);
                        i += 2;
                    }
                    Some(&lo) if pat.get(i + 1) == Some(&b'-') && i + 2 < pat.len() => {
                        let hi = pat[i + 2];
                        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                        let (lo, hi, c) = if nocase {
                            (
                                lo.to_ascii_lowercase(),
                                hi.to_ascii_lowercase(),
                                c.to_ascii_lowercase(),
                            )
                        } else {
                            (lo, hi, c)
                        };
                        matched |= lo <= c && c <= hi;
                        i += 3;
                    }
                    Some(&x) => {
                        matched |= eq(x, c);
                        i += 1;
                    }
                }
            }
            (i, matched != negate)
        }
        x => (1, eq(x, c)),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn patterns() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes(), false);
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h\\*llo", "h*llo"));
        assert!(!m("h\\*llo", "hello"));
        assert!(m("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(m("*foo*", "xxfooyy"));
        assert!(!m("foo", "foobar"));
        assert!(glob_match(b"MAX*", b"maxmemory", true));
    }
}

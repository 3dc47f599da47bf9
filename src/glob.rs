//! Whole-string wildcard matching, one algorithm for the bot's `expect`
//! patterns (bytes, `*` only) and IRC's WHO masks (characters, `*` and
//! `?`, ASCII case ignored).

/// Whole-string match where `*` stands for any run of bytes, the empty one
/// included; every other byte matches itself. Working on bytes is safe for
/// UTF-8: a literal can only start matching at the start of a character.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    glob_by(pattern, text, b'*', None, |p, t| p == t)
}

/// Whole-sequence match where `any` stands for any run, the empty one
/// included, and `one`, when given, for any one element; other elements
/// match where `same` says so.
///
/// Greedy with one backtrack point (the last `any` seen), which is linear
/// in practice, never worse than pattern length times text length, and
/// never exponential.
pub fn glob_by<T: Copy + PartialEq>(
    pattern: &[T],
    text: &[T],
    any: T,
    one: Option<T>,
    same: impl Fn(T, T) -> bool,
) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `any` was, and how much of the text it has eaten so far.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(&c) if c == any => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if Some(c) == one || same(c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, t: &str) -> bool {
        glob(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn glob_matches_the_whole_string() {
        assert!(g("hello", "hello"));
        assert!(!g("hello", "hello!"));
        assert!(!g("hello", "hell"));
        assert!(g("hello*", "hello, world"));
        assert!(g("hello*", "hello"));
        assert!(g("*world", "hello, world"));
        assert!(!g("*world", "hello, world!"));
        assert!(g("h*o*d", "hello, world"));
        assert!(g("*", ""));
        assert!(g("", ""));
        assert!(!g("", "x"));
        assert!(g("**a**", "a"));
        assert!(g("*aab", "aaaab"));
        assert!(g("a*b*c", "abbbbc"));
        assert!(!g("a*b*c", "abbbbcd"));
        assert!(g("café *", "café au lait"));
        assert!(g("*é", "é"));
    }

    #[test]
    fn glob_is_not_exponential() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!g(&pattern, &text));
    }
}

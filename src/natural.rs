//! Natural (numeric-aware) order of file names: `2.png` before `10.png`, as people and file
//! managers sort them, and as `ffmpeg -i clip.mp4 %d.png` numbers a clip's frames. `seggpt video`
//! and the page's Video panel take frames in this order.
//!
//! The rule: names are compared piece by piece, where a piece is a run of ASCII digits or any
//! other single byte. Two digit runs compare by their numeric value (of any length: leading zeros
//! are dropped, then the shorter run is the smaller number, then equal lengths compare digit by
//! digit, so no run overflows an integer); other bytes compare by value (case-sensitive), and a
//! name that is a prefix of another comes first. Names equal by this rule (`007` and `7`) are
//! ordered by their plain bytes, so the order is total and the same on every run.

use std::cmp::Ordering;
use std::ffi::OsStr;

/// The natural order of two names (see the module documentation).
pub fn natural_cmp(a: impl AsRef<OsStr>, b: impl AsRef<OsStr>) -> Ordering {
    let (a, b) = (a.as_ref().as_encoded_bytes(), b.as_ref().as_encoded_bytes());
    natural_pieces_cmp(a, b).then_with(|| a.cmp(b))
}

/// The comparison piece by piece, without the byte-order tie break.
fn natural_pieces_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let order = if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (run_a, run_b) = (digit_run(&a[i..]), digit_run(&b[j..]));
            i += run_a.len();
            j += run_b.len();
            number_cmp(run_a, run_b)
        } else {
            // A digit against another byte compares as its first digit: all digits sit between
            // the same bytes, so which digit it is never matters and the order stays transitive.
            i += 1;
            j += 1;
            a[i - 1].cmp(&b[j - 1])
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    // What is left: the name with pieces remaining is the longer one.
    (a.len() - i).cmp(&(b.len() - j))
}

/// The leading run of ASCII digits of `bytes`.
fn digit_run(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|b| !b.is_ascii_digit()).unwrap_or(bytes.len());
    &bytes[..end]
}

/// Two runs of digits by numeric value, without parsing them (they may be longer than any integer).
fn number_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (a, b) = (strip_leading_zeros(a), strip_leading_zeros(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn strip_leading_zeros(digits: &[u8]) -> &[u8] {
    let start = digits.iter().position(|&d| d != b'0').unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        names.sort_by(|a, b| natural_cmp(a, b));
        names
    }

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(
            sorted(&["10.png", "2.png", "1.png", "11.png", "100.png", "9.png"]),
            ["1.png", "2.png", "9.png", "10.png", "11.png", "100.png"]
        );
        assert_eq!(
            sorted(&["frame_10_b.png", "frame_2_b.png", "frame_2_a.png"]),
            ["frame_2_a.png", "frame_2_b.png", "frame_10_b.png"]
        );
    }

    #[test]
    fn zero_padded_names_keep_their_order() {
        assert_eq!(sorted(&["00010.jpg", "00002.jpg", "00000.jpg"]), ["00000.jpg", "00002.jpg", "00010.jpg"]);
    }

    #[test]
    fn runs_longer_than_any_integer_do_not_overflow() {
        let big = "184467440737095516150000000000000000001.png";
        let bigger = "184467440737095516150000000000000000002.png";
        assert_eq!(natural_cmp(big, bigger), Ordering::Less);
        assert_eq!(natural_cmp(bigger, "99.png"), Ordering::Greater);
        assert_eq!(natural_cmp(format!("0000000000000000000000{big}"), bigger), Ordering::Less);
    }

    #[test]
    fn equal_values_are_ordered_by_bytes_so_the_order_is_total() {
        // "007" and "7" are the same number: the plain byte order decides, never Equal.
        assert_eq!(natural_cmp("007.png", "7.png"), Ordering::Less);
        assert_eq!(natural_cmp("7.png", "007.png"), Ordering::Greater);
        assert_eq!(natural_cmp("7.png", "7.png"), Ordering::Equal);
    }

    #[test]
    fn prefixes_and_other_bytes() {
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
        assert_eq!(natural_cmp("a1", "a"), Ordering::Greater);
        assert_eq!(natural_cmp("", "0"), Ordering::Less);
        // A digit against another byte: '-' (0x2d) sorts before digits, '_' (0x5f) after.
        assert_eq!(sorted(&["a_1", "a1", "a-1"]), ["a-1", "a1", "a_1"]);
    }

    #[test]
    fn the_order_is_consistent_over_many_names() {
        // Every pair agrees with its reverse, and sorting is the same from any starting order.
        let names = [
            "1", "01", "001", "1a", "1_", "10", "9", "a", "a0", "a00", "a1", "a01", "a10", "a2b", "a2", "b",
            "", "0", "00", "x-1", "x1", "x_1",
        ];
        for a in names {
            for b in names {
                assert_eq!(natural_cmp(a, b), natural_cmp(b, a).reverse(), "{a:?} {b:?}");
                for c in names {
                    if natural_cmp(a, b).is_le() && natural_cmp(b, c).is_le() {
                        assert!(natural_cmp(a, c).is_le(), "{a:?} <= {b:?} <= {c:?}");
                    }
                }
            }
        }
        let mut reversed = names;
        reversed.reverse();
        assert_eq!(sorted(&names), sorted(&reversed));
    }
}

//! How many SMS segments a body takes, and in which encoding: the GSM 03.38 default
//! alphabet (7-bit septets, with the extension table's characters taking two) when every
//! character is in it, UCS-2 (UTF-16 code units) otherwise. A single segment holds 160
//! septets or 70 units; a concatenated message loses room to its header and holds 153 or 67
//! per segment. Segments are filled greedily and never split an escape sequence or a
//! surrogate pair, so a character that does not fit starts the next segment.

use serde::Serialize;

/// The characters of the GSM 03.38 default alphabet (one septet each).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table: each is sent as ESC plus one septet.
const GSM_EXTENSION: &str = "\u{0c}^{}\\[~]|€";

const GSM_SINGLE: usize = 160;
const GSM_MULTI: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_MULTI: usize = 67;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum SmsEncoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl SmsEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }
}

/// What a body costs on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCount {
    pub encoding: SmsEncoding,
    pub segments: u32,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole body.
    pub units: usize,
}

/// Septets one character takes in GSM-7, or `None` when it is not in the alphabet.
fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Fills segments of `per_segment` units greedily; a character never straddles two.
fn segments_for(
    costs: impl Iterator<Item = usize>,
    single: usize,
    per_segment: usize,
) -> (u32, usize) {
    let costs: Vec<usize> = costs.collect();
    let total: usize = costs.iter().sum();
    if total <= single {
        return (1, total);
    }
    let (mut segments, mut used) = (1u32, 0usize);
    for cost in costs {
        if used + cost > per_segment {
            segments += 1;
            used = 0;
        }
        used += cost;
    }
    (segments, total)
}

/// Counts the segments of `body` (an empty body is still one message).
pub fn count_segments(body: &str) -> SegmentCount {
    let septets: Option<Vec<usize>> = body.chars().map(gsm_septets).collect();
    match septets {
        Some(costs) => {
            let (segments, units) = segments_for(costs.into_iter(), GSM_SINGLE, GSM_MULTI);
            SegmentCount {
                encoding: SmsEncoding::Gsm7,
                segments,
                units,
            }
        }
        None => {
            let (segments, units) =
                segments_for(body.chars().map(char::len_utf16), UCS2_SINGLE, UCS2_MULTI);
            SegmentCount {
                encoding: SmsEncoding::Ucs2,
                segments,
                units,
            }
        }
    }
}

/// The GSM replacement of a common look-alike (typographic quotes, dashes, ellipsis, unusual
/// spaces), as smart encoding does; `None` keeps the character, `Some("")` drops it.
fn smart_replacement(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02BC}'
        | '\u{FF07}' => "'",
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}'
        | '\u{00BB}' | '\u{FF02}' => "\"",
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
        | '\u{2212}' | '\u{FE63}' | '\u{FF0D}' => "-",
        '\u{2026}' => "...",
        '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => " ",
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => "",
        '\u{2039}' => "<",
        '\u{203A}' => ">",
        '\u{2022}' => "-",
        '\u{02C6}' => "^",
        '\u{02DC}' | '\u{FF5E}' => "~",
        '\u{FF0C}' => ",",
        '\u{FF1A}' => ":",
        '\u{FF1B}' => ";",
        '\u{FF01}' => "!",
        '\u{FF1F}' => "?",
        '\u{FF08}' => "(",
        '\u{FF09}' => ")",
        _ => return None,
    })
}

/// `body` with the look-alikes replaced by GSM characters. Other characters are kept, so a
/// body with an emoji stays UCS-2.
pub fn smart_encode(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for c in body.chars() {
        match smart_replacement(c) {
            Some(r) => out.push_str(r),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(body: &str) -> (SmsEncoding, u32) {
        let c = count_segments(body);
        (c.encoding, c.segments)
    }

    #[test]
    fn the_published_boundaries() {
        use SmsEncoding::*;
        let cases: Vec<(String, SmsEncoding, u32)> = vec![
            (String::new(), Gsm7, 1),
            ("a".repeat(160), Gsm7, 1),
            ("a".repeat(161), Gsm7, 2),
            ("a".repeat(306), Gsm7, 2),
            ("a".repeat(307), Gsm7, 3),
            ("a".repeat(459), Gsm7, 3),
            ("a".repeat(460), Gsm7, 4),
            // The extension table counts two septets.
            (format!("{}€", "a".repeat(158)), Gsm7, 1),
            (format!("{}€", "a".repeat(159)), Gsm7, 2),
            ("{".repeat(80), Gsm7, 1),
            ("{".repeat(81), Gsm7, 2),
            // An escape sequence is not split: 152 septets, then '[' needs 2 of the 1 left.
            (format!("{}[{}", "a".repeat(152), "a".repeat(152)), Gsm7, 3),
            (format!("{}[{}", "a".repeat(151), "a".repeat(153)), Gsm7, 2),
            // Accented letters of the default alphabet stay GSM-7; others switch to UCS-2.
            ("é".repeat(160), Gsm7, 1),
            ("á".repeat(70), Ucs2, 1),
            ("á".repeat(71), Ucs2, 2),
            ("á".repeat(134), Ucs2, 2),
            ("á".repeat(135), Ucs2, 3),
            // An emoji is a surrogate pair: two units, never split.
            ("😀".repeat(35), Ucs2, 1),
            ("😀".repeat(36), Ucs2, 2),
            (format!("{}😀", "a".repeat(68)), Ucs2, 1),
            (format!("{}😀", "a".repeat(69)), Ucs2, 2),
            (format!("{}😀{}", "a".repeat(66), "a".repeat(66)), Ucs2, 3),
            (format!("{}😀{}", "a".repeat(65), "a".repeat(67)), Ucs2, 2),
            // Mixed scripts.
            ("Привет, мир".to_owned(), Ucs2, 1),
            ("Hello 世界".to_owned(), Ucs2, 1),
            ("Ελληνικά".to_owned(), Ucs2, 1),
            ("ΔΦΓΛΩΠΨΣΘΞ".to_owned(), Gsm7, 1),
        ];
        for (body, encoding, segments) in cases {
            assert_eq!(
                count(&body),
                (encoding, segments),
                "{} chars starting {:?}",
                body.chars().count(),
                body.chars().take(3).collect::<String>()
            );
        }
    }

    #[test]
    fn units_are_septets_or_code_units() {
        assert_eq!(count_segments("a€").units, 3);
        assert_eq!(count_segments("a😀").units, 3);
    }

    #[test]
    fn smart_encoding_turns_look_alikes_into_gsm() {
        let body = "\u{201C}Hi\u{201D} \u{2014} it\u{2019}s\u{00A0}here\u{2026}";
        assert_eq!(count_segments(body).encoding, SmsEncoding::Ucs2);
        let encoded = smart_encode(body);
        assert_eq!(encoded, "\"Hi\" - it's here...");
        assert_eq!(count_segments(&encoded).encoding, SmsEncoding::Gsm7);
        // Characters with no GSM look-alike are kept.
        assert_eq!(smart_encode("ok 😀"), "ok 😀");
    }
}

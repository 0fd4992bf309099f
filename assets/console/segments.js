// SMS segments as the server counts them (src/domain/segments.rs): the GSM 03.38 default
// alphabet (7-bit septets; the extension table's characters take two) when every character
// is in it, UCS-2 (UTF-16 code units) otherwise. One segment holds 160 septets or 70 units;
// a concatenated message holds 153 or 67 per segment, filled greedily without splitting an
// escape sequence or a surrogate pair.

const GSM_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u001bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
const GSM_EXTENSION = new Set("\f^{}\\[~]|€");

const LIMITS = { "GSM-7": [160, 153], "UCS-2": [70, 67] };

/** Septets one character (a code point) takes in GSM-7, or 0 when it is not in the alphabet. */
function septets(c) {
  if (GSM_BASIC.has(c)) return 1;
  if (GSM_EXTENSION.has(c)) return 2;
  return 0;
}

/**
 * {encoding: "GSM-7"|"UCS-2", segments, units, perSegment, firstNonGsm} for a body; an empty
 * body is one segment. `firstNonGsm` is the first character that forced UCS-2.
 */
export function countSegments(body) {
  const chars = Array.from(body || "");
  const nonGsm = chars.find((c) => septets(c) === 0);
  const encoding = nonGsm === undefined ? "GSM-7" : "UCS-2";
  const costs = chars.map((c) => (encoding === "GSM-7" ? septets(c) : c.length));
  const units = costs.reduce((a, b) => a + b, 0);
  const [single, multi] = LIMITS[encoding];
  if (units <= single) return { encoding, segments: 1, units, perSegment: single, firstNonGsm: nonGsm };
  let segments = 1;
  let used = 0;
  for (const cost of costs) {
    if (used + cost > multi) {
      segments += 1;
      used = 0;
    }
    used += cost;
  }
  return { encoding, segments, units, perSegment: multi, firstNonGsm: nonGsm };
}

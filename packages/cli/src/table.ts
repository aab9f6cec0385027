// Owns plain-text rendering for the ops CLI: aligned columns and key/value
// blocks. Every cell is scrubbed of control characters first — container
// names and labels come from the hosts being watched, and must not be able
// to move the cursor or recolour an operator's terminal.

/** Replaces C0/C1 control characters (ESC, CR, BEL, …) with "?". */
export function scrub(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** Columns separated by two spaces; the last column is not padded. */
export function formatTable(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows].map((r) => headers.map((_, i) => scrub(r[i] ?? '')));
  const widths = headers.map((_, i) => Math.max(...all.map((r) => [...r[i]!].length)));
  return all
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell + ' '.repeat(widths[i]! - [...cell].length))).join('  ').trimEnd())
    .join('\n') + '\n';
}

/** "Key:  value" lines with values aligned; multi-line values are indented. */
export function formatKeyValues(pairs: Array<[string, string]>): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length)) + 1;
  return pairs
    .map(([k, v]) => {
      const lines = v.split('\n').map(scrub);
      const pad = ' '.repeat(width + 2);
      return `${(k + ':').padEnd(width)}  ${lines[0]}` + lines.slice(1).map((l) => `\n${pad}${l}`).join('');
    })
    .join('\n') + '\n';
}

// Shared by the report scripts (bad-input-report.mjs, fault-report.mjs): replaces what stands
// between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in a document with generated text.
import { readFileSync, writeFileSync } from 'node:fs';

/** Writes `text` between the NAME markers of `file`; exits 1 naming the file when they are missing. */
export function writeBetweenMarkers(file, name, text) {
  const doc = readFileSync(file, 'utf8');
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i === -1 || j < i) {
    console.error(`${file}: no ${begin} … ${end} markers`);
    process.exit(1);
  }
  writeFileSync(file, `${doc.slice(0, i + begin.length)}\n${text}\n${doc.slice(j)}`);
}

// Owns the human form of a CIS report: one line per check, grouped by
// section, in docker-bench-security's familiar "[WARN] 5.4 - …" style with
// the details indented below, then the score.
import type { CisReport, CisResultKind } from './cis-types';

export interface CisFormatOptions {
  /** ANSI colours. Default false. */
  color?: boolean;
  /** Print the remediation of every non-PASS result. Default false. */
  remediation?: boolean;
  /** Only results at or above this level (PASS < NOTE < INFO < WARN is NOT an order; see `show`). Default: all. */
  show?: readonly CisResultKind[];
  /** Items listed per result before "… and N more". Default 10. */
  maxItems?: number;
}

const COLORS: Record<CisResultKind, string> = { PASS: '\x1b[1;32m', WARN: '\x1b[1;31m', INFO: '\x1b[1;34m', NOTE: '\x1b[1;33m' };
const RESET = '\x1b[0m';

export function formatCisText(report: CisReport, o: CisFormatOptions = {}): string {
  const tag = (k: CisResultKind): string => (o.color ? `${COLORS[k]}[${k}]${RESET}` : `[${k}]`);
  const maxItems = o.maxItems ?? 10;
  const lines: string[] = [];
  lines.push(`# ${report.benchmark} — ${report.generator} (docker-bench-security ${report.dockerbenchsecurity} checks)`);
  lines.push(`# ${new Date(report.start * 1000).toISOString()}`);
  for (const s of report.tests) {
    const shown = s.results.filter((r) => !o.show || o.show.includes(r.result));
    if (shown.length === 0) continue;
    lines.push('', `${tag('INFO')} ${s.id} - ${s.desc}`);
    for (const r of shown) {
      lines.push(`${tag(r.result)} ${r.id} - ${r.desc}`);
      if (r.items && r.items.length > 0) {
        const what = r.details !== undefined ? r.details.replace(/:.*$/s, '') : 'Items';
        lines.push(`${' '.repeat(7)}* ${what}:`);
        for (const it of r.items.slice(0, maxItems)) lines.push(`${' '.repeat(9)}- ${it}`);
        if (r.items.length > maxItems) lines.push(`${' '.repeat(9)}… and ${r.items.length - maxItems} more`);
      } else if (r.details) {
        lines.push(`${' '.repeat(7)}* ${r.details}`);
      }
      if (o.remediation && r.remediation) lines.push(`${' '.repeat(7)}> Remediation: ${r.remediation}`);
    }
  }
  const s = report.summary;
  lines.push('', `${tag('INFO')} Checks: ${report.checks}`);
  lines.push(`${tag('INFO')} Score: ${report.score}  (PASS ${s.pass}, WARN ${s.warn}, INFO ${s.info}, NOTE ${s.note}; ${s.percent} % of scored checks pass)`);
  return `${lines.join('\n')}\n`;
}

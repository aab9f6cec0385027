// Owns `bulkhead scans upload|get`: vulnerability reports (Trivy JSON) the
// policy's vulnerability rules read, keyed by image digest.
import type { Command } from 'commander';
import type { Scan as ScanDto } from '@bulkhead/client';
import { formatKeyValues, formatTable } from '../table';
import { readInputFile, toJson, type CommandContext } from './context';

export function registerScanCommands(program: Command, ctx: CommandContext): void {
  const scans = program
    .command('scans')
    .description('image vulnerability reports used by the vulnerability rules')
    .addHelpText(
      'after',
      '\nExamples:\n  trivy image --format json -o report.json registry.example.com/app:1.4.2\n  bulkhead scans upload report.json\n  bulkhead scans get sha256:4f1c…\n',
    );

  scans
    .command('upload')
    .description('upload a Trivy JSON report; agents receive it with the next policy bundle')
    .argument('<file>', 'Trivy report (trivy image --format json) ("-" reads standard input)')
    .addHelpText(
      'after',
      '\nThe report is keyed by the image digest it names; a newer report for the same digest replaces the older one.\n' +
        '\nExamples:\n  bulkhead scans upload report.json\n  trivy image --format json nginx:1.27 | bulkhead scans upload -\n',
    )
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const text = readInputFile(ctx, file, 'scan report');
      try {
        JSON.parse(text);
      } catch (e) {
        throw ctx.usageError(`${file} is not JSON (${(e as Error).message}); produce it with: trivy image --format json`);
      }
      const scan = await api.uploadScan(text);
      ctx.out(json ? toJson(scan) : `stored ${scan.scanner} scan of ${scan.digest}: ${countsLine(scan)}\n`);
    });

  scans
    .command('get')
    .description('show the stored report for an image digest')
    .argument('<digest>', 'image digest, sha256:…')
    .addHelpText('after', '\nExamples:\n  bulkhead scans get sha256:4f1c…\n  bulkhead --json scans get sha256:4f1c… | jq \'.vulnerabilities[] | select(.fixable)\'\n')
    .action(async (digest: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const scan = await api.getScan(digest);
      ctx.out(json ? toJson(scan) : renderScan(scan));
    });
}

function countsLine(s: ScanDto): string {
  const c = s.counts;
  return `${c.critical} critical, ${c.high} high, ${c.medium} medium, ${c.low} low, ${c.unknown} unknown; ${s.fixable} fixable`;
}

function renderScan(s: ScanDto): string {
  const head = formatKeyValues([
    ['Digest', s.digest],
    ['Scanner', s.scanner],
    ['Scanned', `${s.scannedAt} (${s.ageDays} days old)`],
    ['Uploaded', s.uploadedAt],
    ['Vulnerabilities', countsLine(s)],
  ]);
  if (s.vulnerabilities.length === 0) return head;
  const order = ['critical', 'high', 'medium', 'low', 'unknown'];
  const rows = [...s.vulnerabilities]
    .sort((a, b) => order.indexOf(a.severity) - order.indexOf(b.severity) || (b.cvss ?? 0) - (a.cvss ?? 0) || a.id.localeCompare(b.id))
    .map((v) => [v.id, v.severity, v.cvss !== undefined ? v.cvss.toFixed(1) : '-', v.fixable ? 'yes' : 'no', v.pkg ?? '-']);
  return head + '\n' + formatTable(['ID', 'SEVERITY', 'CVSS', 'FIXABLE', 'PACKAGE'], rows);
}

// Owns `bulkhead policy get|apply|dry-run|versions`: reading the policy in
// force, applying a new one (every validation error printed as
// FILE:LINE:COL: PATH: MESSAGE), and previewing a candidate against the fleet.
import { InvalidArgumentError, type Command } from 'commander';
import { ApiError } from '../client';
import type { DryRunResult as DryRunResultDto, Policy as PolicyDto, PolicyError as PolicyErrorDto, PolicyVersion as PolicyVersionDto } from '@bulkhead/client';
import { formatTable } from '../table';
import { readInputFile, toJson, type CommandContext } from './context';

export function registerPolicyCommands(program: Command, ctx: CommandContext): void {
  const policy = program
    .command('policy')
    .description('the fleet policy: show, apply, preview (dry-run) and list versions')
    .addHelpText(
      'after',
      '\nExamples:\n  bulkhead policy get > policy.yaml\n  bulkhead policy dry-run policy.yaml\n  bulkhead policy apply policy.yaml --comment "enforce no-privileged"\n  bulkhead policy versions\n',
    );

  policy
    .command('get')
    .description('print the policy in force (or an older version) as it was applied')
    // A positional version, not `--version N`: commander reads --version anywhere
    // in the command line as the program's own -V/--version flag.
    .argument('[version]', 'an older version instead of the one in force', parsePositiveInt)
    .addHelpText(
      'after',
      '\nPrints the document as it was submitted (YAML or JSON). With the global --json, prints the API object\n(version, author, comment, rule summary, document).\n' +
        '\nExamples:\n  bulkhead policy get > policy.yaml\n  bulkhead policy get 3\n  bulkhead --json policy get | jq -r \'.rules[] | select(.mode=="enforce") | .id\'\n',
    )
    .action(async (version: number | undefined, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const p = await api.getPolicy(version);
      ctx.out(json ? toJson(p) : p.yaml.endsWith('\n') ? p.yaml : p.yaml + '\n');
    });

  policy
    .command('apply')
    .description('validate a policy file and make it the policy in force (pushed to every agent)')
    .argument('<file>', 'policy document, YAML or JSON ("-" reads standard input)')
    .option('--comment <text>', 'why this version, kept with it (see policy versions)')
    .addHelpText(
      'after',
      '\nA file with errors changes nothing: every error is printed as FILE:LINE:COL: PATH: MESSAGE and the\nexit code is 1. Try it first with `bulkhead policy dry-run FILE`.\n' +
        '\nExamples:\n  bulkhead policy apply policy.yaml\n  bulkhead policy apply policy.yaml --comment "registry allowlist to enforce"\n  git show main:security/policy.yaml | bulkhead policy apply - --comment "$(git rev-parse --short main)"\n',
    )
    .action(async (file: string, o: { comment?: string }, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const text = readInputFile(ctx, file, 'policy file');
      const filename = file === '-' ? '<stdin>' : file;
      let p: PolicyDto;
      try {
        p = await api.applyPolicy(text, { filename, ...(o.comment !== undefined ? { comment: o.comment } : {}) });
      } catch (e) {
        if (e instanceof ApiError && e.policyErrors.length > 0) ctx.err(e.policyErrors.map(formatPolicyError).join(''));
        throw e;
      }
      ctx.out(json ? toJson(p) : describeApplied(p));
    });

  policy
    .command('dry-run')
    .description('evaluate a policy file against every container in the fleet and show what it would hit; changes nothing')
    .argument('<file>', 'candidate policy, YAML or JSON ("-" reads standard input)')
    .addHelpText(
      'after',
      '\nContainers of offline agents are evaluated on their last reported state. Exempted findings are listed\nwith MODE "exempt". Invalid files are reported like `policy apply` does (exit 1).\n' +
        '\nExamples:\n  bulkhead policy dry-run policy.yaml\n  bulkhead --json policy dry-run policy.yaml | jq \'.totals\'\n',
    )
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const text = readInputFile(ctx, file, 'policy file');
      let r: DryRunResultDto;
      try {
        r = await api.dryRunPolicy(text, { filename: file === '-' ? '<stdin>' : file });
      } catch (e) {
        if (e instanceof ApiError && e.policyErrors.length > 0) ctx.err(e.policyErrors.map(formatPolicyError).join(''));
        throw e;
      }
      ctx.out(json ? toJson(r) : renderDryRun(r));
    });

  policy
    .command('versions')
    .description('list every policy version, newest first; * marks the one in force')
    .addHelpText('after', '\nExamples:\n  bulkhead policy versions\n  bulkhead policy get 2 | diff - <(bulkhead policy get)\n')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const list = await api.listPolicyVersions();
      ctx.out(json ? toJson(list) : renderVersions(list.items));
    });
}

/** FILE:LINE:COL: PATH: MESSAGE — the shape editors and CI annotations understand. */
export function formatPolicyError(e: PolicyErrorDto): string {
  return `${e.file}:${e.line}:${e.column}: ${e.path === '' ? '(document)' : e.path}: ${e.message}\n`;
}

function describeApplied(p: PolicyDto): string {
  const enforce = p.rules.filter((r) => r.mode === 'enforce').length;
  return (
    `applied policy "${p.name}" as version ${p.version} (sha256 ${p.sha256.slice(0, 12)}): ` +
    `${p.rules.length} rule${p.rules.length === 1 ? '' : 's'}, ${enforce} enforce, ${p.rules.length - enforce} monitor\n`
  );
}

export function renderDryRun(r: DryRunResultDto): string {
  const rows: string[][] = [];
  for (const rule of r.rules) {
    for (const h of rule.hits) {
      rows.push([
        rule.ruleId,
        h.severity,
        h.exemptedBy ? 'exempt' : h.mode,
        h.exemptedBy ? '-' : h.mode === 'enforce' ? h.action.type : 'alert',
        displayName(h.containerName) || h.containerId.slice(0, 12),
        h.hostname || h.agentId,
        h.exemptedBy ? `exempted by ${h.exemptedBy.who}: ${h.exemptedBy.why}` : h.message,
      ]);
    }
  }
  const t = r.totals;
  // Rules the dry-run cannot decide for some containers (image signatures no host verified yet): never shown as clean.
  let undecided = '';
  for (const rule of r.rules) {
    const u = rule.undecided ?? [];
    if (u.length === 0) continue;
    const digests = [...new Set(u.map((x) => x.repoDigest))];
    undecided += `${rule.ruleId}: ${u.length} container${u.length === 1 ? '' : 's'} undecided — not verified yet on any host: ` +
      `${digests.slice(0, 3).join(', ')}${digests.length > 3 ? ` and ${digests.length - 3} more` : ''}\n`;
  }
  const summary =
    `${t.findings} finding${t.findings === 1 ? '' : 's'} (${t.enforce} enforce, ${t.monitor} monitor) from ${t.rulesHit} of ${t.rules} rules ` +
    `on ${t.containersHit} of ${t.containers} containers across ${t.agents} agent${t.agents === 1 ? '' : 's'}` +
    (t.exempted > 0 ? `; ${t.exempted} exempted` : '') +
    ((t.undecided ?? 0) > 0 ? `; ${t.undecided} undecided` : '') +
    '. Nothing was changed.\n';
  if (rows.length === 0) return undecided + summary;
  return formatTable(['RULE', 'SEVERITY', 'MODE', 'ACTION', 'CONTAINER', 'AGENT', 'REASON'], rows) + '\n' + undecided + summary;
}

function renderVersions(items: PolicyVersionDto[]): string {
  return formatTable(
    ['', 'VERSION', 'NAME', 'CREATED', 'BY', 'SHA256', 'COMMENT'],
    items.map((v) => [v.current ? '*' : '', String(v.version), v.name, v.createdAt, v.createdBy, v.sha256.slice(0, 12), v.comment || '-']),
  );
}

function displayName(name: string): string {
  return name.startsWith('/') ? name.slice(1) : name;
}

export function parsePositiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer.');
  return n;
}

// Host audit: one agent's latest host audit (GET /v1/agents/:id/audit): the CIS score, the
// socket and daemon lockdown findings (most severe first), the lockdown fixes the agent applied,
// the CIS Docker Benchmark report filtered by result, and image hygiene (stale and dangling
// images). Fleet-wide: a project-scoped credential is refused by the API (shown as such).
// Read-only for every role: fixes are applied by the agent's own --lockdown-fix settings.
import { getHostAudit, type HostAudit } from '../api';
import { hostOf, useAgents } from '../agents';
import { AgentStatusBadge, SeverityBadge, Time } from '../components/badges';
import { ErrorNote } from '../components/confirm';
import { bytes } from '../format';
import { useLiveData } from '../live';
import { href, navigate } from '../router';
import type { ViewProps } from '../routes';

// The report's nested parts, as docs/api.md (HostAudit, CisReport) describes them; the OpenAPI
// schema leaves them open.
interface Finding { id: string; severity: string; title: string; detail: string; remediation: string; fixable: boolean; fix?: string; subject: string }
interface Fix { fix: string; path: string; at: string; changed: boolean; dryRun: boolean; message: string; error?: string; persist?: string }
interface CisResult { id: string; desc: string; result: string; details?: string; remediation?: string; scored?: boolean }
interface CisSection { id: string; desc: string; results: CisResult[] }
interface Hygiene { counts?: Record<string, number>; staleBytes?: number; unusedDays?: number; images?: { id: string; tags: string[]; sizeBytes: number; status: string; idleDays: number | null }[]; error?: string }

const RESULTS = ['WARN', 'PASS', 'INFO', 'NOTE'] as const;
const RESULT_ICON: Record<string, string> = { PASS: '✔', WARN: '▲', INFO: 'ℹ', NOTE: '✎' };

export function HostAuditView({ params, query }: ViewProps) {
  const { agents, byId } = useAgents();
  const agentId = params['agent'] ?? agents[0]?.id;
  const audit = useLiveData(() => (agentId ? getHostAudit(agentId) : Promise.resolve(undefined)), [agentId], null);
  const result = query.get('result') ?? '';

  return (
    <div>
      <form class="filters" aria-label="Choose a host" onSubmit={(e) => e.preventDefault()}>
        <div>
          <label for="h-agent">Host</label>
          <select id="h-agent" value={agentId ?? ''} onChange={(e) => navigate(`/hosts/${encodeURIComponent((e.currentTarget as HTMLSelectElement).value)}`)}>
            {agents.map((a) => (
              <option key={a.id} value={a.id}>
                {a.hostname} ({a.status})
              </option>
            ))}
          </select>
        </div>
      </form>
      {agentId && byId.get(agentId) ? (
        <p class="small">
          {hostOf(byId, agentId)} <AgentStatusBadge status={byId.get(agentId)!.status} /> agent {byId.get(agentId)!.agentVersion}
        </p>
      ) : null}
      {agents.length === 0 ? <p class="muted">No agent has enrolled yet.</p> : null}
      <ErrorNote error={audit.error} />
      {audit.data ? <Report a={audit.data} result={result} agentId={agentId!} /> : audit.loading && agentId ? <p class="muted">Loading…</p> : null}
    </div>
  );
}

/** The default format of GET /v1/agents/:id/audit (the client's type also covers ?format=cis|prune). */
interface AuditReport {
  score: number;
  takenAt: string;
  receivedAt: string;
  lockdown?: Finding[];
  fixes?: Fix[];
  cis: { tests?: CisSection[]; summary?: Record<string, number> } | null;
  hygiene: Hygiene | null;
}

function Report({ a: raw, result, agentId }: { a: HostAudit; result: string; agentId: string }) {
  const a = raw as unknown as AuditReport;
  const lockdown = a.lockdown ?? [];
  const fixes = a.fixes ?? [];
  const cis = a.cis;
  const hygiene = a.hygiene;
  const cisRows = (cis?.tests ?? []).flatMap((s) => s.results.map((r) => ({ ...r, section: s.desc })));
  const shown = result ? cisRows.filter((r) => r.result === result) : cisRows;
  return (
    <>
      <section class="card" aria-labelledby="h-score">
        <h2 id="h-score">CIS score {Math.round(a.score)} %</h2>
        <p class="small muted">
          Audit taken <Time iso={a.takenAt} />, received <Time iso={a.receivedAt} />.
        </p>
      </section>

      <section class="card" aria-labelledby="h-lockdown">
        <h2 id="h-lockdown">Lockdown findings ({lockdown.length})</h2>
        {lockdown.length === 0 ? (
          <p class="ok">
            <span aria-hidden="true">✔ </span>No lockdown finding.
          </p>
        ) : (
          <div class="table-wrap">
            <table class="lockdown">
              <thead>
                <tr>
                  <th scope="col">Severity</th>
                  <th scope="col">Finding</th>
                  <th scope="col">Subject</th>
                  <th scope="col">Remediation</th>
                  <th scope="col">Fixable by the agent</th>
                </tr>
              </thead>
              <tbody>
                {lockdown.map((f) => (
                  <tr key={`${f.id}|${f.subject}`}>
                    <td>
                      <SeverityBadge severity={f.severity} />
                    </td>
                    <th scope="row">
                      {f.title}
                      <div class="small mono">{f.id}</div>
                    </th>
                    <td class="mono small">{f.subject}</td>
                    <td class="small">{f.remediation}</td>
                    <td>{f.fixable ? `yes (${f.fix})` : 'no'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section class="card" aria-labelledby="h-fixes">
        <h2 id="h-fixes">Fixes applied ({fixes.length})</h2>
        {fixes.length === 0 ? (
          <p class="muted">The agent applied no lockdown fix in this audit.</p>
        ) : (
          <ul class="plain">
            {fixes.map((f) => (
              <li key={`${f.fix}|${f.path}`}>
                <span aria-hidden="true">{f.error ? '⚠ ' : f.changed ? '✔ ' : '• '}</span>
                <strong>{f.fix}</strong> on <code>{f.path}</code>: {f.error ? `failed: ${f.error}` : f.dryRun ? `dry run: ${f.message}` : f.message} <Time iso={f.at} />
              </li>
            ))}
          </ul>
        )}
      </section>

      <section class="card" aria-labelledby="h-cis">
        <h2 id="h-cis">CIS Docker Benchmark</h2>
        {cis?.summary ? (
          <p class="small">
            {RESULTS.map((r) => `${r} ${cis.summary?.[r.toLowerCase()] ?? 0}`).join(' · ')}
          </p>
        ) : null}
        <form class="filters" aria-label="Filter the CIS report" onSubmit={(e) => e.preventDefault()}>
          <div>
            <label for="h-result">Result</label>
            <select id="h-result" value={result} onChange={(e) => navigate(`/hosts/${encodeURIComponent(agentId)}`, { result: (e.currentTarget as HTMLSelectElement).value })}>
              <option value="">all</option>
              {RESULTS.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </div>
        </form>
        <p class="muted small" role="status">
          {shown.length} of {cisRows.length} checks shown.
        </p>
        <div class="table-wrap">
          <table class="cis">
            <thead>
              <tr>
                <th scope="col">Check</th>
                <th scope="col">Result</th>
                <th scope="col">Description</th>
                <th scope="col">Remediation</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((r) => (
                <tr key={r.id} data-cis-result={r.result}>
                  <th scope="row" class="mono">
                    {r.id}
                  </th>
                  <td>
                    <span class={`badge cis-${r.result.toLowerCase()}`}>
                      <span aria-hidden="true">{RESULT_ICON[r.result] ?? '•'}</span> {r.result}
                    </span>
                  </td>
                  <td class="small">
                    {r.desc}
                    {r.details ? <div class="muted">{r.details}</div> : null}
                  </td>
                  <td class="small">{r.remediation ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>

      <section class="card" aria-labelledby="h-hygiene">
        <h2 id="h-hygiene">Image hygiene</h2>
        {!hygiene ? (
          <p class="muted">The agent sent no image hygiene report.</p>
        ) : hygiene.error ? (
          <p class="error">
            <span aria-hidden="true">⚠ </span>
            {hygiene.error}
          </p>
        ) : (
          <>
            <p class="small">
              {Object.entries(hygiene.counts ?? {})
                .map(([k, v]) => `${k} ${v}`)
                .join(' · ')}
              {hygiene.staleBytes !== undefined ? ` · stale images hold ${bytes(hygiene.staleBytes)}` : ''}
            </p>
            {(hygiene.images ?? []).length > 0 ? (
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Image</th>
                      <th scope="col">Status</th>
                      <th scope="col">Idle</th>
                      <th scope="col">Size</th>
                    </tr>
                  </thead>
                  <tbody>
                    {(hygiene.images ?? []).map((i) => (
                      <tr key={i.id}>
                        <th scope="row" class="mono small">
                          {i.tags.length ? i.tags.join(', ') : i.id.slice(0, 19)}
                        </th>
                        <td>{i.status}</td>
                        <td>{i.idleDays === null ? 'never used' : `${i.idleDays} d`}</td>
                        <td>{bytes(i.sizeBytes)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            ) : null}
          </>
        )}
      </section>
      <p class="small">
        <a href={href('/containers', { agent: agentId })}>This host's containers</a>
      </p>
    </>
  );
}

// Fleet overview: "is my fleet OK?" in one look. The counts come from one request,
// GET /v1/summary (counted by the database, scoped like the lists, whatever the fleet's size):
// agents by status and version, certificates about to expire, containers by state, open
// violations by severity, alerts and webhook deliveries of the last 24 h, the busiest
// containers, and each host's CIS score and open lockdown findings (its latest host audit,
// worst hosts first). The 24-hour timeline reads the last day's violations and action alerts; the
// agents table reads GET /v1/agents. Any fleet event reloads them (debounced).
import { getSummary, listAlerts, listViolations, type Summary, type Violation, type Alert } from '../api';
import { hostOf, useAgents } from '../agents';
import { AgentStatusBadge, SeverityBadge, Time } from '../components/badges';
import { BarChart, Timeline } from '../components/charts';
import { ErrorNote } from '../components/confirm';
import { bytes, containerName, percent, relative } from '../format';
import { useLiveData } from '../live';
import { href } from '../router';
import type { ViewProps } from '../routes';

const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;
const SEV_ICON: Record<string, string> = { critical: '◆', high: '▲', medium: '●', low: '○', info: 'ℹ' };
const CERT_WARN_DAYS = 14;
const LIST_MAX = 1000;
/** The worst hosts listed on the overview; the rest are in Host audit. */
const HOSTS_SHOWN = 10;

interface Recent {
  violations: Violation[];
  actions: Alert[];
  more: boolean;
}

async function loadRecent(): Promise<Recent> {
  const since = new Date(Date.now() - 24 * 3600_000).toISOString();
  const [v, a] = await Promise.all([listViolations({ since, limit: LIST_MAX }), listAlerts({ since: '24h', type: ['action', 'action_failed'], limit: LIST_MAX })]);
  return { violations: v.items, actions: a.items, more: !!v.nextCursor };
}

function hourBuckets(times: string[], now: number): number[] {
  const out = new Array<number>(24).fill(0);
  for (const t of times) {
    const age = (now - Date.parse(t)) / 3600_000;
    if (age < 0 || age >= 24) continue;
    out[23 - Math.floor(age)]!++;
  }
  return out;
}

const count = (list: { key: string; count: number }[], key: string) => list.find((x) => x.key === key)?.count ?? 0;
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function verdict(s: Summary): string[] {
  const problems: string[] = [];
  const crit = count(s.violations.openBySeverity, 'critical');
  const high = count(s.violations.openBySeverity, 'high');
  if (s.agents.offline) problems.push(`${plural(s.agents.offline, 'agent')} offline`);
  if (crit) problems.push(`${plural(crit, 'critical violation')} open`);
  if (high) problems.push(`${plural(high, 'high violation')} open`);
  if (s.agents.certExpiringSoon) problems.push(`${plural(s.agents.certExpiringSoon, 'agent certificate')} expiring within ${CERT_WARN_DAYS} days`);
  const lockBad = s.hosts ? count(s.hosts.lockdownBySeverity, 'critical') + count(s.hosts.lockdownBySeverity, 'high') : 0;
  if (lockBad) problems.push(`${plural(lockBad, 'critical or high host lockdown finding')} open`);
  if (s.webhooks.dead) problems.push(`${plural(s.webhooks.dead, 'webhook delivery', 'webhook deliveries')} dead-lettered`);
  return problems;
}

export function Overview(_: ViewProps) {
  const { agents, byId, error: agentsError } = useAgents();
  const sum = useLiveData(() => getSummary(5, HOSTS_SHOWN), [], () => true, 500);
  const recent = useLiveData(loadRecent, [], (e) => e.type.startsWith('alert.'), 1000);
  const s = sum.data;
  const now = Date.now();
  const problems = s ? verdict(s) : [];

  return (
    <div class="overview">
      <ErrorNote error={sum.error ?? agentsError ?? recent.error} />
      {s ? (
        <p class={`verdict ${problems.length ? 'verdict-bad' : 'verdict-ok'}`} role="status" data-testid="verdict">
          <span aria-hidden="true">{problems.length ? '⚠ ' : '✔ '}</span>
          {problems.length ? `Needs attention: ${problems.join('; ')}.` : 'Fleet OK: every agent online, no critical or high violation or host lockdown finding open, no dead-lettered alert.'}
        </p>
      ) : (
        <p aria-busy="true">Loading the fleet…</p>
      )}
      {s ? (
        <div class="grid tiles">
          <section class="card" aria-labelledby="ov-agents">
            <h2 id="ov-agents">Agents</h2>
            <p class="big">
              <span class="num">{s.agents.online}</span> online · <span class="num">{s.agents.offline}</span> offline
              {s.agents.revoked ? ` · ${s.agents.revoked} revoked` : ''}
            </p>
            <p class="muted">Versions: {s.agents.versions.map((v) => `${v.key} (${v.count})`).join(', ') || '—'}</p>
            <p class={s.agents.certExpiringSoon ? 'warn' : 'muted'}>
              {s.agents.certExpiringSoon ? <span aria-hidden="true">⚠ </span> : null}
              {plural(s.agents.certExpiringSoon, 'certificate')} expiring within {CERT_WARN_DAYS} days
            </p>
          </section>
          <section class="card" aria-labelledby="ov-sev">
            <h2 id="ov-sev">Open violations by severity</h2>
            <BarChart
              title="Open (unacknowledged, not exempted) violations by severity"
              bars={SEVERITIES.map((k) => ({ label: k, value: count(s.violations.openBySeverity, k), cls: `sev-${k}`, icon: SEV_ICON[k] }))}
            />
            <p>
              {s.violations.open} open, {s.violations.recent} reported in 24 h · <a href={href('/violations', { acknowledged: 'false' })}>All open violations</a>
            </p>
          </section>
          <section class="card" aria-labelledby="ov-alerts">
            <h2 id="ov-alerts">Alerts, last 24 h</h2>
            <p class="big">
              <span class="num">{s.alerts.occurrences}</span> alerts ({s.alerts.groups} grouped)
            </p>
            <BarChart
              title="Alerts of the last 24 hours by severity"
              bars={['critical', 'high', 'medium', 'low', 'info'].map((k) => ({ label: k, value: count(s.alerts.bySeverity, k), cls: `sev-${k}`, icon: SEV_ICON[k] }))}
            />
          </section>
          <section class="card" aria-labelledby="ov-containers">
            <h2 id="ov-containers">Containers</h2>
            <p class="big">
              <span class="num">{count(s.containers.byState, 'running')}</span> running of <span class="num">{s.containers.total}</span>
            </p>
            <p class="muted">{s.containers.byState.map((x) => `${x.count} ${x.key}`).join(', ') || 'none reported'}</p>
            <p>
              <a href={href('/containers', { state: 'running' })}>Running containers</a> · <a href={href('/containers')}>All</a>
            </p>
          </section>
          <section class="card" aria-labelledby="ov-webhooks">
            <h2 id="ov-webhooks">Alert delivery</h2>
            <p class={s.webhooks.dead ? 'warn' : ''}>
              {s.webhooks.dead ? <span aria-hidden="true">⚠ </span> : <span aria-hidden="true">✔ </span>}
              {plural(s.webhooks.dead, 'dead letter')}, {s.webhooks.pending} waiting for a retry
            </p>
            <p class="muted">
              {plural(s.webhooks.enabled, 'endpoint')} enabled of {s.webhooks.endpoints}; {s.webhooks.deliveredRecent} delivered and {plural(s.webhooks.failedAttemptsRecent, 'failed attempt')} in 24 h
            </p>
          </section>
        </div>
      ) : null}

      <section class="card wide" aria-labelledby="ov-timeline">
        <h2 id="ov-timeline">Violations and actions, last 24 hours</h2>
        {recent.data ? (
          <Timeline
            title="Violations and actions per hour over the last 24 hours"
            buckets={24}
            axis={<>24 h ago → now (one column per hour){recent.data.more ? '; the newest 1,000 violations' : ''}</>}
            series={[
              { label: 'violations', cls: 'series-violation', icon: '▲', counts: hourBuckets(recent.data.violations.map((v) => v.at), now) },
              { label: 'actions', cls: 'series-action', icon: '■', counts: hourBuckets(recent.data.actions.map((a) => a.lastSeenAt), now) },
            ]}
          />
        ) : (
          <p aria-busy="true">Loading…</p>
        )}
      </section>

      <div class="grid two">
        <section class="card" aria-labelledby="ov-busy">
          <h2 id="ov-busy">Busiest containers</h2>
          {s && s.busiest.cpu.length ? (
            <>
              <h3>CPU (% of one core)</h3>
              <BarChart
                title="The running containers using the most CPU"
                bars={s.busiest.cpu.map((c) => ({ label: `${containerName(c.name)} on ${hostOf(byId, c.agentId)}`, value: c.cpuPercent, cls: 'cpu', text: percent(c.cpuPercent) }))}
              />
              <h3>Memory</h3>
              <BarChart
                title="The running containers using the most memory"
                bars={s.busiest.memory.map((c) => ({ label: `${containerName(c.name)} on ${hostOf(byId, c.agentId)}`, value: c.memoryBytes, cls: 'cpu', text: bytes(c.memoryBytes) }))}
              />
            </>
          ) : (
            <p class="muted">No usage reported yet.</p>
          )}
        </section>
        <section class="card" aria-labelledby="ov-latest">
          <h2 id="ov-latest">Latest violations</h2>
          {recent.data && recent.data.violations.length ? (
            <ul class="plain">
              {recent.data.violations.slice(0, 6).map((v) => (
                <li key={v.id}>
                  <SeverityBadge severity={v.severity} /> <code>{v.ruleId}</code> on{' '}
                  {v.containerId ? <a href={href(`/containers/${encodeURIComponent(v.agentId)}/${encodeURIComponent(v.containerId)}`)}>{containerName(v.containerName)}</a> : containerName(v.containerName)}{' '}
                  <span class="muted">
                    ({hostOf(byId, v.agentId)}, <Time iso={v.at} />)
                  </span>
                </li>
              ))}
            </ul>
          ) : (
            <p class="muted">No violation in the last 24 hours.</p>
          )}
        </section>
      </div>

      {s ? <HostsCard hosts={s.hosts} /> : null}

      <section class="card wide" aria-labelledby="ov-agent-table">
        <h2 id="ov-agent-table">Agents</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Host</th>
                <th scope="col">Status</th>
                <th scope="col">Version</th>
                <th scope="col">Last seen</th>
                <th scope="col">Certificate expires</th>
                <th scope="col">Containers</th>
                <th scope="col">Policy</th>
              </tr>
            </thead>
            <tbody>
              {agents.map((a) => {
                const soon = Date.parse(a.certNotAfter) - now < CERT_WARN_DAYS * 86400_000;
                return (
                  <tr key={a.id}>
                    <th scope="row">
                      <a href={href('/containers', { agent: a.id })}>{a.hostname}</a>
                      <div class="muted small">{a.id}</div>
                    </th>
                    <td>
                      <AgentStatusBadge status={a.status} />
                    </td>
                    <td>{a.agentVersion}</td>
                    <td>
                      <Time iso={a.lastSeenAt} />
                    </td>
                    <td class={soon ? 'warn' : ''}>
                      {soon ? <span aria-hidden="true">⚠ </span> : null}
                      <time dateTime={a.certNotAfter} title={a.certNotAfter}>
                        {relative(a.certNotAfter)}
                      </time>
                      {soon ? ' (soon)' : ''}
                    </td>
                    <td>{a.containerCount}</td>
                    <td>{a.policy ? `v${a.policy.version}${a.policy.applied ? '' : ' (refused)'}` : '—'}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        {agents.length === 0 ? <p class="muted">No agent enrolled yet.</p> : null}
      </section>
    </div>
  );
}

/** Each host's latest audit: CIS score and open lockdown findings, worst first (GET /v1/summary's `hosts`). */
function HostsCard({ hosts }: { hosts: Summary['hosts'] }) {
  return (
    <section class="card wide" aria-labelledby="ov-hosts" data-testid="hosts-audit">
      <h2 id="ov-hosts">Hosts: CIS score and lockdown findings</h2>
      {!hosts ? (
        <p class="muted">Host audits are fleet-wide: a key limited to projects does not see them (as in the API).</p>
      ) : (
        <>
          <p>
            {plural(hosts.audited, 'host')} audited · {plural(hosts.withLockdownFindings, 'host')} with open lockdown findings
            {hosts.lockdownBySeverity.length ? ` (${hosts.lockdownBySeverity.map((c) => `${c.count} ${c.key}`).join(', ')})` : ''} · {hosts.belowFullScore} below a full CIS score
            {hosts.notAudited ? ` · ${plural(hosts.notAudited, 'agent')} without a report yet` : ''}
          </p>
          {hosts.worst.length ? (
            <div class="table-wrap">
              <table class="hosts-audit">
                <caption class="sr-only">The worst hosts first: most critical, then high lockdown findings, then the lowest CIS score</caption>
                <thead>
                  <tr>
                    <th scope="col">Host</th>
                    <th scope="col">CIS score</th>
                    <th scope="col">Open lockdown findings</th>
                    <th scope="col">Audit taken</th>
                  </tr>
                </thead>
                <tbody>
                  {hosts.worst.map((h) => (
                    <tr key={h.agentId} data-agent-id={h.agentId}>
                      <th scope="row">
                        <a href={href(`/hosts/${encodeURIComponent(h.agentId)}`)}>{h.hostname}</a> <AgentStatusBadge status={h.status} />
                      </th>
                      <td>
                        <strong>{Math.round(h.score)} %</strong>{' '}
                        <span class="small muted">
                          ({h.cis.pass} PASS · {h.cis.warn} WARN)
                        </span>
                      </td>
                      <td>
                        {h.lockdown.total === 0 ? (
                          <span class="ok">
                            <span aria-hidden="true">✔ </span>none
                          </span>
                        ) : (
                          (['critical', 'high', 'medium', 'low', 'info'] as const)
                            .filter((k) => h.lockdown[k] > 0)
                            .map((k) => (
                              <span key={k}>
                                <SeverityBadge severity={k} /> {h.lockdown[k]}{' '}
                              </span>
                            ))
                        )}
                      </td>
                      <td>
                        <Time iso={h.takenAt} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : (
            <p class="muted">No host audit received yet.</p>
          )}
          <p>
            {hosts.audited > hosts.worst.length ? `The ${hosts.worst.length} worst of ${hosts.audited} shown. ` : ''}
            <a href={href('/hosts')}>Every host in Host audit</a>
          </p>
        </>
      )}
    </section>
  );
}

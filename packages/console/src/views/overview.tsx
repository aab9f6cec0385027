// Fleet overview: "is my fleet OK?" in one look. Agents (online/offline, versions, last seen,
// certificate expiry), open violations by severity, alerts of the last 24 h, running
// containers and the busiest of them, and a 24-hour timeline of violations and actions.
// Everything comes from the /v1 lists; any fleet event reloads it (debounced).
import { listAlerts, listContainers, listViolations, type Alert, type Container, type Violation } from '../api';
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

interface Data {
  open: Violation[];
  openMore: boolean;
  recent: Violation[];
  alerts: Alert[];
  alertsMore: boolean;
  running: Container[];
  runningMore: boolean;
}

async function load(): Promise<Data> {
  const since = new Date(Date.now() - 24 * 3600_000).toISOString();
  const [open, recent, alerts, running] = await Promise.all([
    listViolations({ acknowledged: false, limit: LIST_MAX }),
    listViolations({ since, limit: LIST_MAX }),
    listAlerts({ since: '24h', limit: LIST_MAX }),
    listContainers({ state: 'running', limit: LIST_MAX }),
  ]);
  return {
    open: open.items,
    openMore: !!open.nextCursor,
    recent: recent.items,
    alerts: alerts.items,
    alertsMore: alerts.nextOffset !== null && alerts.nextOffset !== undefined,
    running: running.items,
    runningMore: !!running.nextCursor,
  };
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

export function Overview(_: ViewProps) {
  const { agents, byId, error: agentsError } = useAgents();
  const { data, error } = useLiveData(load, [], () => true, 500);
  const now = Date.now();

  const online = agents.filter((a) => a.status === 'online').length;
  const offline = agents.filter((a) => a.status === 'offline').length;
  const revoked = agents.filter((a) => a.status === 'revoked').length;
  const certSoon = agents.filter((a) => a.status !== 'revoked' && Date.parse(a.certNotAfter) - now < CERT_WARN_DAYS * 86400_000);
  const totalContainers = agents.reduce((s, a) => s + a.containerCount, 0);
  const versions = new Map<string, number>();
  for (const a of agents) if (a.status !== 'revoked') versions.set(a.agentVersion, (versions.get(a.agentVersion) ?? 0) + 1);

  const bySev = (items: { severity: string }[]) => Object.fromEntries(SEVERITIES.map((s) => [s, items.filter((v) => v.severity === s).length])) as Record<string, number>;
  const openBySev = data ? bySev(data.open) : undefined;
  const more = (flag: boolean | undefined) => (flag ? '+' : '');

  const problems: string[] = [];
  if (offline) problems.push(`${offline} agent${offline > 1 ? 's' : ''} offline`);
  if (openBySev?.['critical']) problems.push(`${openBySev['critical']}${more(data?.openMore)} critical violation${openBySev['critical'] > 1 ? 's' : ''} open`);
  if (openBySev?.['high']) problems.push(`${openBySev['high']}${more(data?.openMore)} high violation${openBySev['high'] > 1 ? 's' : ''} open`);
  if (certSoon.length) problems.push(`${certSoon.length} agent certificate${certSoon.length > 1 ? 's' : ''} expiring within ${CERT_WARN_DAYS} days`);

  const actions = data ? data.alerts.filter((a) => a.type === 'action' || a.type === 'action_failed') : [];
  const busiest = data ? [...data.running].filter((c) => c.usage).sort((a, b) => (b.usage?.cpuPercent ?? 0) - (a.usage?.cpuPercent ?? 0)).slice(0, 5) : [];

  return (
    <div class="overview">
      <ErrorNote error={error ?? agentsError} />
      {data ? (
        <p class={`verdict ${problems.length ? 'verdict-bad' : 'verdict-ok'}`} role="status" data-testid="verdict">
          <span aria-hidden="true">{problems.length ? '⚠ ' : '✔ '}</span>
          {problems.length ? `Needs attention: ${problems.join('; ')}.` : 'Fleet OK: every agent online, no critical or high violation open.'}
        </p>
      ) : (
        <p aria-busy="true">Loading the fleet…</p>
      )}
      <div class="grid">
        <section class="card" aria-labelledby="ov-agents">
          <h2 id="ov-agents">Agents</h2>
          <p class="big">
            <span class="num">{online}</span> online · <span class="num">{offline}</span> offline{revoked ? ` · ${revoked} revoked` : ''}
          </p>
          <p class="muted">
            Versions: {[...versions.entries()].map(([v, n]) => `${v} (${n})`).join(', ') || '—'}
          </p>
        </section>
        <section class="card" aria-labelledby="ov-sev">
          <h2 id="ov-sev">Open violations by severity</h2>
          {openBySev ? (
            <BarChart
              title="Open (unacknowledged) violations by severity"
              bars={SEVERITIES.map((s) => ({ label: s, value: openBySev[s] ?? 0, cls: `sev-${s}`, icon: SEV_ICON[s], text: `${openBySev[s] ?? 0}${more(data?.openMore)}` }))}
            />
          ) : null}
          <p>
            <a href={href('/violations', { acknowledged: 'false' })}>All open violations</a>
          </p>
        </section>
        <section class="card" aria-labelledby="ov-alerts">
          <h2 id="ov-alerts">Alerts, last 24 h</h2>
          {data ? (
            <>
              <p class="big">
                <span class="num">{data.alerts.reduce((s, a) => s + a.count, 0)}</span>
                {more(data.alertsMore)} alerts ({data.alerts.length} grouped)
              </p>
              <BarChart
                title="Alerts of the last 24 hours by severity"
                bars={['critical', 'high', 'medium', 'low', 'info'].map((s) => {
                  const n = data.alerts.filter((a) => a.severity === s).length;
                  return { label: s, value: n, cls: `sev-${s}`, icon: SEV_ICON[s], text: String(n) };
                })}
              />
            </>
          ) : null}
        </section>
        <section class="card" aria-labelledby="ov-containers">
          <h2 id="ov-containers">Containers</h2>
          {data ? (
            <p class="big">
              <span class="num">{data.running.length}</span>
              {more(data.runningMore)} running of <span class="num">{totalContainers}</span>
            </p>
          ) : null}
          <p>
            <a href={href('/containers', { state: 'running' })}>Running containers</a> · <a href={href('/containers')}>All</a>
          </p>
        </section>
      </div>

      <section class="card wide" aria-labelledby="ov-timeline">
        <h2 id="ov-timeline">Violations and actions, last 24 hours</h2>
        {data ? (
          <Timeline
            title="Violations and actions per hour over the last 24 hours"
            buckets={24}
            axis={<>24 h ago → now (one column per hour)</>}
            series={[
              { label: 'violations', cls: 'series-violation', icon: '▲', counts: hourBuckets(data.recent.map((v) => v.at), now) },
              { label: 'actions', cls: 'series-action', icon: '■', counts: hourBuckets(actions.map((a) => a.lastSeenAt), now) },
            ]}
          />
        ) : null}
      </section>

      <div class="grid two">
        <section class="card" aria-labelledby="ov-busy">
          <h2 id="ov-busy">Busiest containers (CPU)</h2>
          {busiest.length ? (
            <BarChart
              title="The five running containers using the most CPU"
              bars={busiest.map((c) => ({
                label: `${containerName(c.name)} on ${hostOf(byId, c.agentId)}`,
                value: c.usage!.cpuPercent,
                cls: 'cpu',
                text: `${percent(c.usage!.cpuPercent)} CPU, ${bytes(c.usage!.memoryBytes)}`,
              }))}
            />
          ) : (
            <p class="muted">No usage reported yet.</p>
          )}
        </section>
        <section class="card" aria-labelledby="ov-latest">
          <h2 id="ov-latest">Latest violations</h2>
          {data && data.recent.length ? (
            <ul class="plain">
              {data.recent.slice(0, 6).map((v) => (
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

// Containers: the fleet inventory, searched, filtered and sorted on the server (free text,
// host, state, image substring, labels, project, "breaks rule X"; sort by name, state, image,
// host, CPU or memory) and paged by cursor (100 rows a page by default, so 10,000 containers
// cost what 100 do). Filters and sort live in the hash query, so a view can be bookmarked or
// reloaded. Rows reload live when a container event arrives.
import { useEffect, useState } from 'preact/hooks';
import { listContainers, type Container, type ContainerQuery } from '../api';
import { hostOf, useAgents } from '../agents';
import { StateBadge, Time } from '../components/badges';
import { ErrorNote } from '../components/confirm';
import { bytes, containerName, percent, shortId } from '../format';
import { CursorPager } from '../components/pager';
import { useLiveData } from '../live';
import { href, navigate } from '../router';
import type { ViewProps } from '../routes';

const STATES = ['running', 'paused', 'exited', 'created', 'restarting', 'removing', 'dead'];
const PAGE_SIZES = [50, 100, 500];
const SORTS = ['agent', 'name', 'state', 'image', 'cpu', 'memory'] as const;
type SortKey = (typeof SORTS)[number];
const SORT_LABEL: Record<SortKey, string> = { agent: 'host', name: 'name', state: 'state', image: 'image', cpu: 'CPU', memory: 'memory' };

// A page of 500 rows rendered at once is one task of ~5,000 DOM nodes (hundreds of ms on a
// busy 2-core machine; the 50 ms long-task bound of issue 14 is blown by the table alone). A
// new page shows its first rows in the first frame and the rest a slice per task, so no task
// renders more than ROWS_PER_TASK rows and input stays answered (measured: 100 rows in one task
// took 40-85 ms on the shared 2-core machine at load 15; bench/console-scale.ts). A live reload of the same page
// keeps the rows already shown (no flicker, no scroll jump). Hand-written rather than a
// virtual list: every row stays in the DOM once shown (find in page, screen readers, the
// keyboard), which a windowing library gives up.
const FIRST_ROWS = 50;
const ROWS_PER_TASK = 25;

/** How many of `rows` to render now; grows by ROWS_PER_TASK a task; starts again when `page` changes. */
function useRowsShown(rows: number, page: string): number {
  const [state, setState] = useState({ page, shown: FIRST_ROWS });
  const current = state.page === page ? state.shown : FIRST_ROWS;
  useEffect(() => {
    if (state.page !== page) {
      setState({ page, shown: FIRST_ROWS });
      return undefined;
    }
    if (current >= rows) return undefined;
    const timer = setTimeout(() => setState({ page, shown: current + ROWS_PER_TASK }), 0);
    return () => clearTimeout(timer);
  }, [page, rows, current, state.page]);
  return Math.min(rows, current);
}

/** A column header that sorts the list on the server; a second press reverses it. */
function SortHeader({ label, sortKey, sort, onSort }: { label: string; sortKey: SortKey; sort: string; onSort: (s: string) => void }) {
  const active = sort === sortKey || sort === `-${sortKey}`;
  const desc = sort === `-${sortKey}`;
  // CPU and memory start with the busiest first; text columns A→Z.
  const next = active ? (desc ? sortKey : `-${sortKey}`) : sortKey === 'cpu' || sortKey === 'memory' ? `-${sortKey}` : sortKey;
  return (
    <th scope="col" aria-sort={active ? (desc ? 'descending' : 'ascending') : 'none'}>
      <button type="button" class="sort" onClick={() => onSort(next)}>
        {label}
        <span aria-hidden="true">{active ? (desc ? ' ▼' : ' ▲') : ' ↕'}</span>
        <span class="sr-only">{active ? `, sorted ${desc ? 'descending' : 'ascending'}` : ''}, sort by {label}</span>
      </button>
    </th>
  );
}

export function Containers({ query }: ViewProps) {
  const { agents, byId } = useAgents();
  const filter = {
    agent: query.get('agent') ?? '',
    state: query.get('state') ?? '',
    image: query.get('image') ?? '',
    label: query.get('label') ?? '',
    q: query.get('q') ?? '',
    rule: query.get('rule') ?? '',
    project: query.get('project') ?? '',
    sort: query.get('sort') ?? 'agent',
    limit: Number(query.get('limit') ?? '100') || 100,
  };
  const key = JSON.stringify(filter);
  // Cursors of the pages before this one (a stack: "previous" pops); other filters, page 1.
  const [paging, setPaging] = useState<{ key: string; cursors: string[] }>({ key, cursors: [] });
  const cursors = paging.key === key ? paging.cursors : [];
  // Forget the old filters' pages: coming back to them (the same address) starts at page 1, as the address says.
  useEffect(() => {
    if (paging.key !== key) setPaging({ key, cursors: [] });
  }, [key, paging.key]);
  const setCursors = (c: string[]) => setPaging({ key, cursors: c });
  const cursor = cursors[cursors.length - 1];
  const q: ContainerQuery = {
    agent: filter.agent || undefined,
    state: filter.state || undefined,
    image: filter.image || undefined,
    label: filter.label ? filter.label.split(/\s+/).filter(Boolean) : undefined,
    q: filter.q || undefined,
    rule: filter.rule || undefined,
    project: filter.project || undefined,
    sort: SORTS.some((k) => filter.sort === k || filter.sort === `-${k}`) ? (filter.sort as ContainerQuery['sort']) : undefined,
    limit: filter.limit,
    cursor,
  };
  const { data, error, loading } = useLiveData(() => listContainers(q), [key, cursor], (e) => e.type.startsWith('container.'), 200);
  const items = data?.items ?? [];
  const shown = useRowsShown(items.length, `${key} ${cursor ?? ''}`);

  const go = (over: Record<string, string>) => {
    const next: Record<string, string> = { ...filter, limit: String(filter.limit), ...over };
    if (next['sort'] === 'agent') next['sort'] = '';
    if (next['limit'] === '100') next['limit'] = '';
    navigate('/containers', next);
  };
  const apply = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const v = (k: string) => String(f.get(k) ?? '').trim();
    go({ q: v('q'), agent: v('agent'), state: v('state'), image: v('image'), label: v('label'), rule: v('rule'), project: v('project'), limit: v('limit') || '100' });
  };
  const sortKey = (filter.sort.replace(/^-/, '') as SortKey) || 'agent';

  return (
    <div>
      <form class="filters" onSubmit={apply} key={key} aria-label="Filter containers">
        <div>
          <label for="f-q">Search</label>
          <input id="f-q" name="q" type="search" value={filter.q} placeholder="name, image or id" />
        </div>
        <div>
          <label for="f-agent">Host</label>
          <select id="f-agent" name="agent" value={filter.agent}>
            <option value="">all hosts</option>
            {agents.map((a) => (
              <option key={a.id} value={a.id}>
                {a.hostname} ({a.status})
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="f-state">State</label>
          <select id="f-state" name="state" value={filter.state}>
            <option value="">any state</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="f-image">Image contains</label>
          <input id="f-image" name="image" type="search" value={filter.image} placeholder="nginx" />
        </div>
        <div>
          <label for="f-label">Labels</label>
          <input id="f-label" name="label" type="search" value={filter.label} placeholder="app=web env" aria-describedby="f-label-help" />
          <span id="f-label-help" class="help">
            key or key=value, separated by spaces; all must match
          </span>
        </div>
        <div>
          <label for="f-rule">Breaks rule</label>
          <input id="f-rule" name="rule" type="search" value={filter.rule} placeholder="host.privileged" aria-describedby="f-rule-help" />
          <span id="f-rule-help" class="help">
            containers with an open violation of this rule id
          </span>
        </div>
        <div>
          <label for="f-project">Project</label>
          <input id="f-project" name="project" type="search" value={filter.project} placeholder="payments" />
        </div>
        <div>
          <label for="f-limit">Per page</label>
          <select id="f-limit" name="limit" value={String(filter.limit)}>
            {PAGE_SIZES.map((n) => (
              <option key={n} value={String(n)}>
                {n}
              </option>
            ))}
          </select>
        </div>
        <div class="filter-buttons">
          <button type="submit" class="primary">
            Apply
          </button>
          <a class="button" href={href('/containers')} onClick={() => setCursors([])}>
            Clear
          </a>
        </div>
      </form>
      <ErrorNote error={error} />
      <p class="muted small" role="status" aria-live="polite">
        {loading && !data ? 'Loading…' : data ? `Page ${cursors.length + 1}: ${data.items.length} container${data.items.length === 1 ? '' : 's'}${data.nextCursor ? ', more on the next page' : ''}. Sorted by ${SORT_LABEL[sortKey]}${filter.sort.startsWith('-') ? ', descending' : ''}.` : ''}
      </p>
      <div class="table-wrap">
        <table class="containers" aria-busy={loading || shown < items.length ? 'true' : 'false'}>
          <thead>
            <tr>
              <SortHeader label="Name" sortKey="name" sort={filter.sort} onSort={(sort) => go({ sort })} />
              <SortHeader label="State" sortKey="state" sort={filter.sort} onSort={(sort) => go({ sort })} />
              <SortHeader label="Image" sortKey="image" sort={filter.sort} onSort={(sort) => go({ sort })} />
              <SortHeader label="Host" sortKey="agent" sort={filter.sort} onSort={(sort) => go({ sort })} />
              <SortHeader label="CPU" sortKey="cpu" sort={filter.sort} onSort={(sort) => go({ sort })} />
              <SortHeader label="Memory" sortKey="memory" sort={filter.sort} onSort={(sort) => go({ sort })} />
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {items.slice(0, shown).map((c: Container) => (
              <tr key={`${c.agentId}/${c.id}`} data-container-id={c.id}>
                <th scope="row">
                  <a href={href(`/containers/${encodeURIComponent(c.agentId)}/${encodeURIComponent(c.id)}`)}>{containerName(c.name)}</a>
                  <div class="muted small mono">{shortId(c.id)}</div>
                </th>
                <td>
                  <StateBadge state={c.state} />
                </td>
                <td class="mono">{c.imageRef}</td>
                <td>{hostOf(byId, c.agentId)}</td>
                <td>{c.usage ? percent(c.usage.cpuPercent) : '—'}</td>
                <td>{c.usage ? bytes(c.usage.memoryBytes) : '—'}</td>
                <td>
                  <Time iso={c.updatedAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {data && data.items.length === 0 ? <p class="muted">No container matches.</p> : null}
      <CursorPager cursors={cursors} setCursors={setCursors} nextCursor={data?.nextCursor} />
    </div>
  );
}

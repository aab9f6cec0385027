// Containers: the fleet inventory, searched, filtered and sorted on the server (free text,
// host, state, image substring, labels, project, "breaks rule X"; sort by name, state, image,
// host, CPU or memory) and paged by cursor (100 rows a page by default, so 10,000 containers
// cost what 100 do). Filters and sort live in the hash query, so a view can be bookmarked or
// reloaded. Rows reload live when a container event arrives.
import { Component } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { listContainers, type Agent, type Container, type ContainerQuery } from '../api';
import { hostOf, useAgents } from '../agents';
import { StateBadge } from '../components/badges';
import { ErrorNote } from '../components/confirm';
import { bytes, containerName, percent, relative, shortId } from '../format';
import { CursorPager } from '../components/pager';
import { useLiveData } from '../live';
import { href, navigate } from '../router';
import type { ViewProps } from '../routes';

const STATES = ['running', 'paused', 'exited', 'created', 'restarting', 'removing', 'dead'];
const PAGE_SIZES = [50, 100, 500];
const SORTS = ['agent', 'name', 'state', 'image', 'cpu', 'memory'] as const;
type SortKey = (typeof SORTS)[number];
const SORT_LABEL: Record<SortKey, string> = { agent: 'host', name: 'name', state: 'state', image: 'image', cpu: 'CPU', memory: 'memory' };

// A page of 500 rows rendered at once is one task of ~5,000 DOM nodes (105-170 ms of CPU on the
// shared 2-core machine, most of it the browser's layout of the whole table; the 50 ms
// long-task bound of issue 14 is blown by the table alone: bench/console-scale.ts). So a new
// page shows a screenful of rows in its first frame and adds the rest a slice per task, each
// slice sized by time rather than by a fixed count: the view measures what the last slice cost
// (its render, then the frame's style, layout and paint) and sizes the next one to fit
// SLICE_BUDGET_MS, so a slow or busy machine gets smaller slices instead of longer tasks. Rows
// already shown are not rendered again (Row below) and rows off screen are not laid out
// (GROUP_ROWS), so a slice costs its own rows, not the page's.
// A live reload of the same page keeps the rows already shown (no flicker, no scroll jump).
// Hand-written rather than a virtual list: every row stays in the DOM once shown (find in
// page, screen readers, the keyboard), which a windowing library gives up.
const FIRST_ROWS = 25;
/**
 * Rows per <tbody>. The table is laid out as blocks and grids (styles.css), not by the table
 * algorithm, and each group of rows skips style, layout and paint while it is off screen
 * (content-visibility: auto), so a slice added below the fold or a scroll costs its own rows,
 * not the page's (with the table algorithm every frame laid out all 500 rows: 25-48 ms of
 * Layout a frame, bench/console-scale.ts). Explicit ARIA roles keep the table's semantics,
 * which some browsers drop once a table is not displayed as one.
 */
const GROUP_ROWS = 25;
/** Script + frame work one slice may cost, ms: a quarter of the 50 ms long-task bound, so a renderer waiting for a core still has margin. */
const SLICE_BUDGET_MS = 12;
const FIRST_SLICE = 10;
const MIN_SLICE = 4;
const MAX_SLICE = 100;

interface Slicing {
  /** Rows the next slice adds. */
  size: number;
  /** Rows the slice in flight added (0: none measured). */
  added: number;
  /** performance.now() when the slice's task began, when its render was done, when its frame began. */
  start: number;
  scriptMs: number;
  frameAt: number;
}

/** How many of `rows` to render now; grows a slice per task (sized by time, above); starts again when `page` changes. */
function useRowsShown(rows: number, page: string): number {
  const [state, setState] = useState({ page, shown: FIRST_ROWS });
  const slicing = useRef<Slicing>({ size: FIRST_SLICE, added: 0, start: 0, scriptMs: 0, frameAt: 0 });
  const current = state.page === page ? state.shown : FIRST_ROWS;
  // Runs after the frame that painted the last slice (Preact runs effects after paint).
  useEffect(() => {
    const s = slicing.current;
    if (state.page !== page) {
      s.added = 0;
      setState({ page, shown: FIRST_ROWS });
      return undefined;
    }
    if (s.added > 0 && s.frameAt > 0) {
      // The slice's work: its render (script) and the frame's style, layout and paint.
      const perRow = (s.scriptMs + (performance.now() - s.frameAt)) / s.added;
      s.size = Math.max(MIN_SLICE, Math.min(MAX_SLICE, s.size * 2, Math.floor(SLICE_BUDGET_MS / Math.max(perRow, 0.01))));
    }
    s.added = 0;
    if (current >= rows) return undefined;
    const timer = setTimeout(() => {
      s.start = performance.now();
      s.added = Math.min(s.size, rows - current);
      s.frameAt = 0;
      setState({ page, shown: current + s.added });
      // Preact renders in a microtask queued by setState, so this one runs after the render.
      queueMicrotask(() => {
        s.scriptMs = performance.now() - s.start;
        requestAnimationFrame(() => void (s.frameAt = performance.now()));
      });
    }, 0);
    return () => clearTimeout(timer);
  }, [page, rows, current, state.page]);
  return Math.min(rows, current);
}

interface RowProps {
  c: Container;
  host: string;
  /** The "updated" column as shown ("3 min ago"): a row whose text would change renders again. */
  updated: string;
}

function sameRow(a: RowProps, b: RowProps): boolean {
  if (a.host !== b.host || a.updated !== b.updated) return false;
  if (a.c === b.c) return true;
  const x = a.c;
  const y = b.c;
  return (
    x.id === y.id &&
    x.agentId === y.agentId &&
    x.name === y.name &&
    x.state === y.state &&
    x.imageRef === y.imageRef &&
    x.updatedAt === y.updatedAt &&
    x.usage?.cpuPercent === y.usage?.cpuPercent &&
    x.usage?.memoryBytes === y.usage?.memoryBytes
  );
}

/**
 * One container's row. A class for shouldComponentUpdate (Preact's `memo` lives in
 * preact/compat, which this bundle does not otherwise need): while a page fills, each slice
 * renders only its new rows, and a live reload (a container event; every row is a new object)
 * re-renders only the rows whose text changed.
 */
class Row extends Component<RowProps> {
  override shouldComponentUpdate(next: RowProps): boolean {
    return !sameRow(this.props, next);
  }

  override render() {
    const { c, host, updated } = this.props;
    const name = containerName(c.name);
    return (
      <tr role="row" data-container-id={c.id}>
        <th scope="row" role="rowheader">
          <a href={href(`/containers/${encodeURIComponent(c.agentId)}/${encodeURIComponent(c.id)}`)} title={name}>
            {name}
          </a>
          <div class="muted small mono">{shortId(c.id)}</div>
        </th>
        <td role="cell">
          <StateBadge state={c.state} />
        </td>
        <td role="cell" class="mono" title={c.imageRef}>
          {c.imageRef}
        </td>
        <td role="cell" title={host}>{host}</td>
        <td role="cell">{c.usage ? percent(c.usage.cpuPercent) : '—'}</td>
        <td role="cell">{c.usage ? bytes(c.usage.memoryBytes) : '—'}</td>
        <td role="cell">{c.updatedAt ? <time dateTime={c.updatedAt} title={c.updatedAt}>{updated}</time> : <span>never</span>}</td>
      </tr>
    );
  }
}

/**
 * The table, apart from the filters above it: a slice re-renders this (its rows' props, the
 * new rows), not the form with its host list.
 */
function ContainerTable(props: { items: Container[]; page: string; loading: boolean; byId: Map<string, Agent>; sort: string; onSort: (s: string) => void }) {
  const { items, page, loading, byId, sort, onSort } = props;
  const shown = useRowsShown(items.length, page);
  const now = Date.now();
  const groups: number[] = [];
  for (let g = 0; g < shown; g += GROUP_ROWS) groups.push(g);
  return (
    <table class="containers" role="table" aria-busy={loading || shown < items.length ? 'true' : 'false'}>
      <thead role="rowgroup">
        <tr role="row">
          <SortHeader label="Name" sortKey="name" sort={sort} onSort={onSort} />
          <SortHeader label="State" sortKey="state" sort={sort} onSort={onSort} />
          <SortHeader label="Image" sortKey="image" sort={sort} onSort={onSort} />
          <SortHeader label="Host" sortKey="agent" sort={sort} onSort={onSort} />
          <SortHeader label="CPU" sortKey="cpu" sort={sort} onSort={onSort} />
          <SortHeader label="Memory" sortKey="memory" sort={sort} onSort={onSort} />
          <th scope="col" role="columnheader">
            Updated
          </th>
        </tr>
      </thead>
      {groups.map((g) => (
        <tbody role="rowgroup" key={g}>
          {items.slice(g, Math.min(g + GROUP_ROWS, shown)).map((c) => (
            <Row key={`${c.agentId}/${c.id}`} c={c} host={hostOf(byId, c.agentId)} updated={relative(c.updatedAt, now)} />
          ))}
        </tbody>
      ))}
    </table>
  );
}

/** A column header that sorts the list on the server; a second press reverses it. */
function SortHeader({ label, sortKey, sort, onSort }: { label: string; sortKey: SortKey; sort: string; onSort: (s: string) => void }) {
  const active = sort === sortKey || sort === `-${sortKey}`;
  const desc = sort === `-${sortKey}`;
  // CPU and memory start with the busiest first; text columns A→Z.
  const next = active ? (desc ? sortKey : `-${sortKey}`) : sortKey === 'cpu' || sortKey === 'memory' ? `-${sortKey}` : sortKey;
  return (
    <th scope="col" role="columnheader" aria-sort={active ? (desc ? 'descending' : 'ascending') : 'none'}>
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
        <ContainerTable items={items} page={`${key} ${cursor ?? ''}`} loading={loading} byId={byId} sort={filter.sort} onSort={(sort) => go({ sort })} />
      </div>
      {data && data.items.length === 0 ? <p class="muted">No container matches.</p> : null}
      <CursorPager cursors={cursors} setCursors={setCursors} nextCursor={data?.nextCursor} />
    </div>
  );
}

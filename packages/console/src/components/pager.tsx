// Previous / next for a list paged by the API's keyset cursors (`nextCursor`): the cursors
// of the pages walked so far are the caller's state, so "previous" is a pop, not a query.
export function CursorPager(props: { cursors: string[]; setCursors: (c: string[]) => void; nextCursor: string | null | undefined }) {
  const { cursors, setCursors, nextCursor } = props;
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled={cursors.length === 0} onClick={() => setCursors(cursors.slice(0, -1))}>
        <span aria-hidden="true">← </span>Previous page
      </button>
      <span>Page {cursors.length + 1}</span>
      <button type="button" disabled={!nextCursor} onClick={() => nextCursor && setCursors([...cursors, nextCursor])}>
        Next page<span aria-hidden="true"> →</span>
      </button>
    </nav>
  );
}

// Owns the fan-out of the one event stream (api.ts openEvents) to the views, and the hooks
// views use to load data and to reload it when a matching event arrives. A view never opens
// a stream of its own: one EventSource per page, whatever is on screen.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { closeEvents, openEvents, type FleetEvent, type StreamState } from './api';

type Listener = (e: FleetEvent) => void;
const listeners = new Set<Listener>();
const stateListeners = new Set<(s: StreamState) => void>();
let state: StreamState = 'closed';

export function startLive(onEnd: (reason: string) => void): void {
  openEvents(
    (e) => {
      if (e.type === 'stream.end' && e.reason === 'credential') onEnd('credential');
      for (const l of listeners) l(e);
    },
    (s) => {
      state = s;
      for (const l of stateListeners) l(s);
    },
  );
}

export function stopLive(): void {
  closeEvents();
  state = 'closed';
  for (const l of stateListeners) l(state);
}

export function subscribe(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function useStreamState(): StreamState {
  const [s, set] = useState(state);
  useEffect(() => {
    stateListeners.add(set);
    set(state);
    return () => void stateListeners.delete(set);
  }, []);
  return s;
}

export interface Loaded<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `load()` when `deps` change, and again whenever an event for which `live(e)` is true
 * arrives: at once after a quiet spell, and at most once per `delayMs` during a burst. A stream gap
 * (events missed) reloads every view.
 */
export function useLiveData<T>(load: () => Promise<T>, deps: unknown[], live: ((e: FleetEvent) => boolean) | null, delayMs = 250): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const gen = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  const reload = useCallback(() => {
    const mine = ++gen.current;
    setLoading(true);
    // Through a promise: a load that throws at once (a bad path parameter from the URL) is an error shown, not a crash.
    Promise.resolve().then(() => loadRef.current()).then(
      (d) => {
        if (mine !== gen.current) return;
        setData(d);
        setError(undefined);
        setLoading(false);
      },
      (err: Error) => {
        if (mine !== gen.current) return;
        setError(err);
        setLoading(false);
      },
    );
  }, []);

  useEffect(() => {
    setData(undefined);
    reload();
  }, deps);

  useEffect(() => {
    if (!live) return undefined;
    // Leading edge: the first event after a quiet spell reloads at once (the latency a person
    // sees); events within `delayMs` of a reload are folded into one more, `delayMs` later.
    let timer: ReturnType<typeof setTimeout> | undefined;
    let last = 0;
    const off = subscribe((e) => {
      if (e.type !== 'stream.gap' && !live(e)) return;
      if (timer !== undefined) return;
      timer = setTimeout(() => {
        timer = undefined;
        last = Date.now();
        reload();
      }, Math.max(0, last + delayMs - Date.now()));
    });
    return () => {
      off();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, deps);

  return { data, error, loading, reload };
}

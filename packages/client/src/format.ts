// Owns the two human-unit helpers both the tools and the console need, defined
// once here (pure; @bulkhead/shared re-exports them for the controller and agent).

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "15m", "30s", "500ms", "2h", "7d" → milliseconds; throws a RangeError naming `field` otherwise. */
export function parseDuration(input: string | number, field = 'duration'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new RangeError(`${field}: ${input} is not a non-negative number of milliseconds`);
    return input;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(input);
  if (!m) throw new RangeError(`${field}: "${input}" is not a duration like 500ms, 30s, 15m, 2h or 7d`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}

const SIZE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** `n` in the largest binary unit that keeps it ≥ 1: [value, unit index]. */
export function scaledSize(n: number): [number, number] {
  let i = 0;
  let v = n;
  while (v >= 1024 && i < SIZE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return [v, i];
}

/** "512 MiB", "1.50 GiB" — for messages. */
export function formatBytes(n: number): string {
  const [v, i] = scaledSize(n);
  return `${Number.isInteger(v) ? v : v.toFixed(2)} ${SIZE_UNITS[i]}`;
}

/** "10 B", "1.5 KiB", "5.0 GiB": one decimal above bytes — for tables (`bulkhead`, `bulkhead-agent prune-images`, the console). */
export function formatSize(n: number): string {
  const [v, i] = scaledSize(n);
  return `${i === 0 ? v : v.toFixed(1)} ${SIZE_UNITS[i]}`;
}

// Resource quantities as Docker's CLI writes them: memory "512m", "1g", "1.5g",
// "2GiB" (binary units, as `docker run --memory` does) or a byte count.

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** The largest memory quantity a policy may name: 1 PiB, far above any host and exact as a double. */
export const MAX_MEMORY_BYTES = 1024 ** 5;

/**
 * Bytes, or undefined when `v` is not a valid size or is too large to be an exact integer
 * (Docker reads it as an int64; a double past 2^53 would not be the number written).
 */
export function parseMemorySize(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER ? Math.floor(v) : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(v);
  if (!m) return undefined;
  const n = Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  return n <= Number.MAX_SAFE_INTEGER ? n : undefined;
}

const SIZE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** `n` in the largest binary unit that keeps it ≥ 1: [value, unit index]. */
function scaled(n: number): [number, number] {
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
  const [v, i] = scaled(n);
  return `${Number.isInteger(v) ? v : v.toFixed(2)} ${SIZE_UNITS[i]}`;
}

/** "10 B", "1.5 KiB", "5.0 GiB": one decimal above bytes — for tables (`bulkhead`, `bulkhead-agent prune-images`). */
export function formatSize(n: number): string {
  const [v, i] = scaled(n);
  return `${i === 0 ? v : v.toFixed(1)} ${SIZE_UNITS[i]}`;
}

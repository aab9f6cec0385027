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

// Defined once in @bulkhead/client (the ops CLI and the console print sizes too).
export { formatBytes, formatSize } from '@bulkhead/client';

/** The Bulkhead release (every package has the same; @bulkhead/shared re-exports it). */
export const VERSION = '0.1.0';

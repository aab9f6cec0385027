// Owns the link from a container's facts, as read from the store, back to the JSON text they
// were parsed from, so the API can write that text into a response instead of serializing
// the parsed object again (GET /v1/containers: 100 containers' facts a page, ~1 ms of the
// controller's CPU on a 2-core host; BENCHMARKS.md, "stored facts text").
//
// Hand-written (a WeakMap, no library): the text is the store's own column and the only
// question is "is this object the one parsed from it", which an identity map answers.
// A WeakMap keyed by the facts object itself: the record can be copied or spread and the facts
// still find their text; nothing is kept once the facts are garbage.

const texts = new WeakMap<object, string>();

/** Parses stored facts text and remembers the text for storedFactsJson. */
export function parseStoredFacts<T extends object>(text: string): T {
  const facts = JSON.parse(text) as T;
  if (facts !== null && typeof facts === 'object') texts.set(facts, text);
  return facts;
}

/**
 * The text `facts` was parsed from by parseStoredFacts, when it is an object the store wrote as
 * JSON.stringify(object) — which every write does (KyselyStore.replaceContainers) — so that
 * JSON.stringify(facts) === the text, as long as nobody changed the object since. Callers use
 * it only for records straight from a store read.
 */
export function storedFactsJson(facts: unknown): string | undefined {
  return facts !== null && typeof facts === 'object' ? texts.get(facts) : undefined;
}

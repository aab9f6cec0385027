// Owns reading a Docker API request body the way dockerd reads it: with Go's
// encoding/json decoding into Docker's Go structs (docker-types.ts has the
// tables). The authorization plugin judges what dockerd WILL do, so it must
// see the body exactly as dockerd's decoder does, not as JSON.parse does:
//
// - Object keys match struct fields exactly first, else case-insensitively
//   with Unicode simple folding ("privileged", "PRIVILEGED", "Bindſ" with
//   U+017F, "Kelvin" spelled with U+212A all name the same field).
// - Repeated keys are applied in order: a scalar's last value wins; a second
//   object for a struct or pointer-to-struct field merges into the first; a
//   map keeps earlier entries; a slice reuses its earlier elements (a struct
//   element keeps the fields the later one leaves out — Go reuses the
//   backing array); `null` clears maps, slices and pointers and leaves
//   everything else alone.
// - Keys that name no field are ignored; a value of the wrong type for a
//   field is an error (dockerd then refuses the request with 400).
// - Decoding stops after the first JSON value: trailing bytes ("}", "]")
//   are not read (dockerd 20.10 ignores them; 26.1 refuses all but "}"/"]").
// - Strings: invalid UTF-8 bytes and unpaired surrogate escapes become
//   U+FFFD, one per byte, as Go does; control characters are syntax errors.
//
// Written by hand: no npm library decodes JSON with Go's semantics (every
// JSON library for JavaScript builds plain objects with exact keys, the
// last duplicate winning, and cannot say "merge this object into that
// struct"). The decoder is schema-driven and works on the raw bytes, with
// one syntax pass first (as Go's Decoder reads the whole value before
// decoding it) and then a typed pass; neither recurses on input nesting
// beyond the depth of the Docker types, so hostile nesting cannot exhaust
// the stack.

/** A Go type, as far as decoding JSON into it is concerned. */
export type GoType =
  | { readonly k: 'string' }
  | { readonly k: 'bool' }
  | { readonly k: 'int'; readonly min: bigint; readonly max: bigint }
  | { readonly k: 'float' }
  /** docker's strslice.StrSlice: a JSON string or an array of strings (its own UnmarshalJSON). */
  | { readonly k: 'strslice' }
  | { readonly k: 'slice'; readonly elem: GoType }
  /** map[string]T (keys taken exactly). */
  | { readonly k: 'map'; readonly elem: GoType }
  | { readonly k: 'struct'; readonly s: GoStruct }
  | { readonly k: 'ptr'; readonly elem: GoType }
  /** A field Bulkhead does not judge: its JSON is syntax-checked and skipped. */
  | { readonly k: 'skip' };

export interface GoField {
  /** The JSON name (the struct tag's, else the Go field name). */
  readonly name: string;
  readonly type: GoType;
  /** For fields promoted from an embedded pointer struct: the group the value is stored under. */
  readonly group?: string;
}

export interface GoStruct {
  readonly byExact: ReadonlyMap<string, GoField>;
  readonly byFolded: ReadonlyMap<string, GoField>;
}

/** A struct type from its fields (in declaration order; the first field wins a fold collision, as in Go). */
export function goStruct(fields: readonly GoField[]): GoType {
  const byExact = new Map<string, GoField>();
  const byFolded = new Map<string, GoField>();
  for (const f of fields) {
    if (!byExact.has(f.name)) byExact.set(f.name, f);
    const folded = foldName(f.name);
    if (!byFolded.has(folded)) byFolded.set(folded, f);
  }
  return { k: 'struct', s: { byExact, byFolded } };
}

export const STRING: GoType = { k: 'string' };
export const BOOL: GoType = { k: 'bool' };
export const INT64: GoType = { k: 'int', min: -(2n ** 63n), max: 2n ** 63n - 1n };
export const UINT16: GoType = { k: 'int', min: 0n, max: 2n ** 16n - 1n };
export const UINT64: GoType = { k: 'int', min: 0n, max: 2n ** 64n - 1n };
export const FLOAT64: GoType = { k: 'float' };
export const STRSLICE: GoType = { k: 'strslice' };
export const SKIP: GoType = { k: 'skip' };
export const sliceOf = (elem: GoType): GoType => ({ k: 'slice', elem });
export const mapOf = (elem: GoType): GoType => ({ k: 'map', elem });
export const ptrTo = (elem: GoType): GoType => ({ k: 'ptr', elem });

/** Go's encoding/json nesting limit (decode.go maxNestingDepth). */
const MAX_DEPTH = 10_000;

/**
 * What Go's decoder would produce. Structs are plain objects holding only
 * the fields the body set, maps null-prototype objects (their keys are the
 * sender's); slices are arrays; `null`
 * where the body cleared a map, slice or pointer. `error` is set when Go's
 * Decode would return an error (syntax, or a value of the wrong type):
 * dockerd then refuses the request itself.
 */
export interface GoDecoded {
  value: Record<string, unknown> | undefined;
  error?: string;
}

/** Decodes the first JSON value of `buf` into `type` (a struct type) as Go's json.Decoder.Decode would. */
export function goDecode(buf: Uint8Array, type: GoType): GoDecoded {
  const d = new Decoder(buf);
  const start = d.ws(0);
  if (start >= buf.length) return { value: undefined, error: 'empty body (EOF)' };
  try {
    d.end = scanValue(buf, start);
  } catch (err) {
    if (err instanceof GoSyntaxError) return { value: undefined, error: err.message };
    throw err;
  }
  d.pos = start;
  const value = d.value(type, undefined);
  const out = isRecord(value) ? value : undefined;
  return d.error === undefined ? { value: out } : { value: out, error: d.error };
}

class GoSyntaxError extends Error {}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---- syntax -----------------------------------------------------------------

/**
 * The end (exclusive) of the JSON value starting at `pos`, checked with the
 * grammar Go's scanner accepts. Iterative: nesting costs a byte per level.
 */
function scanValue(b: Uint8Array, pos: number): number {
  // Stack of open containers: 1 = object, 2 = array.
  const stack: number[] = [];
  let i = pos;
  const fail = (what: string): never => {
    const c = i < b.length ? describeByte(b[i]!) : 'end of input';
    throw new GoSyntaxError(`invalid JSON: ${c} ${what} (offset ${i})`);
  };
  for (;;) {
    // A value.
    i = wsAt(b, i);
    if (i >= b.length) fail('looking for beginning of value');
    const c = b[i]!;
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= MAX_DEPTH) throw new GoSyntaxError(`invalid JSON: exceeded max depth ${MAX_DEPTH}`);
      i = wsAt(b, i + 1);
      if (c === 0x7b) {
        stack.push(1);
        if (b[i] === 0x7d) {
          i++;
          stack.pop();
        } else {
          if (b[i] !== 0x22) fail('looking for beginning of object key string');
          i = scanString(b, i);
          i = wsAt(b, i);
          if (b[i] !== 0x3a) fail("after object key");
          i++;
          continue;
        }
      } else {
        stack.push(2);
        if (b[i] === 0x5d) {
          i++;
          stack.pop();
        } else {
          continue;
        }
      }
    } else if (c === 0x22) {
      i = scanString(b, i);
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      i = scanNumber(b, i);
    } else if (c === 0x74) {
      i = literal(b, i, 'true');
    } else if (c === 0x66) {
      i = literal(b, i, 'false');
    } else if (c === 0x6e) {
      i = literal(b, i, 'null');
    } else {
      fail('looking for beginning of value');
    }
    // After a value: close containers or continue with the next element.
    for (;;) {
      if (stack.length === 0) return i;
      i = wsAt(b, i);
      const top = stack[stack.length - 1]!;
      const n = b[i];
      if (n === 0x2c /* , */) {
        i++;
        if (top === 1) {
          i = wsAt(b, i);
          if (b[i] !== 0x22) fail('looking for beginning of object key string');
          i = scanString(b, i);
          i = wsAt(b, i);
          if (b[i] !== 0x3a) fail('after object key');
          i++;
        }
        break;
      }
      if ((top === 1 && n === 0x7d) || (top === 2 && n === 0x5d)) {
        i++;
        stack.pop();
        continue;
      }
      fail(top === 1 ? 'after object key:value pair' : 'after array element');
    }
  }
}

function describeByte(c: number): string {
  return c >= 0x20 && c < 0x7f ? `invalid character '${String.fromCharCode(c)}'` : `invalid byte 0x${c.toString(16).padStart(2, '0')}`;
}

function wsAt(b: Uint8Array, i: number): number {
  while (i < b.length) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

function literal(b: Uint8Array, i: number, word: string): number {
  for (let k = 0; k < word.length; k++) {
    if (b[i + k] !== word.charCodeAt(k)) throw new GoSyntaxError(`invalid JSON: bad literal (expected ${word}) at offset ${i}`);
  }
  return i + word.length;
}

/** End of the string starting at the quote at `i`. */
function scanString(b: Uint8Array, i: number): number {
  i++;
  for (;;) {
    if (i >= b.length) throw new GoSyntaxError('invalid JSON: unexpected end of input in string literal');
    const c = b[i]!;
    if (c === 0x22) return i + 1;
    if (c < 0x20) throw new GoSyntaxError(`invalid JSON: control character 0x${c.toString(16).padStart(2, '0')} in string literal (offset ${i})`);
    if (c === 0x5c) {
      const e = b[i + 1];
      if (e === 0x75 /* u */) {
        for (let k = 2; k < 6; k++) {
          if (!isHex(b[i + k])) throw new GoSyntaxError(`invalid JSON: bad \\u escape in string literal (offset ${i})`);
        }
        i += 6;
        continue;
      }
      if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
        continue;
      }
      throw new GoSyntaxError(`invalid JSON: bad escape in string literal (offset ${i})`);
    }
    i++;
  }
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

function scanNumber(b: Uint8Array, i: number): number {
  const start = i;
  if (b[i] === 0x2d) i++;
  if (b[i] === 0x30) i++;
  else if (isDigit(b[i])) while (isDigit(b[i])) i++;
  else throw new GoSyntaxError(`invalid JSON: bad number at offset ${start}`);
  if (b[i] === 0x2e) {
    i++;
    if (!isDigit(b[i])) throw new GoSyntaxError(`invalid JSON: bad number at offset ${start}`);
    while (isDigit(b[i])) i++;
  }
  if (b[i] === 0x65 || b[i] === 0x45) {
    i++;
    if (b[i] === 0x2b || b[i] === 0x2d) i++;
    if (!isDigit(b[i])) throw new GoSyntaxError(`invalid JSON: bad number at offset ${start}`);
    while (isDigit(b[i])) i++;
  }
  return i;
}

// ---- typed decoding -------------------------------------------------------------

/** The backing array of a decoded slice: Go reuses its elements on a later decode into the same slice. */
const backing = new WeakMap<unknown[], unknown[]>();

class Decoder {
  pos = 0;
  end = 0;
  error: string | undefined;
  /** The body as latin1 text (one byte, one char): ASCII runs are sliced from it without a copy of their own. */
  private readonly text: string;

  constructor(private readonly b: Uint8Array) {
    this.text = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
  }

  ws(i: number): number {
    return wsAt(this.b, i);
  }

  private typeError(what: string, type: GoType): void {
    this.error ??= `cannot decode ${what} into a Go ${goTypeName(type)}`;
  }

  /**
   * Skips one value at pos. The syntax pass has checked it already, so
   * matching brackets outside strings is enough (no recursion either).
   */
  private skip(): void {
    const b = this.b;
    let i = this.ws(this.pos);
    let depth = 0;
    while (i < b.length) {
      const c = b[i]!;
      if (c === 0x22) {
        i++;
        while (b[i] !== 0x22) i += b[i] === 0x5c ? 2 : 1;
        i++;
        if (depth === 0) break;
      } else if (c === 0x7b || c === 0x5b) {
        depth++;
        i++;
      } else if (c === 0x7d || c === 0x5d) {
        if (depth === 0) break; // the parent's closing bracket: a scalar ended
        depth--;
        i++;
        if (depth === 0) break;
      } else if (depth === 0 && (c === 0x2c || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) {
        break; // a scalar ended
      } else {
        i++;
      }
    }
    this.pos = i;
  }

  private kindAt(): number {
    this.pos = this.ws(this.pos);
    return this.b[this.pos]!;
  }

  /**
   * Decodes the value at pos into `type`, given the field's current value
   * (`cur`, undefined when unset). Returns the new value.
   */
  value(type: GoType, cur: unknown): unknown {
    const c = this.kindAt();
    if (c === 0x6e /* null */) {
      this.pos += 4;
      switch (type.k) {
        case 'slice': case 'map': case 'ptr': case 'strslice': case 'skip':
          return null;
        default:
          return cur; // null into a string, bool, number or struct: no effect
      }
    }
    switch (type.k) {
      case 'skip':
        this.skip();
        return cur;
      case 'string':
        if (c !== 0x22) return this.mismatch(c, type, cur);
        return this.string();
      case 'bool':
        if (c === 0x74) {
          this.pos += 4;
          return true;
        }
        if (c === 0x66) {
          this.pos += 5;
          return false;
        }
        return this.mismatch(c, type, cur);
      case 'int':
      case 'float':
        if (c !== 0x2d && !isDigit(c)) return this.mismatch(c, type, cur);
        return this.number(type, cur);
      case 'strslice':
        if (c === 0x22) return [this.string()];
        if (c !== 0x5b) return this.mismatch(c, type, cur);
        // StrSlice.UnmarshalJSON decodes into a fresh []string: nothing is reused.
        return this.array(STRING, undefined);
      case 'slice':
        if (c !== 0x5b) return this.mismatch(c, type, cur);
        return this.array(type.elem, Array.isArray(cur) ? cur : undefined);
      case 'map':
        if (c !== 0x7b) return this.mismatch(c, type, cur);
        return this.map(type.elem, isRecord(cur) ? cur : undefined);
      case 'ptr':
        // A non-nil pointer is decoded through: its struct merges.
        return this.value(type.elem, cur === null ? undefined : cur);
      case 'struct':
        if (c !== 0x7b) return this.mismatch(c, type, cur);
        return this.struct(type.s, isRecord(cur) ? cur : undefined);
    }
  }

  private mismatch(c: number, type: GoType, cur: unknown): unknown {
    const what = c === 0x22 ? 'a string' : c === 0x7b ? 'an object' : c === 0x5b ? 'an array' : c === 0x74 || c === 0x66 ? 'a bool' : 'a number';
    this.typeError(what, type);
    this.skip();
    return cur;
  }

  private number(type: GoType & { k: 'int' | 'float' }, cur: unknown): unknown {
    const start = this.pos;
    this.pos = scanNumber(this.b, start);
    const text = this.text.slice(start, this.pos);
    if (type.k === 'float') {
      const n = Number(text);
      if (!Number.isFinite(n)) {
        this.typeError(`the number ${text}`, type);
        return cur;
      }
      return n;
    }
    // strconv.ParseInt / ParseUint: plain decimal integers only.
    if (!/^-?\d+$/.test(text)) {
      this.typeError(`the number ${text}`, type);
      return cur;
    }
    const n = Number(text);
    if (!Number.isSafeInteger(n)) {
      const big = BigInt(text);
      if (big < type.min || big > type.max) {
        this.typeError(`the number ${text}`, type);
        return cur;
      }
      return n;
    }
    if (n < Number(type.min) || n > Number(type.max)) {
      this.typeError(`the number ${text}`, type);
      return cur;
    }
    return n === 0 ? 0 : n; // no -0
  }

  private array(elem: GoType, cur: unknown[] | undefined): unknown[] {
    this.pos++; // [
    if (this.kindAt() === 0x5d) {
      this.pos++;
      // Go: an empty JSON array makes a new, empty slice (the old backing is gone).
      return [];
    }
    // The earlier slice's backing array is reused in place: the old value is being replaced.
    const store = cur ? (backing.get(cur) ?? cur) : [];
    let i = 0;
    for (;;) {
      const v = this.value(elem, store[i]);
      store[i] = v === undefined ? zeroOf(elem) : v;
      i++;
      const c = this.kindAt();
      this.pos++;
      if (c === 0x5d) break; // ]
    }
    if (store.length === i) return store;
    const out = store.slice(0, i);
    backing.set(out, store);
    return out;
  }

  private map(elem: GoType, cur: Record<string, unknown> | undefined): Record<string, unknown> {
    const out: Record<string, unknown> = cur ?? Object.create(null);
    this.pos++; // {
    if (this.kindAt() === 0x7d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.kindAt();
      const key = this.string();
      this.pos = this.ws(this.pos) + 1; // :
      // Go decodes each map value into a fresh zero value: nothing merges.
      const v = this.value(elem, undefined);
      out[key] = v === undefined ? zeroOf(elem) : v;
      const c = this.kindAt();
      this.pos++;
      if (c === 0x7d) return out;
    }
  }

  private struct(s: GoStruct, cur: Record<string, unknown> | undefined): Record<string, unknown> {
    // A plain object: its keys are the struct's field names from our tables,
    // never the sender's, so no prototype key can appear.
    const out: Record<string, unknown> = cur ?? {};
    this.pos++; // {
    if (this.kindAt() === 0x7d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.kindAt();
      const key = this.string();
      this.pos = this.ws(this.pos) + 1; // :
      const f = s.byExact.get(key) ?? s.byFolded.get(foldName(key));
      if (!f || f.type.k === 'skip') {
        this.skip();
      } else if (f.group !== undefined) {
        // A field promoted from an embedded pointer struct: Go allocates the
        // embedded struct as soon as one of its keys appears (even for null).
        let g = out[f.group];
        if (!isRecord(g)) out[f.group] = g = {};
        set(g as Record<string, unknown>, f.name, this.value(f.type, (g as Record<string, unknown>)[f.name]));
      } else {
        set(out, f.name, this.value(f.type, out[f.name]));
      }
      const c = this.kindAt();
      this.pos++;
      if (c === 0x7d) return out;
    }
  }

  /** The string at pos, decoded as Go's unquote does. */
  private string(): string {
    const b = this.b;
    let i = this.pos + 1;
    // Fast path: ASCII without escapes.
    let j = i;
    while (j < b.length) {
      const c = b[j]!;
      if (c === 0x22 || c === 0x5c || c >= 0x80) break;
      j++;
    }
    if (b[j] === 0x22) {
      this.pos = j + 1;
      return this.text.slice(i, j);
    }
    let out = this.text.slice(i, j);
    i = j;
    for (;;) {
      const c = b[i]!;
      if (c === 0x22) break;
      if (c === 0x5c) {
        const e = b[i + 1]!;
        if (e === 0x75) {
          let r = hex4(b, i + 2);
          i += 6;
          if (r >= 0xd800 && r < 0xe000) {
            // A surrogate pair, or U+FFFD for an unpaired half (Go's utf16.DecodeRune).
            if (r < 0xdc00 && b[i] === 0x5c && b[i + 1] === 0x75) {
              const r2 = hex4(b, i + 2);
              if (r2 >= 0xdc00 && r2 < 0xe000) {
                out += String.fromCodePoint(0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00));
                i += 6;
                continue;
              }
            }
            r = 0xfffd;
          }
          out += String.fromCharCode(r);
          continue;
        }
        out += ESCAPES[e]!;
        i += 2;
        continue;
      }
      if (c < 0x80) {
        out += String.fromCharCode(c);
        i++;
        continue;
      }
      const [cp, n] = decodeRune(b, i);
      out += String.fromCodePoint(cp);
      i += n;
    }
    this.pos = i + 1;
    return out;
  }
}

/** Go's zero value, for a slice element the body left unset (e.g. `null` into a string element). */
function zeroOf(t: GoType): unknown {
  switch (t.k) {
    case 'string': return '';
    case 'bool': return false;
    case 'int': case 'float': return 0;
    case 'struct': return {};
    default: return null;
  }
}

function set(o: Record<string, unknown>, k: string, v: unknown): void {
  if (v === undefined) return;
  o[k] = v;
}

const ESCAPES: Record<number, string> = { 0x22: '"', 0x5c: '\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t' };

function hex4(b: Uint8Array, i: number): number {
  let r = 0;
  for (let k = 0; k < 4; k++) {
    const c = b[i + k]!;
    r = r * 16 + (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57);
  }
  return r;
}


/**
 * One rune at `i`, as Go's utf8.DecodeRune reads it: [U+FFFD, 1] for any
 * invalid byte (overlong forms, surrogates, beyond U+10FFFF, truncated).
 */
export function decodeRune(b: Uint8Array, i: number): [number, number] {
  const c0 = b[i]!;
  if (c0 < 0x80) return [c0, 1];
  const cont = (k: number, lo = 0x80, hi = 0xbf): number => {
    const c = b[i + k];
    return c !== undefined && c >= lo && c <= hi ? c & 0x3f : -1;
  };
  if (c0 >= 0xc2 && c0 <= 0xdf) {
    const c1 = cont(1);
    if (c1 >= 0) return [((c0 & 0x1f) << 6) | c1, 2];
  } else if (c0 >= 0xe0 && c0 <= 0xef) {
    const c1 = cont(1, c0 === 0xe0 ? 0xa0 : 0x80, c0 === 0xed ? 0x9f : 0xbf);
    const c2 = c1 >= 0 ? cont(2) : -1;
    if (c2 >= 0) return [((c0 & 0x0f) << 12) | (c1 << 6) | c2, 3];
  } else if (c0 >= 0xf0 && c0 <= 0xf4) {
    const c1 = cont(1, c0 === 0xf0 ? 0x90 : 0x80, c0 === 0xf4 ? 0x8f : 0xbf);
    const c2 = c1 >= 0 ? cont(2) : -1;
    const c3 = c2 >= 0 ? cont(3) : -1;
    if (c3 >= 0) return [((c0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3, 4];
  }
  return [0xfffd, 1];
}

/**
 * Go's foldName (encoding/json): every rune mapped to the smallest rune of
 * its simple case-folding orbit. Docker's field names are ASCII, and the
 * only non-ASCII runes whose orbit reaches ASCII are U+017F (ſ → S) and
 * U+212A (Kelvin sign → K); other runes are kept, and match no field.
 */
export function foldName(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return s.toUpperCase();
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) out += ch.toUpperCase();
    else if (cp === 0x17f) out += 'S';
    else if (cp === 0x212a) out += 'K';
    else out += ch;
  }
  return out;
}

function goTypeName(t: GoType): string {
  switch (t.k) {
    case 'int': return t.min === 0n ? 'unsigned integer' : 'integer';
    case 'float': return 'float';
    case 'strslice': return 'string or list of strings';
    case 'slice': return 'list';
    case 'map': return 'map';
    case 'ptr': return goTypeName(t.elem);
    default: return t.k;
  }
}

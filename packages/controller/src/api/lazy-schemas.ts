// Owns when the API's route schemas are compiled. Fastify compiles every route's request
// validator (ajv) and response serializer (fast-json-stringify) while it gets ready, before
// the API listens: about 0.3 of the controller's ~0.9 CPU-second start-up. A controller
// restarted on a busy host (a SIGKILL, an upgrade) served that much later — 1.5–2.3 s under load
// (RELIABILITY.md, kill-controller). Here the compilers fastify uses are its own defaults
// (@fastify/ajv-compiler, @fastify/fast-json-stringify-compiler, with the server's options),
// wrapped so that each schema is compiled on first use; `warm()` then compiles the rest in
// the background, one schema per event-loop turn (a few ms each), once the controller serves.
// What a request sees is unchanged: the same compiled function answers it.
import { AjvCompiler } from '@fastify/ajv-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import type { FastifyServerOptions } from 'fastify';

type CompilersFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>;

type Compiler<R, F> = (route: R) => F;
type Factory<R, F> = (externalSchemas: unknown, options: unknown) => Compiler<R, F>;

/** Compiles on first call; `compile()` forces it. */
interface Pending {
  compile(): void;
  readonly compiled: boolean;
  readonly what: string;
}

export class LazySchemas {
  private readonly pending: Pending[] = [];
  private warming = false;
  private stopped = false;

  /** For fastify's `schemaController.compilersFactory`. */
  readonly compilersFactory: CompilersFactory = {
    buildValidator: this.lazyFactory(AjvCompiler() as unknown as Factory<RouteDef, ValidateFn>, (get) => {
      // fastify reads `errors` from the function it called (ajv sets it on the compiled one).
      const v = ((data: unknown): unknown => {
        const f = get();
        const r = f(data);
        v.errors = f.errors;
        return r;
      }) as ValidateFn;
      return v;
    }),
    buildSerializer: this.lazyFactory(SerializerSelector() as unknown as Factory<RouteDef, (doc: unknown) => string>, (get) => (doc: unknown) => get()(doc)),
  } as unknown as CompilersFactory; // fastify's types name ajv's and fast-json-stringify's own function types

  /** Schemas not compiled yet. */
  get remaining(): number {
    return this.pending.filter((p) => !p.compiled).length;
  }

  /**
   * Compiles every schema not compiled yet, one per `setImmediate` turn, starting `afterMs`
   * from now (what a start-up must do first — agents reconnecting — goes first). Resolves with the
   * number compiled here; a schema that does not compile is reported to `onError` (its route
   * answers 500 on use, as it would have refused to start before) and the rest go on.
   */
  async warm(onError: (what: string, err: Error) => void, afterMs = 0): Promise<number> {
    if (this.warming) return 0;
    this.warming = true;
    if (afterMs > 0) await new Promise<void>((r) => setTimeout(r, afterMs).unref());
    let n = 0;
    for (const p of this.pending) {
      if (p.compiled) continue;
      await new Promise<void>((r) => setImmediate(r));
      if (this.stopped) break;
      if (p.compiled) continue;
      try {
        p.compile();
        n++;
      } catch (err) {
        onError(p.what, err as Error);
      }
    }
    if (!this.stopped) this.pending.length = 0;
    return n;
  }

  /** Ends a warm-up under way (the server is closing). */
  stop(): void {
    this.stopped = true;
  }

  private lazyFactory<F>(factory: Factory<RouteDef, F>, wrap: (get: () => F) => F): Factory<RouteDef, F> {
    return (externalSchemas, options) => {
      // The compiler itself (an ajv instance with its formats) is also made on first use.
      let compiler: Compiler<RouteDef, F> | undefined;
      return (route) => {
        let fn: F | undefined;
        const what = `${route.method ?? ''} ${route.url ?? ''} ${route.httpPart ?? route.httpStatus ?? ''}`.trim();
        const pending: Pending = {
          compile: () => void get(),
          get compiled() {
            return fn !== undefined;
          },
          what,
        };
        const get = (): F => (fn ??= (compiler ??= factory(externalSchemas, options))(route));
        this.pending.push(pending);
        return wrap(get);
      };
    };
  }
}

interface RouteDef {
  schema: unknown;
  method?: string;
  url?: string;
  httpPart?: string;
  httpStatus?: string;
}

type ValidateFn = ((data: unknown) => unknown) & { errors?: unknown };

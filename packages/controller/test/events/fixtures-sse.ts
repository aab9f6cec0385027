// A real HTTPS client of GET /v1/events for tests: collects the events as they arrive
// (parsed by the CLI's own SSE parser), can pause reading (a slow client), and tells
// when and how the server ended the stream.
import { request } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { SseParser, type SseEvent } from '@bulkhead/client';

export interface SseStream {
  status: number;
  headers: IncomingMessage['headers'];
  /** Problem body when status is not 200. */
  text: string;
  events: SseEvent[];
  parser: SseParser;
  /** Resolves when `n` events (matching `pick`) arrived; rejects after `timeoutMs`. */
  waitFor: (n: number, pick?: (e: SseEvent) => boolean, timeoutMs?: number) => Promise<SseEvent[]>;
  /** Resolves when the server ended or dropped the connection. */
  closed: Promise<'end' | 'error'>;
  /** Stop reading from the socket (the server's writes pile up). */
  pause: () => void;
  resume: () => void;
  close: () => void;
}

export function openStream(url: string, caPem: string, headers: Record<string, string>): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ca: caPem, headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
      const events: SseEvent[] = [];
      const parser = new SseParser();
      const waiters = new Set<() => void>();
      let text = '';
      let closedResolve!: (v: 'end' | 'error') => void;
      const closed = new Promise<'end' | 'error'>((r) => (closedResolve = r));
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (res.statusCode !== 200) {
          text += chunk;
          return;
        }
        events.push(...parser.push(chunk));
        for (const w of [...waiters]) w();
      });
      res.on('end', () => closedResolve('end'));
      res.on('error', () => closedResolve('error'));
      res.on('close', () => closedResolve('error'));
      req.on('error', () => closedResolve('error'));
      const s: SseStream = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        get text() {
          return text;
        },
        events,
        parser,
        waitFor: (n, pick = () => true, timeoutMs = 20_000) =>
          new Promise((ok, fail) => {
            const check = (): void => {
              const got = events.filter(pick);
              if (got.length >= n) {
                waiters.delete(check);
                clearTimeout(timer);
                ok(got);
              }
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              fail(new Error(`waited ${timeoutMs} ms for ${n} events; have ${events.filter(pick).length}: ${events.map((e) => `${e.id}:${e.event}`).join(' ')}`));
            }, timeoutMs);
            waiters.add(check);
            check();
          }),
        closed,
        pause: () => {
          res.pause();
          res.socket.pause();
        },
        resume: () => {
          res.socket.resume();
          res.resume();
        },
        close: () => req.destroy(),
      };
      if (res.statusCode !== 200) res.on('end', () => resolve(s));
      else resolve(s);
    });
    req.on('error', reject);
    req.end();
  });
}

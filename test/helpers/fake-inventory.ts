// The agent link's view of the containers, held in memory: what tests that run a real
// ControllerLink (without a Docker engine) hand it, and change to make it send deltas.
import { EventEmitter } from 'node:events';
import type { ContainerDelta, ContainerFacts } from '../../packages/shared/src/index';
import type { LinkInventory } from '../../packages/agent/src/link/controller-link';

export class FakeInventory implements LinkInventory {
  readonly items = new Map<string, ContainerFacts>();
  private readonly ee = new EventEmitter();
  /** How often inventory() and count() were called. */
  readonly calls = { inventory: 0, count: 0 };
  inventory(): ContainerFacts[] {
    this.calls.inventory++;
    return [...this.items.values()];
  }
  count(): number {
    this.calls.count++;
    return this.items.size;
  }
  subscribe(l: (d: ContainerDelta) => void): () => void {
    this.ee.on('d', l);
    return () => this.ee.off('d', l);
  }
  /** Adds or replaces a container and sends its delta, as a `start` would. */
  upsert(c: ContainerFacts): void {
    this.items.set(c.id!, c);
    this.ee.emit('d', { kind: 'UPSERT', containerId: c.id, container: c, eventAction: 'start', eventTimeMs: Date.now() });
  }
  /** Removes a container and sends its delta, as a `destroy` would. */
  remove(id: string): void {
    this.items.delete(id);
    this.ee.emit('d', { kind: 'REMOVE', containerId: id, eventAction: 'destroy', eventTimeMs: Date.now() });
  }
  /** How many subscriptions are open (a link that leaks them grows this). */
  listeners(): number {
    return this.ee.listenerCount('d');
  }
}

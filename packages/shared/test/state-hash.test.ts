// The inventory state hash (docs/architecture.md#inventory-state-hash): equal for equal
// inventories whatever the order of containers and keys, different for any field a snapshot carries.
import t from 'tap';
import { inventoryStateHash, type ContainerFacts } from '../src/index';

const c = (id: string, extra: Partial<ContainerFacts> = {}): ContainerFacts => ({ id, name: `c-${id}`, imageRef: 'img:1', state: 'running', labels: { a: '1', b: '2' }, ...extra });

t.test('order of containers and of keys does not matter', async (t) => {
  const h = inventoryStateHash([c('1'), c('2')]);
  t.match(h, /^sha256:[0-9a-f]{64}$/);
  t.equal(inventoryStateHash([c('2'), c('1')]), h, 'containers in another order');
  const reordered: ContainerFacts = { labels: { b: '2', a: '1' }, state: 'running', imageRef: 'img:1', name: 'c-1', id: '1' };
  t.equal(inventoryStateHash([c('2'), reordered]), h, 'keys (and map keys) in another order');
  t.equal(inventoryStateHash([c('1', { user: undefined }), c('2')]), h, 'an undefined field is no field');
});

t.test('any change, addition or removal changes it', async (t) => {
  const h = inventoryStateHash([c('1'), c('2')]);
  t.not(inventoryStateHash([c('1'), c('2', { state: 'exited' })]), h, 'a field changed');
  t.not(inventoryStateHash([c('1'), c('2', { labels: { a: '1', b: '3' } })]), h, 'a label changed');
  t.not(inventoryStateHash([c('1')]), h, 'a container removed');
  t.not(inventoryStateHash([c('1'), c('2'), c('3')]), h, 'a container added');
  t.not(inventoryStateHash([]), h);
  t.equal(inventoryStateHash([]), inventoryStateHash([]), 'empty inventory is stable');
});

import t from 'tap';
import fc from 'fast-check';
import { HandleTable, SharedBuffer, narrow, rightsMask, rightsList, R_READ, R_WRITE, R_SHARE, R_ALL, type RefKind } from '../../daemon/buffers/handles.js';
import { errorOf } from '../helpers/machine.js';

/** A SharedBuffer over a stand-in PhysBuffer; `released` collects ids as the release callback fires. */
function buf(id: number, released: number[], creator = 1): SharedBuffer {
  return new SharedBuffer({ id } as never, creator, (b) => released.push(b.id));
}

t.test('new handles take the lowest free number, as POSIX fds', async (t) => {
  const b = buf(1, []);
  const tab = new HandleTable(7, 100);
  t.same([0, 1, 2, 3].map(() => tab.open(b, R_ALL).fd), [0, 1, 2, 3]);
  tab.close(1);
  tab.close(3);
  t.equal(tab.count, 2);
  t.equal(tab.open(b, R_ALL).fd, 1, 'the lower hole first');
  t.equal(tab.open(b, R_ALL).fd, 3);
  t.equal(tab.open(b, R_ALL).fd, 4);
  // close in an order that leaves holes, then close the top: the table shrinks
  tab.close(2);
  tab.close(1);
  tab.close(4);
  tab.close(3);
  t.same(tab.all().map((h) => h.fd), [0]);
  t.equal(tab.open(b, R_ALL).fd, 1, 'holes above the shrunken end are not reused out of order');
  t.equal(tab.open(b, R_ALL).fd, 2);
  tab.close(0);
  t.equal(tab.open(b, R_ALL).fd, 0);
  // the same number closed and reopened many times
  for (let i = 0; i < 5; i++) {
    tab.close(1);
    t.equal(tab.open(b, R_ALL).fd, 1);
  }
  tab.closeAll();
  t.equal(tab.count, 0);
  t.same(tab.all(), []);
  t.equal(tab.open(buf(2, []), R_ALL).fd, 0, 'after closeAll numbering starts at 0');
});

t.test('numbering matches "lowest unused non-negative integer" over random sequences', async (t) => {
  type Op = { k: 'open' } | { k: 'close'; i: number } | { k: 'closeAll' };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: fc.constant({ k: 'open' as const }) },
    { weight: 5, arbitrary: fc.record({ k: fc.constant('close' as const), i: fc.nat() }) },
    { weight: 1, arbitrary: fc.constant({ k: 'closeAll' as const }) },
  );
  let checks = 0;
  let full = 0;
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 400, size: 'max' }), (ops) => {
      const released: number[] = [];
      const b = buf(1, released);
      b.ref('mappings'); // keep the buffer alive through closeAll
      const tab = new HandleTable(1, 16);
      const model = new Set<number>();
      for (const op of ops) {
        if (op.k === 'open') {
          if (model.size === 16) {
            if (errorOf(() => tab.open(b, R_READ)).code !== 'EMFILE') return false;
            full++;
            continue;
          }
          let n = 0;
          while (model.has(n)) n++;
          if (tab.open(b, R_READ).fd !== n) return false;
          model.add(n);
        } else if (op.k === 'close') {
          if (model.size === 0) {
            if (errorOf(() => tab.close(op.i % 8)).code !== 'EBADF') return false;
            continue;
          }
          const open = [...model].sort((x, y) => x - y);
          const fd = open[op.i % open.length]!;
          tab.close(fd);
          model.delete(fd);
        } else {
          tab.closeAll();
          model.clear();
        }
        const fds = tab.all().map((h) => h.fd);
        if (tab.count !== model.size || fds.join() !== [...model].sort((x, y) => x - y).join()) return false;
        if (b.refs.handles !== model.size || (b.holders.get(1) ?? 0) !== model.size) return false;
        checks++;
      }
      return released.length === 0;
    }),
    { seed: 20240611, numRuns: 200 },
  );
  t.ok(checks > 10_000, `model compared after ${checks} steps`);
  t.ok(full > 0, `EMFILE reached ${full} times`);
});

t.test('EBADF for numbers that are not open', async (t) => {
  const b = buf(1, []);
  const tab = new HandleTable(1, 10);
  tab.open(b, R_ALL);
  tab.open(b, R_ALL);
  tab.close(1);
  for (const fd of [1, 2, 99, -1, 0.5, 1.5, NaN, Infinity, -0.5]) {
    const e = errorOf(() => tab.get(fd));
    t.equal(e.code, 'EBADF', `get(${fd})`);
    t.match(e.message, `handle ${fd} is not open`);
    t.same(e.details, { handle: fd });
    t.equal(errorOf(() => tab.close(fd)).code, 'EBADF', `close(${fd})`);
    t.equal(errorOf(() => tab.need(fd, 'read')).code, 'EBADF', `need(${fd})`);
  }
  t.equal(tab.get(0).fd, 0);
  t.equal(errorOf(() => new HandleTable(2, 10).get(0)).code, 'EBADF', "another table's number");
  tab.close(0);
  t.equal(errorOf(() => tab.close(0)).code, 'EBADF', 'double close');
  t.equal(b.refs.handles, 0);
});

t.test('EMFILE at maxHandles, with the figures in message and details', async (t) => {
  const released: number[] = [];
  const b = buf(1, released);
  const tab = new HandleTable(1, 3);
  for (let i = 0; i < 3; i++) tab.open(b, R_ALL);
  const e = errorOf(() => tab.open(b, R_ALL));
  t.equal(e.code, 'EMFILE');
  t.match(e.message, 'this connection already holds 3 handles (maxHandles 3 counts handles, mappings and registrations)');
  t.same(e.details, { handles: 3, mappings: 0, registrations: 0, maxHandles: 3 });
  t.equal(b.refs.handles, 3, 'a refused open takes no reference');
  t.equal(b.holders.get(1), 3);
  t.equal(tab.count, 3);
  const e2 = errorOf(() => tab.ensureRoom('client 9'));
  t.match(e2.message, 'client 9 already holds 3 handles');
  tab.close(1);
  t.doesNotThrow(() => tab.ensureRoom());
  t.equal(tab.open(b, R_ALL).fd, 1);
  const zero = new HandleTable(1, 0);
  t.same(errorOf(() => zero.open(b, R_ALL)).details, { handles: 0, mappings: 0, registrations: 0, maxHandles: 0 });
});

t.test('mappings and registrations take slots of maxHandles; incoming handles leave the reserve free', async (t) => {
  const b = buf(1, []);
  const tab = new HandleTable(1, 8);
  t.equal(tab.reserved, 2, 'a quarter of a small table, at most 16');
  t.equal(new HandleTable(1, 1024).reserved, 16);
  tab.open(b, R_ALL);
  tab.hold('mappings');
  tab.hold('mappings');
  tab.hold('registrations');
  t.equal(tab.used, 4);
  tab.open(b, R_ALL);
  tab.open(b, R_ALL);
  // 6 of 8 used: the last 2 are the reserve
  const inc = errorOf(() => tab.ensureRoom("client 1 'victim'", true));
  t.equal(inc.code, 'EMFILE');
  t.equal(inc.message, "client 1 'victim' already holds 6 slots (3 handles, 2 mappings, 1 registrations) of maxHandles 8; its last 2 slots are kept for its own use, and a handle it did not ask for may not take them");
  t.same(inc.details, { handles: 3, mappings: 2, registrations: 1, maxHandles: 8, reserved: 2 });
  t.doesNotThrow(() => tab.ensureRoom(), 'its own allocations may use the reserve');
  tab.open(b, R_ALL);
  tab.hold('mappings');
  const full = errorOf(() => tab.hold('registrations'));
  t.equal(full.message, 'this connection already holds 8 slots (4 handles, 3 mappings, 1 registrations) (maxHandles 8 counts handles, mappings and registrations)');
  tab.release('mappings');
  t.doesNotThrow(() => tab.hold('registrations'));
  tab.release('registrations');
  tab.release('registrations');
  tab.release('registrations');
  t.equal(tab.held.registrations, 0, 'release never goes below zero');
});

t.test('several handles on one buffer: one handle reference each, holders counted per owner', async (t) => {
  const released: number[] = [];
  const b = buf(5, released);
  const a = new HandleTable(10, 10);
  const c = new HandleTable(20, 10);
  const h1 = a.open(b, R_READ | R_WRITE);
  const h2 = a.open(h1.buffer, h1.rights); // dup
  c.open(b, R_READ);
  t.equal(h2.buffer, h1.buffer);
  t.equal(h2.rights, h1.rights);
  t.not(h2.fd, h1.fd);
  t.equal(b.refs.handles, 3);
  t.same([...b.holders], [[10, 2], [20, 1]]);
  a.close(h1.fd);
  t.same([...b.holders], [[10, 1], [20, 1]]);
  a.close(h2.fd);
  t.same([...b.holders], [[20, 1]], 'an owner with no handles left is removed');
  t.same(released, []);
  c.close(0);
  t.equal(b.holders.size, 0);
  t.same(released, [5]);
});

t.test('rights: need() names the missing right', async (t) => {
  t.equal(rightsMask(['read', 'share']), R_READ | R_SHARE);
  t.equal(rightsMask([]), 0);
  t.same(rightsList(R_ALL), ['read', 'write', 'share']);
  t.same(rightsList(R_WRITE), ['write']);
  const tab = new HandleTable(1, 10);
  const b = buf(1, []);
  tab.open(b, R_READ);
  tab.open(b, 0);
  t.equal(tab.need(0, 'read').fd, 0);
  for (const r of ['write', 'share'] as const) {
    const e = errorOf(() => tab.need(0, r));
    t.equal(e.code, 'EPERM');
    t.match(e.message, `handle 0 lacks the '${r}' right (it has: read)`);
    t.same(e.details, { handle: 0, missing: r });
  }
  t.match(errorOf(() => tab.need(1, 'read')).message, 'it has: none');
});

t.test('narrow(): a subset is fine, a superset is EPERM naming the extra right', async (t) => {
  const tab = new HandleTable(1, 10);
  const h = tab.open(buf(1, []), R_READ | R_SHARE);
  t.equal(narrow(h, undefined), R_READ | R_SHARE, 'undefined keeps the rights');
  t.equal(narrow(h, ['read']), R_READ);
  t.equal(narrow(h, ['share', 'read']), R_READ | R_SHARE);
  t.equal(narrow(h, []), 0);
  const e = errorOf(() => narrow(h, ['read', 'write']));
  t.equal(e.code, 'EPERM');
  t.match(e.message, "cannot pass handle 0 with the 'write' right: it only has read, share");
  t.same(e.details, { handle: 0, missing: 'write' });
  const none = tab.open(h.buffer, 0);
  const e2 = errorOf(() => narrow(none, ['write', 'share']));
  t.match(e2.message, "with the 'write', 'share' right: it only has no rights");
  t.same(e2.details, { handle: 1, missing: 'write' });
});

t.test('a buffer is released exactly once, when the last reference of any kind goes', async (t) => {
  const kinds: RefKind[] = ['handles', 'inflight', 'registrations', 'mappings'];
  // every order of dropping one reference of each kind
  const perms = (xs: RefKind[]): RefKind[][] => (xs.length <= 1 ? [xs] : xs.flatMap((x, i) => perms([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p])));
  for (const order of perms(kinds)) {
    const released: number[] = [];
    const b = buf(3, released);
    for (const k of kinds) b.ref(k);
    b.ref(order[0]!);
    t.equal(b.totalRefs, 5);
    b.unref(order[0]!);
    for (const k of order.slice(0, 3)) {
      b.unref(k);
      t.same(released, [], `alive after dropping ${k}`);
      t.notOk(b.freed);
    }
    b.unref(order[3]!);
    t.same(released, [3], `released at the last: ${order.join(' ')}`);
    t.ok(b.freed);
    t.equal(b.totalRefs, 0);
  }
  const released: number[] = [];
  const b = buf(4, released);
  t.throws(() => b.unref('mappings'), RangeError, 'unref below zero');
  b.ref('mappings');
  t.throws(() => b.unref('registrations'), RangeError, 'unref of a kind not held');
  t.equal(b.refs.mappings, 1);
  b.unref('mappings');
  t.throws(() => b.unref('mappings'), RangeError);
  const e = errorOf(() => b.ref('handles'));
  t.equal(e.code, 'EBADF');
  t.match(e.message, 'buffer 4 was already freed');
  t.throws(() => new HandleTable(1, 10).open(b, R_ALL), { code: 'EBADF' }, 'opening a freed buffer fails');
  t.same(released, [4], 'still released exactly once');
});

t.test('closeAll releases buffers held only by this table, others live on', async (t) => {
  const released: number[] = [];
  const mine = buf(1, released);
  const shared = buf(2, released);
  const mapped = buf(3, released);
  const inflight = buf(4, released);
  const a = new HandleTable(1, 10);
  const other = new HandleTable(2, 10);
  a.open(mine, R_ALL);
  a.open(mine, R_READ);
  a.open(shared, R_ALL);
  other.open(shared, R_READ);
  a.open(mapped, R_ALL);
  mapped.ref('mappings');
  a.open(inflight, R_ALL);
  inflight.ref('inflight');
  a.closeAll();
  t.equal(a.count, 0);
  t.same(released, [1], 'only the buffer held by this table alone');
  t.same([...shared.holders], [[2, 1]]);
  t.equal(shared.refs.handles, 1);
  t.equal(mapped.refs.handles, 0);
  t.equal(mapped.holders.size, 0);
  mapped.unref('mappings');
  inflight.unref('inflight');
  other.closeAll();
  t.same(released.sort(), [1, 2, 3, 4]);
  a.closeAll();
  t.same(released.length, 4, 'closeAll on an empty table does nothing');
});

/**
 * Operations ops: subscribe, unsubscribe (live events), reload (the config).
 */
import { Type } from '../typebox.js';
import { request } from '../types.js';

export const TOPIC_NAMES = ['alloc', 'handles', 'drivers', 'violations', 'hugepages', 'clients', 'status'] as const;

export const EVENTS_REQUESTS = {
  subscribe: request(
    'subscribe',
    {
      topics: Type.Optional(
        Type.Array(
          Type.Union(TOPIC_NAMES.map((t) => Type.Literal(t)), { description: `one of ${TOPIC_NAMES.map((t) => `"${t}"`).join(', ')}` }),
          { minItems: 1, maxItems: TOPIC_NAMES.length, uniqueItems: true, description: 'topics (default: all)' },
        ),
      ),
      intervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000, description: 'status snapshot interval, 100 to 60000 ms (default 1000)' })),
    },
    'Stream live events (`activity`) and periodic status snapshots (`snapshot`) to this connection.',
  ),
  unsubscribe: request('unsubscribe', {}, 'Stop the event stream.'),
  reload: request('reload', {}, 'Reload the config file, as SIGHUP does (admin only).'),
} as const;

/**
 * Events nobody listens to yet: the daemon can send events in the same read
 * as hello's answer, before the application could attach a listener (a
 * handle sent the moment a client connects). They wait here, at most
 * HELD_MAX of them (oldest dropped first), and go to the first listener of
 * their kind (or of every event) when it is attached.
 */
import type { EventEmitter } from 'node:events';

export const HELD_MAX = 1024;

type Ev = Record<string, unknown> & { event: string };

export class HeldEvents {
  private held: Ev[] = [];
  private queued = false;

  constructor(
    emitter: EventEmitter,
    /** Is anyone listening for this event (or for every event)? */
    private readonly listened: (name: string) => boolean,
    private readonly deliver: (ev: Ev) => void,
  ) {
    emitter.on('newListener', () => {
      if (this.held.length === 0 || this.queued) return;
      this.queued = true;
      // the listener is added right after 'newListener' fires
      queueMicrotask(() => this.flush());
    });
  }

  /** Deliver an event now, or hold it until someone listens for it. */
  push(ev: Ev): void {
    if (this.listened(ev.event)) {
      this.deliver(ev);
      return;
    }
    this.held.push(ev);
    if (this.held.length > HELD_MAX) this.held.shift();
  }

  /** Deliver the held events that have a listener now, in the order they came; keep the others. */
  private flush(): void {
    this.queued = false;
    const now = this.held;
    this.held = [];
    for (const ev of now) {
      if (this.listened(ev.event)) this.deliver(ev);
      else this.held.push(ev);
    }
  }
}

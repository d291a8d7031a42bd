/**
 * `bufctl watch` on a terminal: the alternate screen without a cursor,
 * keys read one at a time (raw mode, when stdin is a terminal too), the
 * size and its changes, and the terminal given back as it was on every
 * way out — a key, a signal, an error, or the process exiting.
 */

export interface TerminalIo {
  input: NodeJS.ReadStream;
  output: NodeJS.WriteStream;
}

export interface Terminal {
  /** Keys can be read (stdin is a terminal). */
  readonly keys: boolean;
  size(): { columns: number; rows: number };
  /** Replace the screen with these lines (each already fitted to the size). */
  draw(lines: string[]): void;
  /** Leave the alternate screen, leaving `final` on the normal one; idempotent. */
  close(final?: string[]): void;
}

const ENTER = '\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J';
const LEAVE = '\x1b[?25h\x1b[?1049l';

/**
 * Take the terminal. `out` writes to it; `io` (absent in tests that only
 * collect output) gives the size, resizes and keys: onKey gets each key
 * pressed, onResize each size change.
 */
export function openTerminal(out: (s: string) => void, io: TerminalIo | undefined, onKey: (key: string) => void, onResize: () => void): Terminal {
  const input = io?.input;
  const keys = input?.isTTY === true && typeof input.setRawMode === 'function';
  let open = true;
  const onData = (chunk: string) => {
    // an escape sequence (arrows, function keys) is not a key of ours
    if (chunk.startsWith('\x1b')) return;
    for (const k of chunk) onKey(k);
  };
  const restore = () => {
    if (!open) return false;
    open = false;
    io?.output.off('resize', onResize);
    process.off('exit', onExit);
    if (keys) {
      input!.off('data', onData);
      try {
        input!.setRawMode(false);
      } catch {
        /* the terminal is gone (SIGHUP) */
      }
      input!.pause();
    }
    return true;
  };
  // a way out that skipped close(): at least give the screen back
  const onExit = () => {
    if (restore()) out(LEAVE);
  };
  process.on('exit', onExit);
  io?.output.on('resize', onResize);
  if (keys) {
    input!.setRawMode(true);
    input!.setEncoding('utf8');
    input!.on('data', onData);
    input!.resume();
  }
  out(ENTER);
  return {
    keys,
    size: () => ({ columns: io?.output.columns || 80, rows: io?.output.rows || 24 }),
    draw: (lines) => {
      if (!open) return;
      const rows = io?.output.rows || 24;
      // each line cleared from its start (never from the last column, where a
      // full line leaves the cursor), the rest of the screen cleared below
      // the last line; no newline after a last line on the bottom row (it would scroll)
      out(`\x1b[H${lines.map((l) => `\x1b[2K${l}`).join('\r\n')}${lines.length < rows ? '\r\n\x1b[J' : ''}`);
    },
    close: (final) => {
      if (!restore()) return;
      out(`${LEAVE}${final !== undefined && final.length > 0 ? `${final.join('\n')}\n` : ''}`);
    },
  };
}

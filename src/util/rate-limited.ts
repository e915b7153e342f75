// A log line that can repeat at the rate of a flood (an accept error per connection, a socket
// error per packet) is written at most once per window, saying how many it stood for.

/** `write` at most once per `everyMs`; the next line written says how many were left out meanwhile. */
export function rateLimited(write: (message: string) => void, everyMs = 10_000): (message: string) => void {
  let last = -Infinity;
  let skipped = 0;
  return (message) => {
    const now = performance.now();
    if (now - last < everyMs) {
      skipped++;
      return;
    }
    last = now;
    write(skipped > 0 ? `${message} (${skipped} more like it not logged in the last ${Math.round(everyMs / 1000)} s)` : message);
    skipped = 0;
  };
}

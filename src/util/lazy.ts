// Heavy modules and components load on first use (start-up time is paid in every pod). A failed
// load must not be remembered: a transient failure (a file being replaced, memory pressure) would
// otherwise fail every later use for the life of the process.

/** Memoises an async loader; a rejected load is forgotten, so the next call tries again. */
export function lazy<T>(load: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= load().catch((err: unknown) => {
      pending = undefined;
      throw err;
    });
    return pending;
  };
}
